"""The logger adapters for real: sf3d_train with tensorboard, mlflow and wandb (offline, local folders), then each
library's own files read back and compared with the checkpoint's curves."""

from __future__ import annotations

import json
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from segformer3d_auto.errors import InputError
from segformer3d_auto.training.experiment_loggers import COLOURS, check_loggers, overlay
from tests.shared_data import shared_folder
from tests.training.data import DATASET, prepared_roots, run, train_command


def test_overlay_paints_reference_and_prediction_side_by_side():
    image = np.zeros((4, 3))
    image[0, 0] = 10.0  # 1st-99th percentile scaling: the single bright voxel ends near white
    reference = np.zeros((4, 3), dtype=int)
    reference[1, 1] = 1
    prediction = np.zeros((4, 3), dtype=int)
    prediction[2, 2] = 2
    out = overlay(image, reference, prediction)
    assert out.shape == (4, 3 + 2 + 3, 3) and out.dtype == np.uint8
    assert out[:, 3:5].min() == 255  # the separating bar
    assert out[1, 1].tolist() == (0.5 * COLOURS[0]).astype(np.uint8).tolist()  # label 1 over black
    assert out[2, 5 + 2].tolist() == (0.5 * COLOURS[1]).astype(np.uint8).tolist()  # label 2, right half
    assert out[1, 5 + 1].tolist() == [0, 0, 0]  # the prediction has no label 1 there
    with pytest.raises(ValueError):
        overlay(image, reference[:2], prediction)


def test_unknown_logger_is_an_input_error():
    with pytest.raises(InputError, match="comet"):
        check_loggers(["comet"])


def _wandb_records(path: Path) -> list[bytes]:
    """The records of a W&B ``.wandb`` file: a 7-byte header, then LevelDB-style log blocks of 32 KiB whose
    records carry a 7-byte header (crc32, little-endian length, type 1 full / 2 first / 3 middle / 4 last)."""
    raw = path.read_bytes()
    assert raw[:4] == b":W&B"
    records, pending, pos, block = [], b"", 7, 32768
    while pos + 7 <= len(raw):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        length, kind = struct.unpack("<HB", raw[pos + 4:pos + 7])
        pending += raw[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            records.append(pending)
            pending = b""
    return records


def test_tensorboard_mlflow_and_wandb_receive_the_training_curves(tmp_path_factory):
    env = {**prepared_roots(shared_folder(tmp_path_factory, "training_data")),
           "SF3D_RESULTS": str(tmp_path_factory.mktemp("loggers"))}
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "MLFLOW_"))}
    command = train_command("all", "--epochs", "2", "--iterations-per-epoch", "1", "--save-every", "1",
                            "--logger", "tensorboard,mlflow", "--logger", "wandb")
    result = subprocess.run(command, env={**clean, "OMP_NUM_THREADS": "1", **env}, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    model_folder = Path(env["SF3D_RESULTS"]) / DATASET / "SegFormer3D__3d_fullres"
    fold = model_folder / "fold_all"
    curves = torch.load(fold / "checkpoint_final.pth", weights_only=True)["logging"]
    assert len(curves["lr"]) == 2 and (fold / "progress.png").is_file()
    assert sum(" epoch " in line for line in (fold / "training_log.txt").read_text().splitlines()) == 2

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(fold / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    for name in ("train_loss", "val_loss", "ema_fg_dice", "lr"):
        logged = [(e.step, e.value) for e in events.Scalars(name)]
        assert logged == [(0, pytest.approx(curves[name][0], rel=1e-6)),
                          (1, pytest.approx(curves[name][1], rel=1e-6))], name
    assert "pseudo_dice/whole tumor" in events.Tags()["scalars"]
    assert len(events.Images("validation/overlay_0")) == 2

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=(model_folder / "mlruns").resolve().as_uri())
    runs = client.search_runs([client.get_experiment_by_name(DATASET).experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    run_id = runs[0].info.run_id
    for name in ("train_loss", "lr", "mean_fg_dice"):
        history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, name))
        assert history == [(0, pytest.approx(curves[name][0])), (1, pytest.approx(curves[name][1]))], name
    assert runs[0].data.params["epochs"] == "2"
    artifacts = [a.path for a in client.list_artifacts(run_id, "validation")]
    assert "validation/overlay_0_epoch0001.png" in artifacts

    from wandb.proto import wandb_internal_pb2

    (run_file,) = fold.glob("wandb/offline-run-*/run-*.wandb")
    rows = []
    for data in _wandb_records(run_file):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item})
    assert [row["_step"] for row in rows] == [0, 1]
    for step, row in enumerate(rows):
        assert row["lr"] == pytest.approx(curves["lr"][step]) and row["val_loss"] == pytest.approx(
            curves["val_loss"][step])
        assert row["validation/overlay_0/_type"] == "image-file"
        assert (run_file.parent / "files" / row["validation/overlay_0/path"]).is_file()


def test_unknown_logger_on_the_command_line_is_one_line_and_exit_2(tmp_path_factory, tmp_path):
    env = {**prepared_roots(shared_folder(tmp_path_factory, "training_data")), "SF3D_RESULTS": str(tmp_path)}
    result = run(train_command("all", "--logger", "tensorboard,comet"), env, check=False)
    assert result.returncode == 2 and "--logger comet" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not any(tmp_path.iterdir())
