"""Data that the whole test run builds once and shares, also across pytest-xdist workers.

``make test`` runs the suite in two worker processes (pytest-xdist). A session-scoped fixture is then made once
per worker, so the expensive data (a planned dataset, a trained fold, the demo's run) lives in a folder that all
workers of one run share, and the first worker that needs it builds it under a file lock while the others wait.
Without xdist the folder is the run's own temporary root, as before.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from filelock import FileLock  # a dependency of torch, so present wherever the suite runs; portable, unlike fcntl


def shared_folder(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """``name`` under the temporary root that every worker of this test run shares.

    Under xdist each worker's base folder (``pytest-N/popen-gwK``) sits in the run's folder ``pytest-N``.
    """
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    return base / name


@contextmanager
def exclusive(folder: Path, what: str) -> Iterator[None]:
    """Hold the run-wide lock named ``what`` in ``folder`` (created if missing) while building something there.

    Callers check for their finished marker inside the lock, so the second worker finds the first one's result.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / f".{what}.lock")):
        yield


def built_once(folder: Path, build: Callable[[Path], None]) -> Path:
    """``folder``, built by ``build(folder)`` by the first worker of the run that asks; a marker file says done."""
    with exclusive(folder.parent, folder.name):
        done = folder.parent / f".{folder.name}.done"
        if not done.is_file():
            shutil.rmtree(folder, ignore_errors=True)  # what a failed build of another worker left
            folder.mkdir(parents=True)
            build(folder)
            done.touch()
    return folder


def save_process(result: subprocess.CompletedProcess, path: Path) -> None:
    """Keep a finished command (arguments, exit status, stdout, stderr) for the workers that did not run it."""
    path.write_text(json.dumps([result.args, result.returncode, result.stdout, result.stderr]))


def load_process(path: Path) -> subprocess.CompletedProcess:
    """The command that :func:`save_process` kept."""
    return subprocess.CompletedProcess(*json.loads(path.read_text()))
