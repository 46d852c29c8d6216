"""Per-case work in parallel processes, with a progress bar: one pool reused across a command's stages.

On Linux the workers are forked when the pool first gets work, which is before the parent has run any PyTorch
computation (the commands create the pool first), so they inherit the imports instead of paying seconds of
``import torch`` each; elsewhere they are spawned. Each worker is pinned to one thread, so ``-np`` processes use
``-np`` cores, and the pool is reused across a command's stages. Workers end with the command, however it ends
(see :mod:`segformer3d_auto.worker_lifetime`).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from tqdm import tqdm

from segformer3d_auto.worker_lifetime import end_with_parent

_START_METHOD = "fork" if sys.platform.startswith("linux") else "spawn"


def _init_worker(parent_pid: int) -> None:
    """End with the parent process; one torch thread."""
    import torch

    end_with_parent(parent_pid)
    torch.set_num_threads(1)


class CaseMap:
    """``map`` over cases in ``num_processes`` processes (in this process when 1), with a progress bar.

    Use as a context manager; call ``map(fn, jobs, description)``. ``fn`` must be a module-level function.
    """

    def __init__(self, num_processes: int = 1, progress: bool = True) -> None:
        if num_processes < 1:
            raise ValueError(f"num_processes must be >= 1, got {num_processes}")
        self.num_processes = num_processes
        self.progress = progress
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> CaseMap:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def map(self, fn: Callable[[Any], Any], jobs: Iterable[Any], description: str = "cases") -> list[Any]:
        """``[fn(job) for job in jobs]``, in order."""
        jobs = list(jobs)
        bar = tqdm(total=len(jobs), desc=description, unit="case", disable=not self.progress or not jobs,
                   leave=False)
        try:
            if self.num_processes == 1 or len(jobs) <= 1:
                results = []
                for job in jobs:
                    results.append(fn(job))
                    bar.update()
                return results
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.num_processes, mp_context=multiprocessing.get_context(_START_METHOD),
                    initializer=_init_worker, initargs=(os.getpid(),),
                )
            results = []
            for result in self._pool.map(fn, jobs):
                results.append(result)
                bar.update()
            return results
        finally:
            bar.close()

    def bind(self, description: str) -> Callable[[Callable[[Any], Any], Iterable[Any]], list[Any]]:
        """A ``map``-like function with a fixed progress-bar description, for library functions taking ``map_fn``."""
        return lambda fn, jobs: self.map(fn, jobs, description)
