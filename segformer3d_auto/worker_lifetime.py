"""Worker processes that end when their parent ends, however the parent died.

A command killed with SIGKILL (the OOM killer, a batch scheduler's time limit, ``kill -9``) runs no clean-up
code, so its forked workers would live on, parented to init, asleep on a queue that nobody reads, holding their
memory (and on a GPU node possibly the device). Every worker the project starts calls :func:`end_with_parent`
first: on Linux the kernel then sends it SIGKILL the moment its parent exits (``PR_SET_PDEATHSIG``); elsewhere a
daemon thread watches the parent's pid. Workers forked while the trainer's graceful-stop handler is installed
would also inherit that handler and ignore SIGTERM; the default handlers are restored here.

Commands that the project runs as subprocesses (the demo runs the four commands) get the same binding between
fork and exec through :func:`subprocess_options` (Linux only: the signal survives ``exec``, a thread does not).

Linux sends the parent-death signal when the *thread* that started the worker exits, so pools must be started
from a thread that lives as long as the pool (every pool in this project is started from the main thread).
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

_PR_SET_PDEATHSIG = 1
_WATCH_INTERVAL_S = 1.0


def end_with_parent(parent_pid: int) -> None:
    """Make this worker process end when the process ``parent_pid`` (its parent) ends, and end on SIGTERM.

    Args:
        parent_pid: the pid of the process that started this worker, read in the parent before it started
            the worker (``os.getpid()`` there). If the parent is already gone, this worker exits at once.

    Raises:
        ValueError: ``parent_pid`` is this process itself (called in the parent instead of the worker).
    """
    if parent_pid == os.getpid():
        raise ValueError("end_with_parent() must run in the worker, not in the parent process itself")
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            _watch_parent(parent_pid)
    else:
        _watch_parent(parent_pid)
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)


def _watch_parent(parent_pid: int) -> None:
    """Fallback where the kernel cannot signal parent death: a daemon thread polls the parent pid."""

    def watch() -> None:
        while not stop.wait(_WATCH_INTERVAL_S):
            if os.getppid() != parent_pid:
                os._exit(1)

    stop = threading.Event()
    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()


def subprocess_options() -> dict[str, Any]:
    """Keyword arguments for ``subprocess.run``/``Popen`` that make the started command end when this process ends.

    On Linux the child arms the parent-death signal before it executes the command; elsewhere, nothing.
    """
    if not sys.platform.startswith("linux"):
        return {}
    return {"preexec_fn": functools.partial(end_with_parent, os.getpid())}


class EndWithParent:
    """A callable that calls :func:`end_with_parent` once in whichever process first calls it, then ``fn``.

    For worker loops that take no initializer (batchgenerators' MultiThreadedAugmenter calls the transform in
    each worker): wrap the transform in the parent and the binding happens in the worker.
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.parent_pid = os.getpid()
        self._bound_in: int | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        pid = os.getpid()
        if self._bound_in != pid:
            if pid != self.parent_pid:
                end_with_parent(self.parent_pid)
            self._bound_in = pid
        return self.fn(*args, **kwargs)
