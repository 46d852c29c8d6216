"""sf3d_train end to end as a subprocess on a small generated region dataset."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from segformer3d_auto.atomic import read_json
from segformer3d_auto.model_folder import FINAL, LATEST, fold_folder, model_folder_for
from tests.training.data import DATASET, prepared_roots, run, train_command, trained_fold0

# measured on this dataset: an untrained network scores 0.07-0.12 mean foreground Dice (three seeds); fold 0
# after 8 x 10 iterations 0.85-0.90 (three seeds, lr 3e-4 and 1e-3); 40 iterations were not always enough (0.37)
LEARNING_MARGIN = 0.4


def test_training_learns_and_writes_the_model_folder(tmp_path_factory, monkeypatch):
    base = tmp_path_factory.getbasetemp() / "training_data"
    env, model_folder = trained_fold0(base)
    fold = model_folder / "fold_0"
    for name in ("plans.json", "dataset.json", "dataset_fingerprint.json"):
        assert (model_folder / name).is_file()
    for name in ("checkpoint_final.pth", "checkpoint_best.pth", "config.json", "progress.png", "training_log.txt"):
        assert (fold / name).is_file(), name
    assert not (fold / "checkpoint_latest.pth").exists()
    state = torch.load(fold / "checkpoint_final.pth", weights_only=True)
    assert state["epoch"] == 8 and len(state["logging"]["train_loss"]) == 8
    assert read_json(fold / "config.json")["epochs"] == 8
    trained = read_json(fold / "validation" / "summary.json")["foreground_mean"]["Dice"]

    # the same validation of an untrained network (real trainer and predictor, separate results root)
    from segformer3d_auto.model_folder import copy_plan_files
    from segformer3d_auto.training.config import TrainConfig
    from segformer3d_auto.training.trainer import Trainer

    for key, value in {**env, "SF3D_RESULTS": str(tmp_path_factory.mktemp("untrained"))}.items():
        monkeypatch.setenv(key, value)
    trainer = Trainer(TrainConfig(dataset_name=DATASET, fold=0, num_workers=0, seed=1), progress=False)
    copy_plan_files(trainer.paths.preprocessed, trainer.paths.model_folder)
    trainer.save("checkpoint_final.pth")
    untrained = trainer.validate()
    assert trained > untrained["foreground_mean"]["Dice"] + LEARNING_MARGIN


def test_sigkill_then_continue_finishes_like_an_uninterrupted_run(tmp_path_factory):
    base = tmp_path_factory.getbasetemp() / "training_data"
    env = prepared_roots(base)
    options = ["--epochs", "4", "--iterations-per-epoch", "3", "--save-every", "1", "--warmup-epochs", "2"]
    env_killed = {**env, "SF3D_RESULTS": str(tmp_path_factory.mktemp("killed"))}
    fold = fold_folder(model_folder_for(DATASET, root=env_killed["SF3D_RESULTS"]), "all")
    process = subprocess.Popen(train_command("all", *options),
                               env={**os.environ, "OMP_NUM_THREADS": "1", **env_killed},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = fold / LATEST
    deadline = time.time() + 300
    while process.poll() is None and not latest.is_file() and time.time() < deadline:
        time.sleep(0.05)  # polling for the file; three more epochs remain when it appears
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (fold / FINAL).exists(), "the run finished before it could be killed"
    killed_after = torch.load(latest, weights_only=True)["epoch"]
    assert killed_after >= 1

    run(train_command("all", *options, "--continue"), env_killed)
    resumed = torch.load(fold / FINAL, weights_only=True)
    assert resumed["epoch"] == 4 and len(resumed["logging"]["train_loss"]) == 4
    # an uninterrupted run's schedule, written out: warm-up 3e-4*(e+1)/3, then 3e-4*(1-(e-2)/2)**0.9
    assert resumed["logging"]["lr"] == pytest.approx([1e-4, 2e-4, 3e-4, 3e-4 * 0.5**0.9])
    lines = (fold / "training_log.txt").read_text().splitlines()
    resumed_at = [i for i, line in enumerate(lines) if "resuming from checkpoint_latest.pth" in line]
    assert len(resumed_at) == 1 and f"after epoch {killed_after}" in lines[resumed_at[0]]
    epochs_after = [int(line.split("epoch ")[1].split()[0]) for line in lines[resumed_at[0] + 1:] if " epoch " in line]
    assert epochs_after == list(range(killed_after, 4))  # only the epochs the killed run had not finished


def test_torchrun_two_processes_write_one_set_of_files(tmp_path_factory):
    env = {**prepared_roots(tmp_path_factory.getbasetemp() / "training_data"),
           "SF3D_RESULTS": str(tmp_path_factory.mktemp("ddp"))}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               *train_command("all", "--epochs", "1", "--iterations-per-epoch", "2")[1:]]
    result = run(command, env, timeout=300)
    fold = Path(env["SF3D_RESULTS"]) / DATASET / "SegFormer3D__3d_fullres" / "fold_all"
    assert sorted(p.name for p in fold.iterdir()) == ["checkpoint_best.pth", "checkpoint_final.pth", "config.json",
                                                      "progress.png", "training_log.txt"]
    lines = (fold / "training_log.txt").read_text().splitlines()
    assert len(lines) == 2 and "x 2 rank(s)" in lines[0] and "epoch 0 " in lines[1], result.stderr


def _error(command: list[str], env: dict[str, str]) -> str:
    result = run(command, env, check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


def test_bad_input_is_one_line_and_exit_2(tmp_path_factory, tmp_path):
    env = {**prepared_roots(tmp_path_factory.getbasetemp() / "training_data"), "SF3D_RESULTS": str(tmp_path / "r")}
    assert "no Dataset777_*" in _error([sys.executable, "-m", "segformer3d_auto.cli.train", "777", "0"], env)
    assert "out of range" in _error(train_command("7"), env)
    assert "expected 0..4" in _error(train_command("seven"), env)
    empty = {"SF3D_RAW": env["SF3D_RAW"], "SF3D_PREPROCESSED": str(tmp_path / "nothing"),
             "SF3D_RESULTS": str(tmp_path / "r")}
    assert "sf3d_plan_and_preprocess" in _error(train_command("0"), empty)
    fold = tmp_path / "r" / DATASET / "SegFormer3D__3d_fullres" / "fold_0"
    fold.mkdir(parents=True)
    (fold / "checkpoint_latest.pth").write_bytes(b"not a checkpoint")
    assert "checkpoint_latest.pth" in _error(train_command("0", "--continue"), env)
