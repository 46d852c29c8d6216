"""Per-case work in parallel processes, with a progress bar: one pool reused across a command's stages.

This is the package's one process pool for per-case work (fingerprint, preprocessing, evaluation, the
postprocessing choice, MSD conversion, dataset verification). On Linux the workers are forked when the pool first
gets work, which is before the parent has run any PyTorch computation (the commands create the pool first), so
they inherit the imports instead of paying seconds of ``import torch`` each; elsewhere they are spawned. Each
worker is pinned to one thread, so ``-np`` processes use ``-np`` cores. Workers end with the command, however it
ends (see :mod:`segformer3d_auto.worker_lifetime`).
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

START_METHOD = "fork" if sys.platform.startswith("linux") else "spawn"


def _init_worker(parent_pid: int) -> None:
    """Worker initializer: end with the parent process; one compute thread, for torch as already imported (fork)
    or as imported later (spawn: torch reads ``OMP_NUM_THREADS`` when it starts), without importing torch into
    workers that never need it (MSD conversion, dataset verification)."""
    end_with_parent(parent_pid)
    os.environ["OMP_NUM_THREADS"] = "1"
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


class CaseMap:
    """``map`` over cases in ``num_processes`` processes (in this process when 1), with a progress bar.

    Use as a context manager; call ``map(fn, jobs, description)``. ``fn`` must be a module-level function.

    Args:
        num_processes: worker processes; 1 works in this process.
        progress: show a progress bar; None shows it only on a terminal (tqdm's ``disable=None``).
        unit: what the progress bar counts.
    """

    def __init__(self, num_processes: int = 1, progress: bool | None = True, unit: str = "case") -> None:
        if num_processes < 1:
            raise ValueError(f"num_processes must be >= 1, got {num_processes}")
        self.num_processes = num_processes
        self.progress = progress
        self.unit = unit
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
        disable = True if not jobs else (None if self.progress is None else not self.progress)
        bar = tqdm(total=len(jobs), desc=description, unit=self.unit, disable=disable, leave=False)
        try:
            if self.num_processes == 1 or len(jobs) <= 1:
                results = []
                for job in jobs:
                    results.append(fn(job))
                    bar.update()
                return results
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.num_processes, mp_context=multiprocessing.get_context(START_METHOD),
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
