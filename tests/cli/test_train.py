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
from tests.shared_data import shared_folder
from tests.training.data import DATASET, prepared_roots, run, train_command, trained_fold0

# measured on this dataset: an untrained network scores 0.07-0.12 mean foreground Dice (three seeds); fold 0
# after 8 x 10 iterations 0.85-0.90 (three seeds, lr 3e-4 and 1e-3); 40 iterations were not always enough (0.37)
LEARNING_MARGIN = 0.4


def test_training_learns_and_writes_the_model_folder(tmp_path_factory, monkeypatch):
    base = shared_folder(tmp_path_factory, "training_data")
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
    base = shared_folder(tmp_path_factory, "training_data")
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
    # an uninterrupted run's schedule, written out: the 2 warm-up epochs asked for exceed a fifth of 4 epochs
    # (rounded down: 0), so it decays from the start from the default peak 1e-3: 1e-3*(1-e/4)**0.9
    assert resumed["logging"]["lr"] == pytest.approx([1e-3, 1e-3 * 0.75**0.9, 1e-3 * 0.5**0.9, 1e-3 * 0.25**0.9])
    lines = (fold / "training_log.txt").read_text().splitlines()
    resumed_at = [i for i, line in enumerate(lines) if "resuming from checkpoint_latest.pth" in line]
    assert len(resumed_at) == 1 and f"after epoch {killed_after}" in lines[resumed_at[0]]
    epochs_after = [int(line.split("epoch ")[1].split()[0]) for line in lines[resumed_at[0] + 1:] if " epoch " in line]
    assert epochs_after == list(range(killed_after, 4))  # only the epochs the killed run had not finished


def test_torchrun_two_processes_write_one_set_of_files(tmp_path_factory):
    env = {**prepared_roots(shared_folder(tmp_path_factory, "training_data")),
           "SF3D_RESULTS": str(tmp_path_factory.mktemp("ddp"))}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               *train_command("all", "--epochs", "1", "--iterations-per-epoch", "2")[1:]]
    result = run(command, env, timeout=300)
    fold = Path(env["SF3D_RESULTS"]) / DATASET / "SegFormer3D__3d_fullres" / "fold_all"
    assert sorted(p.name for p in fold.iterdir()) == ["checkpoint_best.pth", "checkpoint_final.pth", "config.json",
                                                      "progress.png", "training_log.txt"]
    lines = (fold / "training_log.txt").read_text().splitlines()
    assert len(lines) == 2 and "x 2 rank(s)" in lines[0] and "epoch 0 " in lines[1], result.stderr


def _error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


def test_bad_input_is_one_line_and_exit_2(tmp_path_factory, tmp_path, cli_main):
    from segformer3d_auto.cli.train import main

    env = {**prepared_roots(shared_folder(tmp_path_factory, "training_data")), "SF3D_RESULTS": str(tmp_path / "r")}
    # one real subprocess (the exit status the shell sees); the other cases call main() in this process
    assert "no Dataset777_*" in _error(run([sys.executable, "-m", "segformer3d_auto.cli.train", "777", "0"], env,
                                           check=False))

    def error(*options: str, roots: dict[str, str] = env) -> str:
        return _error(cli_main(main, *train_command(*options)[3:], env=roots))

    assert "out of range" in error("7")
    assert "expected 0..4" in error("seven")
    assert "time budget '2x'" in error("0", "--time-budget", "2x")
    assert "--budget-clock needs --time-budget" in error("0", "--budget-clock", "cpu")
    assert "needs --pretrained" in error("0", "--freeze-encoder-epochs", "2")
    assert "patience" in error("0", "--early-stopping", "0")
    assert "augmentation_warmup" in error("0", "--augmentation-warmup", "-5")
    empty = {"SF3D_RAW": env["SF3D_RAW"], "SF3D_PREPROCESSED": str(tmp_path / "nothing"),
             "SF3D_RESULTS": str(tmp_path / "r")}
    assert "sf3d_plan_and_preprocess" in error("0", roots=empty)
    fold = tmp_path / "r" / DATASET / "SegFormer3D__3d_fullres" / "fold_0"
    fold.mkdir(parents=True)
    (fold / "checkpoint_latest.pth").write_bytes(b"not a checkpoint")
    assert "checkpoint_latest.pth" in error("0", "--continue")


def _log_lines(fold: Path) -> list[str]:
    return (fold / "training_log.txt").read_text().splitlines()


def test_time_budget_fixes_the_epochs_anneals_and_continue_keeps_the_rest(tmp_path_factory):
    env = prepared_roots(shared_folder(tmp_path_factory, "training_data"))
    options = ["--iterations-per-epoch", "1", "--val-iterations", "1", "--save-every", "1"]

    # a budget spent before the first epoch ends binds on any machine: 1 epoch instead of the default maximum
    env_tiny = {**env, "SF3D_RESULTS": str(tmp_path_factory.mktemp("budget_tiny"))}
    run(train_command("all", *options, "--time-budget", "1s"), env_tiny)
    fold = Path(env_tiny["SF3D_RESULTS"]) / DATASET / "SegFormer3D__3d_fullres" / "fold_all"
    assert torch.load(fold / "checkpoint_final.pth", weights_only=True)["epoch"] == 1
    lines = _log_lines(fold)
    assert any(line.endswith("of 1s left: training 1 epochs") for line in lines)
    assert any("time budget: finished after " in line for line in lines)

    # a budget far above what 6 epochs take on a loaded machine: the plan is --epochs (the maximum), made after the
    # measured epochs; the run is killed one epoch later and --continue goes on with the time that was left
    env = {**env, "SF3D_RESULTS": str(tmp_path_factory.mktemp("budget"))}
    fold = Path(env["SF3D_RESULTS"]) / DATASET / "SegFormer3D__3d_fullres" / "fold_all"
    process = subprocess.Popen(train_command("all", *options, "--time-budget", "30m", "--epochs", "6"),
                               env={**os.environ, "OMP_NUM_THREADS": "1", **env},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = fold / "training_log.txt"
    planned_at = None
    while process.poll() is None:  # kill one epoch after the plan was made
        lines = log.read_text().splitlines() if log.is_file() else []
        plan = [i for i, line in enumerate(lines) if "time budget: " in line]
        if plan and planned_at is None:
            planned_at = plan[0]
        if planned_at is not None and any(" epoch " in line for line in lines[planned_at:]):
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.2)
    process.wait()
    assert not (fold / "checkpoint_final.pth").exists(), "the run finished before it could be killed"
    killed_at = torch.load(fold / "checkpoint_latest.pth", weights_only=True)["epoch"]

    run(train_command("all", *options, "--continue"), env)  # the budget comes from the checkpoint
    lines = _log_lines(fold)
    assert any(line.endswith("left: training 6 epochs") for line in lines)
    resumed = [line for line in lines if "time budget: resuming with " in line]
    assert len(resumed) == 1 and " of 30m00s left, 6 epochs planned" in resumed[0]
    assert resumed[0].split("resuming with ")[1].split(" of")[0] != "30m00s"  # time spent was kept
    state = torch.load(fold / "checkpoint_final.pth", weights_only=True)
    assert state["epoch"] == 6 == state["schedule"]["epochs"] > killed_at
    assert state["time_budget"]["total_s"] == 1800 and 0 < state["time_budget"]["spent_s"] < 1800
    # the resumed run's checkpoint still describes the budgeted run, so that a --continue after it goes on with it
    assert (state["config"]["time_budget"], state["config"]["epochs"], state["config"]["budget_clock"]) == (
        1800, 6, "wall")
    lrs = state["logging"]["lr"]
    assert len(lrs) == 6 and lrs[-1] < 0.5 * 1e-3  # ends annealed (below half the peak), not cut off
    assert any("time budget: finished after " in line for line in lines)


def test_a_cpu_time_budget_counts_the_process_cpu_seconds_and_is_kept_in_the_checkpoint(tmp_path_factory):
    env = {**prepared_roots(shared_folder(tmp_path_factory, "training_data")),
           "SF3D_RESULTS": str(tmp_path_factory.mktemp("budget_cpu"))}
    # the imports alone take more than 1 s of CPU time: the budget binds before the first epoch ends
    run(train_command("all", "--iterations-per-epoch", "1", "--val-iterations", "1", "--time-budget", "1s",
                      "--budget-clock", "cpu"), env)
    fold = Path(env["SF3D_RESULTS"]) / DATASET / "SegFormer3D__3d_fullres" / "fold_all"
    state = torch.load(fold / "checkpoint_final.pth", weights_only=True)
    assert state["epoch"] == 1 and state["config"]["budget_clock"] == "cpu"
    assert state["time_budget"]["total_s"] == 1 and state["time_budget"]["spent_s"] > 0
    finished = [line for line in _log_lines(fold) if "time budget: finished after " in line]
    assert len(finished) == 1 and "s of 1.0s of CPU time (final validation " in finished[0]


def test_early_stopping_still_saves_validates_and_says_why(tmp_path_factory):
    env = {**prepared_roots(shared_folder(tmp_path_factory, "training_data")),
           "SF3D_RESULTS": str(tmp_path_factory.mktemp("early"))}
    fold = Path(env["SF3D_RESULTS"]) / DATASET / "SegFormer3D__3d_fullres" / "fold_0"
    # no pseudo-Dice batches: the moving average never gets a value, so nothing ever improves
    options = ["--epochs", "10", "--iterations-per-epoch", "1", "--val-iterations", "0", "--early-stopping", "2"]
    run(train_command("0", *options), env)
    assert torch.load(fold / "checkpoint_final.pth", weights_only=True)["epoch"] == 2
    assert (fold / "validation" / "summary.json").is_file()
    assert any("early stopping: no moving-average pseudo-Dice in 2 epochs" in line for line in _log_lines(fold))
    before = len(_log_lines(fold))
    run(train_command("0", *options, "--continue"), env)  # a stopped run stays stopped
    assert not any("train_loss=" in line for line in _log_lines(fold)[before:])


def test_finetuning_from_another_dataset_adapts_channels_and_head(tmp_path_factory):
    from tests.training.data import CT_DATASET, prepared_ct_roots

    # the shared region dataset is planned with the paper's network (7x7x7 first kernel, 4 channels)
    _, source_folder = trained_fold0(shared_folder(tmp_path_factory, "training_data"))
    pretrained = source_folder / "fold_0" / "checkpoint_final.pth"
    env = {**prepared_ct_roots(shared_folder(tmp_path_factory, "ct_data")),
           "SF3D_RESULTS": str(tmp_path_factory.mktemp("finetune"))}
    run(train_command("all", "--pretrained", str(pretrained), "--epochs", "1", "--iterations-per-epoch", "1",
                      "--freeze-encoder-epochs", "1", dataset="502"), env)
    fold = Path(env["SF3D_RESULTS"]) / CT_DATASET / "SegFormer3D__3d_fullres" / "fold_all"
    text = (fold / "training_log.txt").read_text()
    # the CT plan is anisotropic: a 1 x 7 x 7 first kernel where the MRI plan has 7 x 7 x 7
    assert ("stages.0.patch_embed.proj.weight: kernel (7, 7, 7) -> (1, 7, 7) (summed over axis 0); "
            "4 -> 1 channels, averaged and repeated (scaled by 4/1)") in text
    assert "decode_head.pred.weight: new head for 3 outputs (3 pretrained); copied by name: none" in text
    assert "encoder frozen from epoch 0" in text
    assert read_json(fold / "config.json")["lr"] == 1e-4  # the fine-tuning default
    source = torch.load(pretrained, weights_only=True)["network_weights"]
    tuned = torch.load(fold / "checkpoint_final.pth", weights_only=True)["network_weights"]
    embedding = "stages.0.patch_embed.proj.weight"
    frozen = [k for k in tuned if k.startswith("stages.") and f"{k}:" not in text and k in source]
    assert len(frozen) > 100 and all(torch.equal(tuned[k], source[k]) for k in frozen)
    # adapted (summed over z, then over the 4 channels: mean * 4), then one AdamW step at lr 1e-4: each weight
    # moves by at most lr (plus lr * 0.01 * |w| of weight decay)
    adapted = source[embedding].sum(dim=2, keepdim=True).sum(dim=1, keepdim=True)
    assert (tuned[embedding] - adapted).abs().max() <= 1e-4 * 1.01 + 1e-6
    assert not torch.equal(tuned["decode_head.linear_c.0.proj.weight"], source["decode_head.linear_c.0.proj.weight"])
