"""Workers bound with end_with_parent end when their parent is SIGKILLed, and end on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from segformer3d_auto.worker_lifetime import EndWithParent, end_with_parent
from tests.processes import session_processes, wait_until

# A parent that installs a flag-setting SIGTERM handler (as the trainer does) and forks one worker that binds
# itself (or not), prints its pid and blocks forever on a queue; the parent then waits on stdin.
PARENT = textwrap.dedent("""
    import multiprocessing, os, signal, sys
    from segformer3d_auto.worker_lifetime import EndWithParent

    def block(queue):
        print(os.getpid(), flush=True)
        queue.get()

    if __name__ == "__main__":
        signal.signal(signal.SIGTERM, lambda *a: None)
        queue = multiprocessing.get_context("fork").Queue()
        target = EndWithParent(block) if sys.argv[1] == "bound" else block
        worker = multiprocessing.get_context("fork").Process(target=target, args=(queue,), daemon=True)
        worker.start()
        sys.stdin.read()
""")


def _start_parent(mode: str) -> tuple[subprocess.Popen, int]:
    parent = subprocess.Popen([sys.executable, "-c", PARENT, mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    worker = int(parent.stdout.readline())  # printed by the worker once it is bound
    return parent, worker


def _alive(pid: int) -> bool:
    return pid in session_processes(os.getsid(pid)) if _exists(pid) else False


def _exists(pid: int) -> bool:
    try:
        os.getsid(pid)
        return True
    except ProcessLookupError:
        return False


def _kill_session(session: int) -> None:
    for pid in session_processes(session):
        os.kill(pid, signal.SIGKILL)


def test_bound_worker_ends_when_its_parent_is_killed() -> None:
    parent, worker = _start_parent("bound")
    try:
        assert _alive(worker)
        parent.kill()
        parent.wait()
        assert wait_until(lambda: not _alive(worker), timeout=30), "worker outlived its SIGKILLed parent"
    finally:
        _kill_session(parent.pid)


def test_unbound_worker_outlives_its_parent() -> None:
    """The control: without the binding a forked worker lives on, so the test above can fail."""
    parent, worker = _start_parent("unbound")
    try:
        parent.kill()
        parent.wait()
        assert wait_until(lambda: _parent_of(worker) != parent.pid, timeout=30)  # reparented, still there
        assert _alive(worker)
    finally:
        _kill_session(parent.pid)


def test_bound_worker_ends_on_sigterm_despite_the_inherited_handler() -> None:
    parent, worker = _start_parent("bound")
    try:
        os.kill(worker, signal.SIGTERM)
        assert wait_until(lambda: not _alive(worker), timeout=30), "worker ignored SIGTERM"
    finally:
        _kill_session(parent.pid)


def test_end_with_parent_refuses_to_bind_the_parent_itself() -> None:
    with pytest.raises(ValueError, match="must run in the worker"):
        end_with_parent(os.getpid())


def test_wrapper_in_the_parent_only_calls_through() -> None:
    def handler(signum: int, frame: object) -> None:
        pass

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        assert EndWithParent(lambda x, y=1: x + y)(2, y=3) == 5
        assert signal.getsignal(signal.SIGTERM) is handler  # the parent's own handlers are left alone
    finally:
        signal.signal(signal.SIGTERM, previous)


def _parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    return int(stat[stat.rindex(")") + 2:].split()[1])
