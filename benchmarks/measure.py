"""Wall time and peak memory of a whole command, its worker processes included.

Peak memory is the largest sum of the resident set sizes of the process and all its descendants, sampled every
50 ms from /proc (Linux): a pipeline that runs eight workers at once is charged for all eight, as the machine
would be.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")


def _tree_rss(root: int) -> int:
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            pid, ppid = int(entry.name), int(fields[1])
            rss[pid] = int(fields[21]) * PAGE
            children.setdefault(ppid, []).append(pid)
        except (OSError, ValueError, IndexError):
            continue
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def run_measured(command: Sequence[str], env: dict[str, str] | None = None, cwd: str | None = None,
                 interval: float = 0.05) -> tuple[float, int, subprocess.CompletedProcess]:
    """Run ``command``; return (wall seconds, peak tree RSS in bytes, the completed process)."""
    start = time.perf_counter()
    process = subprocess.Popen(list(command), env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    peak = 0
    while process.poll() is None:
        peak = max(peak, _tree_rss(process.pid))
        time.sleep(interval)
    stdout, stderr = process.communicate()
    seconds = time.perf_counter() - start
    return seconds, peak, subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
