"""A small generated region dataset, planned and preprocessed once per test run by the real
``sf3d_plan_and_preprocess``, shared by the planner, training and CLI tests (read only: a test that changes it
works on a copy). Callers pass ``shared_folder(tmp_path_factory, ...)`` as the base, so the xdist workers of a run
build it once between them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from segformer3d_auto.dataset.synthetic import make_ct_dataset, make_mri_regions_dataset
from tests.shared_data import exclusive

DATASET = "Dataset501_SyntheticBraTS"
_CACHE: dict[Path, dict[str, str]] = {}


def prepared_roots(base: Path) -> dict[str, str]:
    """Environment (SF3D_RAW/PREPROCESSED) of a preprocessed 6-case, 4-channel 32^3 region dataset under ``base``.

    Built on the first call for ``base`` only.
    """
    return _prepared(base, DATASET, lambda raw: make_mri_regions_dataset(raw, num_cases=6, shape=(32, 32, 32),
                                                                         num_test_cases=0))


def _prepared(base: Path, dataset: str, make: Callable[[Path], Path]) -> dict[str, str]:
    """Generate ``dataset`` with ``make(raw root)`` and run the real sf3d_plan_and_preprocess, once per ``base``."""
    if base in _CACHE:
        return dict(_CACHE[base])
    env = {"SF3D_RAW": str(base / "raw"), "SF3D_PREPROCESSED": str(base / "preprocessed")}
    with exclusive(base, dataset):  # the first xdist worker builds it, the others wait and reuse it
        if not plan_report(base, dataset).is_file():
            make(base / "raw")
            dataset_id = dataset.split("_")[0].removeprefix("Dataset")
            # two pool workers: the path users run (the planner tests check this run's output and its report). The
            # paper's network whatever the ceilings: the cheapest to train in the many tests that share this
            # dataset, and the one the fine-tuning test adapts (the finer candidates are planned and built in
            # tests/planners/test_output_resolution.py and tests/model)
            result = run([sys.executable, "-m", "segformer3d_auto.cli.plan_and_preprocess", "-d", dataset_id,
                          "-np", "2", *PLAN_OPTIONS], env)
            plan_report(base, dataset).write_text(result.stdout)  # written last: the marker that the build is done
    _CACHE[base] = env
    return dict(env)


PLAN_OPTIONS = ("--output-resolution", "paper")
"""What the shared datasets are planned with, besides the dataset and -np."""


def plan_report(base: Path, dataset: str) -> Path:
    """Where the stdout of the shared sf3d_plan_and_preprocess run of ``dataset`` under ``base`` is kept."""
    return base / f"{dataset}_plan_and_preprocess.txt"


def run(command: list[str], env: dict[str, str], timeout: float = 600, check: bool = True
        ) -> subprocess.CompletedProcess:
    """Run a command with the data roots in its environment and one torch thread per process."""
    full = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    result = subprocess.run(command, env=full, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{command} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def train_command(fold: str, *options: str, dataset: str = "501") -> list[str]:
    """``sf3d_train DATASET FOLD`` as a subprocess with a tiny, single-process budget plus ``options``."""
    return [sys.executable, "-m", "segformer3d_auto.cli.train", dataset, fold, "--num-workers", "0", "--no-progress",
            "--val-iterations", "2", *options]


def trained_fold0(base: Path) -> tuple[dict[str, str], Path]:
    """Train fold 0 of the dataset under ``base`` once (a short CPU run with the default recipe) and return the
    environment and the model folder."""
    env = prepared_roots(base)
    env["SF3D_RESULTS"] = str(base / "results")
    model_folder = base / "results" / DATASET / "SegFormer3D__3d_fullres"
    with exclusive(base, "fold_0"):
        if not (model_folder / "fold_0" / "validation" / "summary.json").is_file():
            # one augmentation worker per loader: the multi-process path users run
            run(train_command("0", "--epochs", "8", "--iterations-per-epoch", "10", "--warmup-epochs", "1",
                              "--seed", "1", "--num-workers", "1"), env)
    return env, model_folder


CT_DATASET = "Dataset502_SyntheticCT"


def prepared_ct_roots(base: Path) -> dict[str, str]:
    """Environment of a preprocessed 4-case, 1-channel CT dataset (labels liver, kidney) under ``base``, for
    fine-tuning from the region dataset; built on the first call only."""
    return _prepared(base, CT_DATASET, lambda raw: make_ct_dataset(raw, num_cases=4, shape=(12, 32, 32),
                                                                   num_test_cases=0))
