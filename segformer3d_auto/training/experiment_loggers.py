"""``--logger tensorboard|mlflow|wandb``: the per-epoch scalars of ``training_log.txt``, the learning rate and a few
validation overlays, sent to the experiment trackers people already use. Each is an optional extra
(``pip install -e ".[tensorboard]"``, ``".[mlflow]"``, ``".[wandb]"``); ``training_log.txt`` and ``progress.png``
are written as before.

Where they write, with no network needed:

- tensorboard: ``fold_N/tensorboard/`` (``tensorboard --logdir`` on the model folder shows all folds).
- mlflow: ``MLFLOW_TRACKING_URI`` when set (e.g. a server, or ``sqlite:///mlflow.db`` with the full ``mlflow``
  package), else MLflow's local file store ``mlruns/`` in the model folder (``mlflow ui --backend-store-uri`` on
  it); experiment = dataset name, one run per fold.
- wandb: offline unless ``WANDB_MODE`` says otherwise, run folder under ``fold_N/wandb/`` (``wandb sync`` it later).

The adapters are thin on purpose: each call maps one to one onto the library's own logging call.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from segformer3d_auto.errors import InputError

LOGGERS = ("tensorboard", "mlflow", "wandb")
_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}
# label colours of the overlays (RGB), label 1, 2, ... cycling
COLOURS = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180]],
                   dtype=np.float32)


def check_loggers(names: list[str]) -> None:
    """InputError for an unknown logger name or a logger whose package is not installed (named in the message)."""
    import importlib.util

    for name in names:
        if name not in LOGGERS:
            raise InputError(f"--logger {name}: expected one of {', '.join(LOGGERS)}")
        if importlib.util.find_spec(_PACKAGES[name]) is None:
            raise InputError(f"--logger {name}: the package {_PACKAGES[name]} is not installed; "
                             f"pip install \"segformer3d_auto[{name}]\"")


class _TensorBoard:
    def __init__(self, fold_folder: Path, run_name: str, config: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(fold_folder / "tensorboard"))
        self.writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in sorted(config.items())), 0)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def images(self, images: dict[str, np.ndarray], step: int) -> None:
        for name, image in images.items():
            self.writer.add_image(name, image, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _MLflow:
    def __init__(self, fold_folder: Path, run_name: str, config: dict[str, Any]) -> None:
        import mlflow

        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:  # MLflow 3 keeps its file store in maintenance mode behind this opt-out; it needs no server
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = (fold_folder.parent / "mlruns").resolve().as_uri()
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        experiment_name = str(config.get("dataset_name", "segformer3d_auto"))
        experiment = self.client.get_experiment_by_name(experiment_name)
        experiment_id = (experiment.experiment_id if experiment is not None
                         else self.client.create_experiment(experiment_name))
        self.run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id
        for key, value in sorted(config.items()):
            self.client.log_param(self.run_id, key, str(value)[:500])

    def scalars(self, values: dict[str, float], step: int) -> None:
        for name, value in values.items():
            self.client.log_metric(self.run_id, name.replace("/", "_"), value, step=step)

    def images(self, images: dict[str, np.ndarray], step: int) -> None:
        for name, image in images.items():
            self.client.log_image(self.run_id, image, artifact_file=f"{name}_epoch{step:04d}.png")

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class _WandB:
    def __init__(self, fold_folder: Path, run_name: str, config: dict[str, Any]) -> None:
        import wandb

        fold_folder.mkdir(parents=True, exist_ok=True)
        self.wandb = wandb
        self.run = wandb.init(project=str(config.get("dataset_name", "segformer3d_auto")), name=run_name,
                              dir=str(fold_folder), config=config, mode=os.environ.get("WANDB_MODE", "offline"),
                              reinit=True)

    def scalars(self, values: dict[str, float], step: int) -> None:
        self.run.log(dict(values), step=step)

    def images(self, images: dict[str, np.ndarray], step: int) -> None:
        self.run.log({name: self.wandb.Image(image) for name, image in images.items()}, step=step)

    def close(self) -> None:
        self.run.finish()


_ADAPTERS = {"tensorboard": _TensorBoard, "mlflow": _MLflow, "wandb": _WandB}


class ExperimentLoggers:
    """The chosen trackers behind one interface (nothing at all when none was chosen).

    Args:
        names: subset of :data:`LOGGERS`.
        fold_folder: the fold's output folder.
        run_name: e.g. ``Dataset501_X SegFormer3D__3d_fullres fold_0``.
        config: the run's hyperparameters (logged once).
    """

    def __init__(self, names: list[str], fold_folder: str | os.PathLike, run_name: str,
                 config: dict[str, Any]) -> None:
        check_loggers(names)
        self.adapters = [_ADAPTERS[name](Path(fold_folder), run_name, config) for name in dict.fromkeys(names)]

    def log_epoch(self, curves: dict[str, list[Any]], epoch: int, class_names: list[str]) -> None:
        """The scalars of ``training_log.txt``'s line of ``epoch`` (0-based), plus the learning rate."""
        values = {name: float(curves[name][epoch]) for name in
                  ("train_loss", "val_loss", "mean_fg_dice", "ema_fg_dice", "lr", "epoch_time")}
        values.update({f"pseudo_dice/{n}": float(d) for n, d in zip(class_names, curves["pseudo_dice"][epoch])})
        values = {k: v for k, v in values.items() if not math.isnan(v)}
        for adapter in self.adapters:
            adapter.scalars(values, epoch)

    def log_images(self, images: dict[str, np.ndarray], epoch: int) -> None:
        """RGB uint8 images ``(height, width, 3)``."""
        for adapter in self.adapters:
            adapter.images(images, epoch)

    def close(self) -> None:
        for adapter in self.adapters:
            adapter.close()


def overlay(image: np.ndarray, reference: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """One slice side by side: the reference labels over the image | the predicted labels over the image.

    Args:
        image: 2D float slice (any range; scaled to its 1st-99th percentile).
        reference, prediction: 2D integer label slices (0 background; negative values, outside the image, as 0).

    Returns:
        uint8 RGB ``(height, 2 * width + 2, 3)``, a white 2-pixel bar between the halves.
    """
    if image.ndim != 2 or reference.shape != image.shape or prediction.shape != image.shape:
        raise ValueError(f"need three 2D slices of one shape, got {image.shape}, {reference.shape}, "
                         f"{prediction.shape}")
    low, high = np.percentile(image, [1, 99])
    grey = np.clip((image - low) / max(high - low, 1e-6), 0, 1)[..., None].repeat(3, axis=2) * 255

    def paint(labels: np.ndarray) -> np.ndarray:
        out = grey.copy()
        mask = labels > 0
        colours = COLOURS[(labels[mask].astype(int) - 1) % len(COLOURS)]
        out[mask] = 0.5 * out[mask] + 0.5 * colours
        return out

    bar = np.full((image.shape[0], 2, 3), 255.0)
    return np.concatenate([paint(reference), bar, paint(prediction)], axis=1).astype(np.uint8)


def batch_overlays(data: Any, seg: Any, logits: Any, label_manager: Any, count: int = 3) -> dict[str, np.ndarray]:
    """Overlays of the middle slice of the first ``count`` patches of a pseudo-Dice batch.

    Args:
        data, seg, logits: tensors ``(b, c, z, y, x)``, ``(b, 1, z, y, x)`` (labels), ``(b, heads, z, y, x)``.
        label_manager: the dataset's :class:`~segformer3d_auto.dataset.labels.LabelManager` (softmax or sigmoid).
    """
    import torch

    images = {}
    for i in range(min(count, data.shape[0])):
        scores = logits[i].detach().float().cpu()
        if label_manager.has_regions:  # each region above 0.5 painted with its value, inner regions last
            predicted = torch.zeros(scores.shape[1:], dtype=torch.int64)
            for value, region in zip(label_manager.regions_class_order, torch.sigmoid(scores) > 0.5):
                predicted[region] = value
            predicted = predicted.numpy()
        else:
            predicted = np.asarray(label_manager.head_values)[scores.argmax(0).numpy()]
        z = data.shape[2] // 2
        images[f"validation/overlay_{i}"] = overlay(data[i, 0, z].cpu().numpy(), seg[i, 0, z].cpu().numpy(),
                                                    predicted[z])
    return images
