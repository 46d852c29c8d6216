"""Finding the processes of a command started in its own session, and waiting for them without sleeping blind."""

from __future__ import annotations

import os
import time
from collections.abc import Callable


def session_processes(session_id: int) -> set[int]:
    """Pids of the live (not zombie) processes whose session id is ``session_id`` (Linux /proc)."""
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # ended while we looked
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        state, session = fields[0], int(fields[3])
        if session == session_id and state != "Z":
            pids.add(int(entry))
    return pids


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass; whether it held."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
