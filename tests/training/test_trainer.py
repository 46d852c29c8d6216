"""The trainer: its process-wide CPU setting (checked in a fresh process, as `sf3d_train` starts one), its
progress figure and its augmentation warm-up."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from tests.shared_data import shared_folder
from tests.training.data import DATASET, prepared_roots

# builds the trainer (network, optimizer, loaders) on two CPU threads, then multiplies denormals on both threads
_DENORMALS_AFTER_TRAINER = f"""
import torch
torch.set_num_threads(2)
from segformer3d_auto.training.config import TrainConfig
from segformer3d_auto.training.trainer import Trainer
Trainer(TrainConfig(dataset_name={DATASET!r}, fold=0, num_workers=0), progress=False)
# 5.9e-39, a denormal float32, from its bits (a float literal would itself be flushed on the way in);
# each thread multiplies about half of them
tiny = torch.full((20_000_000,), 0x00400000, dtype=torch.int32).view(torch.float32)
print(int(torch.count_nonzero(tiny * 0.5)))
"""


def test_every_cpu_thread_flushes_denormals_once_the_trainer_is_built(tmp_path_factory):
    # the flush must come before the first parallel operation: PyTorch's CPU threads copy the setting when they
    # start, so a flush after the network was built left the second thread computing denormals (2x slower epochs)
    env = {**os.environ, **prepared_roots(shared_folder(tmp_path_factory, "training_data")),
           "SF3D_RESULTS": str(tmp_path_factory.mktemp("results"))}
    env.pop("OMP_NUM_THREADS", None)
    result = subprocess.run([sys.executable, "-c", _DENORMALS_AFTER_TRAINER], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "0"


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """A 3-epoch run of one iteration each (fold "all": no final validation to wait for), augmentation from
    iteration 2, progress.png redrawn only when forced after the first time."""
    from segformer3d_auto.training.config import TrainConfig
    from segformer3d_auto.training.trainer import Trainer

    env = {**prepared_roots(shared_folder(tmp_path_factory, "training_data")),
           "SF3D_RESULTS": str(tmp_path_factory.mktemp("results"))}
    with pytest.MonkeyPatch.context() as monkeypatch:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        config = TrainConfig(dataset_name=DATASET, fold="all", epochs=3, iterations_per_epoch=1, val_iterations=1,
                             warmup_epochs=0, num_workers=0, augmentation_warmup=2)
        try:
            trainer = Trainer(config, progress=False)
            trainer.progress_plot.interval_s = 1e9
            trainer.run()
        finally:
            torch.set_flush_denormal(False)  # the trainer's process-wide setting, not this test process's
    return trainer


def test_the_last_epoch_is_drawn_however_short_the_run(short_run):
    # progress.png is redrawn at most every 30 s; the figure left behind must still show every epoch
    assert short_run.progress_plot.drawn_epochs == 3
    assert (short_run.paths.fold_folder / "progress.png").read_bytes()[:4] == b"\x89PNG"


def test_augmentation_starts_after_the_warmup_iterations(short_run):
    lines = (short_run.paths.fold_folder / "training_log.txt").read_text().splitlines()
    assert lines[0].endswith("mirroring only for the first 2 iterations")
    assert [line.split(" ", 2)[2] for line in lines if "augmentation:" in line] == [
        "augmentation: nnU-Net's from iteration 2 on"]
    assert "augmentation:" in lines[3] and "epoch 1 " in lines[2] and "epoch 2 " in lines[4]
