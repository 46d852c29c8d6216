"""segformer3d_auto's half of ``benchmarks/compare_nnunet.py``: our commands as subprocesses, measured.

Also the small result records both halves share (``Measured``, ``TrainRun``) and ``check``, which turns a failed
command into an exit with the end of its stderr.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.measure import run_measured
from segformer3d_auto.model_folder import fold_folder, model_folder_for
from segformer3d_auto.planners.planner import CONFIGURATION

EPOCH_LINE = re.compile(r"epoch \d+ .* time=([\d.]+)s")


@dataclass
class Measured:
    """One command: wall seconds and peak resident memory of its process tree (bytes)."""

    seconds: float
    peak: int


@dataclass
class TrainRun:
    """One training command: its wall time and peak memory, what it was asked to run, and each epoch's seconds
    as the trainer logged them (training iterations plus the validation batches)."""

    seconds: float
    peak: int
    epochs: int
    iterations: int
    epoch_times: list[float]

    @property
    def steady_epoch_seconds(self) -> float:
        """Median epoch time, the first epoch (data loader and allocator warm-up) left out when there are more."""
        times = self.epoch_times[1:] or self.epoch_times
        if not times:
            raise ValueError("the training log lists no epoch times")
        return statistics.median(times)


def check(result: tuple[float, int, subprocess.CompletedProcess], what: str) -> tuple[float, int]:
    """(seconds, peak) of a ``run_measured`` result; exits with the end of stderr when the command failed."""
    seconds, peak, completed = result
    if completed.returncode != 0:
        sys.exit(f"{what} failed (exit {completed.returncode}):\n{(completed.stderr or '')[-4000:]}")
    return seconds, peak


class Sf3dSide:
    """segformer3d_auto (3d_fullres, fold 0, CPU) on one raw dataset.

    Args:
        work: this dataset's benchmark folder (``sf3d_preprocessed``, ``sf3d_results`` go there).
        raw: the raw root, shared with nnU-Net.
        num_processes: ``-np`` of preprocessing and evaluation, ``--read-ahead`` of prediction.
        num_workers: ``sf3d_train --num-workers`` (augmentation processes; 0 = in the training process).
        output_resolution: ``sf3d_plan_and_preprocess --output-resolution`` (``auto``: the planner's choice).
    """

    name = "segformer3d_auto"

    def __init__(self, work: Path, raw: Path, num_processes: int, num_workers: int,
                 output_resolution: str = "auto") -> None:
        self.work = work
        self.output_resolution = output_resolution
        self.num_processes = num_processes
        self.num_workers = num_workers
        self.env = dict(os.environ, SF3D_RAW=str(raw), SF3D_PREPROCESSED=str(work / "sf3d_preprocessed"),
                        SF3D_RESULTS=str(work / "sf3d_results"))

    def _cli(self, name: str, *args: str) -> list[str]:
        return [sys.executable, "-m", f"segformer3d_auto.cli.{name}", *args]

    def plan_and_preprocess(self, dataset_id: int) -> Measured:
        """``sf3d_plan_and_preprocess -d ID -np N --output-resolution R``, measured."""
        cmd = self._cli("plan_and_preprocess", "-d", str(dataset_id), "-np", str(self.num_processes),
                        "--output-resolution", self.output_resolution)
        return Measured(*check(run_measured(cmd, env=self.env), "sf3d_plan_and_preprocess"))

    def _plan(self, dataset_name: str) -> dict:
        plans = json.loads((self.work / "sf3d_preprocessed" / dataset_name / "plans.json").read_text())
        return plans["configurations"][CONFIGURATION]

    def patch_and_batch(self, dataset_name: str) -> tuple[list[int], int]:
        """The planned patch size and batch size (what sf3d_train uses without ``--batch-size``)."""
        plan = self._plan(dataset_name)
        return [int(s) for s in plan["patch_size"]], int(plan["batch_size"])

    def model_size(self, dataset_name: str) -> tuple[int, int]:
        """(parameters, forward FLOPs per patch) of the planned network (FLOPs counted on the meta device)."""
        from segformer3d_auto.model import create_model
        from segformer3d_auto.model.summary import count_flops

        plan = self._plan(dataset_name)
        model = create_model(plan["network"]["name"], **plan["network"]["kwargs"])
        parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return parameters, count_flops(model, plan["patch_size"])

    def _fold_dir(self, dataset_name: str) -> Path:
        return fold_folder(model_folder_for(dataset_name, root=self.work / "sf3d_results"), 0)

    def train(self, dataset_name: str, epochs: int, iterations: int, val_iterations: int,
              budget_seconds: float | None = None) -> TrainRun:
        """``sf3d_train ID 0`` from scratch on CPU (its final validation included, like nnU-Net's).

        With ``budget_seconds`` the trainer fits the number of epochs to the budget itself (``--time-budget``,
        what a user runs; the default warm-up rule) and ``epochs`` is ignored. Without it, ``epochs`` epochs with a
        linear warm-up of the default's share of the run (10 of 250 epochs), at least one epoch.
        """
        shutil.rmtree(self._fold_dir(dataset_name), ignore_errors=True)
        if budget_seconds is not None:
            length = ["--time-budget", f"{budget_seconds:g}"]
        else:
            length = ["--epochs", str(epochs), "--warmup-epochs", str(max(1, round(epochs * 10 / 250)))]
        cmd = self._cli("train", dataset_name, "0", *length, "--iterations-per-epoch", str(iterations),
                        "--val-iterations", str(val_iterations), "--device", "cpu", "--num-workers",
                        str(self.num_workers), "--no-progress")
        seconds, peak = check(run_measured(cmd, env=self.env), "sf3d_train")
        log = self._fold_dir(dataset_name) / "training_log.txt"
        times = [float(m.group(1)) for m in EPOCH_LINE.finditer(log.read_text())] if log.exists() else []
        return TrainRun(seconds, peak, len(times) if budget_seconds is not None else epochs, iterations, times)

    def predict(self, dataset_name: str, images: Path, output: Path, tta: bool) -> Measured:
        """``sf3d_predict`` of fold 0 on CPU, measured; with or without mirroring."""
        shutil.rmtree(output, ignore_errors=True)
        cmd = self._cli("predict", "-i", str(images), "-o", str(output), "-d", dataset_name, "-f", "0",
                        "--device", "cpu", "--read-ahead", str(self.num_processes), "--disable-progress-bar")
        if not tta:
            cmd.append("--disable-tta")
        return Measured(*check(run_measured(cmd, env=self.env), "sf3d_predict"))

    def evaluate(self, dataset_name: str, reference: Path, predictions: Path, output: Path) -> dict:
        """``sf3d_evaluate`` of any prediction folder (ours or nnU-Net's, same metric code); returns the summary."""
        cmd = self._cli("evaluate", str(reference), str(predictions), "-d", dataset_name, "-o", str(output),
                        "-np", str(self.num_processes))
        result = subprocess.run(cmd, env=self.env, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"sf3d_evaluate {predictions} failed:\n{result.stderr[-4000:]}")
        return json.loads(output.read_text())
