"""Shared fixtures: isolated data roots and small synthetic datasets written by the real generators."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from segformer3d_auto.dataset.synthetic import make_ct_dataset, make_mri_regions_dataset, make_msd_task
from tests.shared_data import built_once, load_process, save_process, shared_folder


def pytest_addoption(parser: pytest.Parser) -> None:
    """Options that run the numerical tests under other kernels, so a tolerance fitted to one machine shows here."""
    group = parser.getgroup("segformer3d_auto numerics")
    group.addoption("--torch-threads", type=int, default=None, help="torch.set_num_threads(N) for the test process")
    group.addoption(
        "--no-mkldnn", action="store_true", help="torch.backends.mkldnn.enabled = False (plain ATen CPU kernels)"
    )


def pytest_configure(config: pytest.Config) -> None:
    threads = config.getoption("--torch-threads")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if threads is None and workers > 1:
        # xdist workers share the cores: torch's default (one thread per core in each) would oversubscribe them
        threads = max(1, (os.cpu_count() or 1) // workers)
        # and the commands that the tests start: each inherits the thread count unless a test sets its own
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    if threads is not None:
        if threads < 1:
            raise pytest.UsageError(f"--torch-threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    if config.getoption("--no-mkldnn"):
        torch.backends.mkldnn.enabled = False


def pytest_report_header(config: pytest.Config) -> str:
    mkldnn = "on" if torch.backends.mkldnn.enabled else "off"
    return f"torch {torch.__version__}: {torch.get_num_threads()} threads, oneDNN {mkldnn}"


@dataclass
class SF3DRoots:
    """The three data roots of one test, all under its ``tmp_path``."""

    raw: Path
    preprocessed: Path
    results: Path


@pytest.fixture
def sf3d_roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SF3DRoots:
    """Point SF3D_RAW / SF3D_PREPROCESSED / SF3D_RESULTS (and SF3D_HOME) at fresh folders under tmp_path.

    Subprocesses started by the test inherit the variables.
    """
    roots = SF3DRoots(tmp_path / "raw", tmp_path / "preprocessed", tmp_path / "results")
    for root in (roots.raw, roots.preprocessed, roots.results):
        root.mkdir()
    monkeypatch.setenv("SF3D_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SF3D_RAW", str(roots.raw))
    monkeypatch.setenv("SF3D_PREPROCESSED", str(roots.preprocessed))
    monkeypatch.setenv("SF3D_RESULTS", str(roots.results))
    return roots


@pytest.fixture
def mri_dataset(sf3d_roots: SF3DRoots) -> Path:
    """``Dataset501_SyntheticBraTS`` in the raw root: 6 training + 2 test cases, 4 channels, 32^3, regions."""
    return make_mri_regions_dataset(sf3d_roots.raw, num_cases=6, shape=(32, 32, 32), num_test_cases=2)


@pytest.fixture
def ct_dataset(sf3d_roots: SF3DRoots) -> Path:
    """``Dataset502_SyntheticCT`` in the raw root: 6 training + 2 test cases, 1 CT channel, about 16x48x48
    voxels of 5 x 0.8 x 0.8 mm, flipped direction, nonzero origins, labels liver 1 and kidney 2."""
    return make_ct_dataset(sf3d_roots.raw, num_cases=6, shape=(16, 48, 48), num_test_cases=2)


@pytest.fixture
def msd_task(tmp_path: Path) -> Path:
    """A legacy MSD folder ``tmp_path/msd/Task05_Prostate``: 4 training + 2 test 4D two-channel cases."""
    return make_msd_task(tmp_path / "msd", num_cases=4, shape=(12, 24, 24))


CliMain = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def cli_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> CliMain:
    """Call a command's ``main(argv)`` in this process: ``cli_main(main, *args, env={...})``.

    Returns a ``subprocess.CompletedProcess`` (returncode, stdout, stderr) like running the command would, so a
    test checks the same one-line message and exit status 2 without paying a second of ``import torch`` per case.
    argparse's ``SystemExit`` becomes the return code; any other exception propagates and fails the test (a
    subprocess would have printed a traceback). ``env`` is set for the call only. Each command keeps at least one
    real subprocess test, which checks the ``python -m`` entry point and the exit status the shell sees.
    """

    def call(main: Callable[[list[str] | None], int], *args: str, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess:
        with monkeypatch.context() as patch:
            for key, value in (env or {}).items():
                patch.setenv(key, value)
            capsys.readouterr()
            try:
                code = main(list(args))
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            out, err = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out, err)

    return call


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``python -m segformer3d_auto.demo`` (what ``make demo`` runs), shortened, run once per test run (shared by
    the xdist workers): its output folder and the finished process. Read only: the killed-demo test copies the data
    it generated and preprocessed so that its own run reaches training without planning again."""

    def run_demo(folder: Path) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "segformer3d_auto.demo", "--out", str(folder / "demo"), "--cases", "5",
             "--epochs", "1", "--iterations-per-epoch", "2"],
            capture_output=True, text=True, timeout=600,
        )
        save_process(result, folder / "result.json")

    folder = built_once(shared_folder(tmp_path_factory, "demo_run"), run_demo)
    return {"out": folder / "demo", "result": load_process(folder / "result.json")}
