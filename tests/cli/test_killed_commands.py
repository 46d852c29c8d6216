"""After ``kill -9`` of a command's main process, nothing of it is left running.

Each command runs in a session of its own (``start_new_session``), so every process it starts, workers
included, carries its session id: the test waits until the command has its workers, kills only the main
process with SIGKILL, and then waits for the session to empty.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from segformer3d_auto.dataset.synthetic import make_ct_dataset
from tests.inference.model_folders import labels_dataset_json, make_model_folder, make_plans
from tests.processes import session_processes, wait_until
from tests.shared_data import shared_folder
from tests.training.data import DATASET, prepared_roots, train_command

ENDS_WITHIN_S = 30  # workers are signalled by the kernel at once; the margin is for a loaded machine


def _kill_main_and_wait(process: subprocess.Popen, workers_seen: set[int]) -> None:
    session = process.pid
    try:
        process.send_signal(signal.SIGKILL)
        process.wait()
        left = lambda: session_processes(session)  # noqa: E731
        assert wait_until(lambda: not left(), timeout=ENDS_WITHIN_S), \
            f"left running after kill -9 of {process.args[:4]}: {sorted(left())} (workers seen: {sorted(workers_seen)})"
    finally:
        for pid in session_processes(session):  # whatever a failing run left: ours to end, by pid
            os.kill(pid, signal.SIGKILL)


def _start(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1", **env}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_killed_training_leaves_no_augmentation_worker(tmp_path_factory) -> None:
    env = {**prepared_roots(shared_folder(tmp_path_factory, "training_data")),
           "SF3D_RESULTS": str(tmp_path_factory.mktemp("killed_workers"))}
    log = Path(env["SF3D_RESULTS"]) / DATASET / "SegFormer3D__3d_fullres" / "fold_all" / "training_log.txt"
    process = _start(train_command("all", "--num-workers", "2", "--epochs", "1000", "--iterations-per-epoch", "4"),
                     env)
    # after epoch 0 both the training (2) and the validation (1) augmentation workers exist
    started = wait_until(lambda: log.is_file() and "epoch 0 " in log.read_text() or process.poll() is not None,
                         timeout=300)
    workers = session_processes(process.pid) - {process.pid}
    assert started and process.poll() is None, "training ended before epoch 0 was logged"
    assert len(workers) >= 3, f"expected 3 augmentation workers, found {sorted(workers)}"
    _kill_main_and_wait(process, workers)


def test_killed_preprocessing_leaves_no_pool_worker(sf3d_roots) -> None:
    make_ct_dataset(sf3d_roots.raw, num_cases=8, shape=(24, 64, 64), num_test_cases=0)
    process = _start([sys.executable, "-m", "segformer3d_auto.cli.plan_and_preprocess", "-d", "502", "-np", "2"], {})
    workers: set[int] = set()

    def pool_running() -> bool:
        workers.update(session_processes(process.pid) - {process.pid})
        return len(workers) >= 2 or process.poll() is not None

    assert wait_until(pool_running, timeout=300, interval=0.005) and process.poll() is None, \
        "preprocessing ended before its 2 pool workers were seen"
    _kill_main_and_wait(process, workers)


def test_killed_prediction_leaves_nothing(tmp_path: Path) -> None:
    raw = make_ct_dataset(tmp_path / "raw", dataset_id=990, num_cases=1, shape=(24, 64, 64), num_test_cases=6)
    dataset_json = labels_dataset_json()
    plans = make_plans(dataset_json, spacing=[5.0, 0.8, 0.8], patch_size=[32, 32, 32], num_heads_out=3, ct=True)
    model = make_model_folder(tmp_path / "model", dataset_json, plans)
    out = tmp_path / "out"
    process = _start([sys.executable, "-m", "segformer3d_auto.cli.predict", "-i", str(raw / "imagesTs"), "-o",
                      str(out), "-m", str(model), "--read-ahead", "2", "--step-size", "0.25",
                      "--disable-progress-bar"], {})
    # the first case written: the read-ahead of the next ones is under way
    assert wait_until(lambda: list(out.glob("*.nii.gz")) or process.poll() is not None, timeout=300)
    assert process.poll() is None, "prediction ended before it could be killed"
    _kill_main_and_wait(process, session_processes(process.pid) - {process.pid})


def test_killed_demo_takes_its_running_command_with_it(demo_run: dict, tmp_path: Path) -> None:
    # the session's demo data, generated and preprocessed: this run plans again (fingerprint kept) and trains soon
    assert demo_run["result"].returncode == 0, demo_run["result"].stderr[-3000:]
    for folder in ("raw", "preprocessed"):
        shutil.copytree(demo_run["out"] / folder, tmp_path / "demo" / folder)
    process = _start([sys.executable, "-m", "segformer3d_auto.demo", "--out", str(tmp_path / "demo"), "--cases", "5",
                      "--epochs", "1000", "--iterations-per-epoch", "2"], {})
    training: set[int] = set()

    def training_started() -> bool:
        for pid in session_processes(process.pid):
            try:
                if b"sf3d_train" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    training.add(pid)
            except OSError:
                pass
        return bool(training) or process.poll() is not None

    assert wait_until(training_started, timeout=300) and process.poll() is None, "the demo ended before training"
    _kill_main_and_wait(process, training)
