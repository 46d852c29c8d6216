"""nnU-Net v2's half of ``benchmarks/compare_nnunet.py``: its commands, run in its own environment.

nnU-Net v2 is called through its entry-point functions with the interpreter of a separate environment (so that
ours keeps its own torch). Its trainer classes are only found inside its own package, so the budget trainer
below is written into ``<nnunetv2>/training/nnUNetTrainer/variants/`` of that environment at run time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.measure import run_measured
from benchmarks.plan_and_preprocess import NNUNET_ENTRY
from benchmarks.sf3d_side import Measured, TrainRun, check

TRAINER = "nnUNetTrainer_SF3DBudget"
PLANS = "nnUNetPlans"

TRAINER_SOURCE = f'''"""Written by segformer3d_auto's benchmarks/compare_nnunet.py (safe to delete).

nnUNetTrainer with its epochs and iterations per epoch read from environment variables, so that a CPU run fits a
wall-clock budget chosen from a measured warm-up; everything else is nnUNetTrainer's.
"""
import os

import torch

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class {TRAINER}(nnUNetTrainer):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = int(os.environ.get("SF3D_BUDGET_EPOCHS", "1"))
        self.num_iterations_per_epoch = int(os.environ.get("SF3D_BUDGET_ITERATIONS", "10"))
        self.num_val_iterations_per_epoch = int(os.environ.get("SF3D_BUDGET_VAL_ITERATIONS", "1"))
'''

# On the CPU, nnU-Net's training and prediction set torch's threads to multiprocessing.cpu_count(), whatever
# OMP_NUM_THREADS says; with SF3D_CPU_THREADS set (compare_nnunet.py --threads) that count is what they see.
THREADS = ("import os, multiprocessing; n = os.environ.get('SF3D_CPU_THREADS'); "
           "multiprocessing.cpu_count = (lambda: int(n)) if n else multiprocessing.cpu_count; ")
TRAIN_ENTRY = (THREADS + "import sys; from nnunetv2.run.run_training import run_training_entry as main; "
               "sys.argv[0] = 'nnUNetv2_train'; sys.exit(main())")
PREDICT_ENTRY = (THREADS + "import sys; from nnunetv2.inference.predict_from_raw_data import predict_entry_point "
                 "as main; sys.argv[0] = 'nnUNetv2_predict'; sys.exit(main())")

# Parameters and forward FLOPs of the planned network at its patch size, built on the meta device (nothing is
# computed) without deep supervision, as inference runs it; counted with torch's FlopCounterMode like ours.
SIZE_SCRIPT = """
import json, sys
import torch
from torch.utils.flop_counter import FlopCounterMode
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

plans = PlansManager(sys.argv[1])
with open(sys.argv[2]) as f:
    dataset_json = json.load(f)
config = plans.get_configuration("3d_fullres")
channels = len(dataset_json.get("channel_names", dataset_json.get("modality", {})))
heads = plans.get_label_manager(dataset_json).num_segmentation_heads
with torch.device("meta"):
    net = get_network_from_plans(config.network_arch_class_name, config.network_arch_init_kwargs,
                                 config.network_arch_init_kwargs_req_import, channels, heads,
                                 allow_init=True, deep_supervision=False)
counter = FlopCounterMode(display=False)
with counter, torch.no_grad():
    net(torch.empty((1, channels, *config.patch_size), device="meta"))
print(json.dumps({"parameters": sum(p.numel() for p in net.parameters() if p.requires_grad),
                  "flops": counter.get_total_flops()}))
"""


class NnUNetSide:
    """nnU-Net v2 (3d_fullres, fold 0, CPU) on one raw dataset.

    Args:
        python: interpreter of the environment where nnunetv2 is installed.
        work: this dataset's benchmark folder (``nnunet_preprocessed``, ``nnunet_results`` go there).
        raw: the raw root, shared with ours.
        num_processes: ``-np``/``-npfp`` for preprocessing and ``-npp``/``-nps`` for prediction.
        num_workers: augmentation processes (``nnUNet_n_proc_DA``; 0 = in the training process).
    """

    name = "nnU-Net v2"

    def __init__(self, python: str, work: Path, raw: Path, num_processes: int, num_workers: int) -> None:
        self.python = python
        self.work = work
        self.num_processes = num_processes
        self.num_workers = num_workers
        self.env = dict(os.environ, nnUNet_raw=str(raw), nnUNet_preprocessed=str(work / "nnunet_preprocessed"),
                        nnUNet_results=str(work / "nnunet_results"), nnUNet_compile="false")

    def plan_and_preprocess(self, dataset_id: int) -> Measured:
        """``nnUNetv2_plan_and_preprocess -d ID -c 3d_fullres -np N -npfp N``, measured."""
        cmd = [self.python, "-c", NNUNET_ENTRY, "-d", str(dataset_id), "-c", "3d_fullres",
               "-np", str(self.num_processes), "-npfp", str(self.num_processes)]
        return Measured(*check(run_measured(cmd, env=self.env), "nnUNetv2_plan_and_preprocess"))

    def _preprocessed(self, dataset_name: str) -> Path:
        return self.work / "nnunet_preprocessed" / dataset_name

    def patch_and_batch(self, dataset_name: str) -> tuple[list[int], int]:
        """The planned 3d_fullres patch size and batch size."""
        plans = json.loads((self._preprocessed(dataset_name) / f"{PLANS}.json").read_text())
        config = plans["configurations"]["3d_fullres"]
        return [int(s) for s in config["patch_size"]], int(config["batch_size"])

    def model_size(self, dataset_name: str) -> tuple[int, int]:
        """(parameters, forward FLOPs per patch) of the planned network, counted in nnU-Net's environment."""
        folder = self._preprocessed(dataset_name)
        result = subprocess.run([self.python, "-c", SIZE_SCRIPT, str(folder / f"{PLANS}.json"),
                                 str(folder / "dataset.json")], env=self.env, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"counting nnU-Net's FLOPs failed:\n{result.stderr[-3000:]}")
        values = json.loads(result.stdout.strip().splitlines()[-1])
        return int(values["parameters"]), int(values["flops"])

    def install_trainer(self) -> Path:
        """Write the budget trainer into nnU-Net's variants folder; returns the file written."""
        result = subprocess.run([self.python, "-c", "import nnunetv2; print(nnunetv2.__file__)"],
                                capture_output=True, text=True, check=True)
        package = Path(result.stdout.strip()).parent
        target = package / "training" / "nnUNetTrainer" / "variants" / f"{TRAINER}.py"
        if not target.exists() or target.read_text() != TRAINER_SOURCE:
            tmp = target.with_suffix(".py.tmp")
            tmp.write_text(TRAINER_SOURCE)
            os.replace(tmp, target)
        return target

    def _fold_dir(self, dataset_name: str) -> Path:
        return self.work / "nnunet_results" / dataset_name / f"{TRAINER}__{PLANS}__3d_fullres" / "fold_0"

    def train(self, dataset_name: str, epochs: int, iterations: int, val_iterations: int) -> TrainRun:
        """Train fold 0 from scratch (final validation included, as nnU-Net always does it)."""
        shutil.rmtree(self._fold_dir(dataset_name), ignore_errors=True)
        # nnUNet_n_proc_DA only here: its planner passes the value to torch.set_num_threads, where 0 fails
        env = dict(self.env, nnUNet_n_proc_DA=str(self.num_workers), SF3D_BUDGET_EPOCHS=str(epochs),
                   SF3D_BUDGET_ITERATIONS=str(iterations), SF3D_BUDGET_VAL_ITERATIONS=str(val_iterations))
        cmd = [self.python, "-c", TRAIN_ENTRY, dataset_name, "3d_fullres", "0", "-tr", TRAINER, "-device", "cpu"]
        seconds, peak = check(run_measured(cmd, env=env), "nnUNetv2_train")
        logs = sorted(self._fold_dir(dataset_name).glob("training_log_*.txt"))
        if not logs:
            sys.exit(f"nnUNetv2_train wrote no training log in {self._fold_dir(dataset_name)}")
        times = [float(t) for t in re.findall(r"Epoch time: ([\d.]+) s", logs[-1].read_text())]
        return TrainRun(seconds, peak, epochs, iterations, times)

    def predict(self, dataset_name: str, images: Path, output: Path, tta: bool) -> Measured:
        """``nnUNetv2_predict`` of fold 0 on CPU, measured; with or without mirroring."""
        shutil.rmtree(output, ignore_errors=True)
        cmd = [self.python, "-c", PREDICT_ENTRY, "-i", str(images), "-o", str(output), "-d", dataset_name,
               "-c", "3d_fullres", "-f", "0", "-tr", TRAINER, "-p", PLANS, "-device", "cpu",
               "-npp", str(self.num_processes), "-nps", str(self.num_processes), "--disable_progress_bar"]
        if not tta:
            cmd.append("--disable_tta")
        return Measured(*check(run_measured(cmd, env=self.env), "nnUNetv2_predict"))
