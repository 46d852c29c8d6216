"""The trainer's process-wide CPU setting, checked in a fresh process as ``sf3d_train`` starts one."""

from __future__ import annotations

import os
import subprocess
import sys

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
