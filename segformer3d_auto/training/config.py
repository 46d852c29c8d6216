"""The hyperparameters of one training run: one dataclass, set from the command line, saved as
``fold_N/config.json`` so that a run can be read back, resumed and compared."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from segformer3d_auto.planners.planner import CONFIGURATION
from segformer3d_auto.training.optimizer import HEAD_LR_SCALE
from segformer3d_auto.training.time_budget import CLOCKS

FOLD_ALL = "all"

AUGMENTATION_WARMUP = 1000
"""Training iterations before nnU-Net's spatial and intensity augmentation starts (mirroring from the first).

Augmentation regularises a long run; at its start it only slows learning. Held-out mean Dice after the same
iterations, augmentation from the first iteration vs mirroring only: thin structures 0.903 vs 0.948 (two seeds:
0.882 vs 0.931), MNI anatomy 0.924 vs 0.941, BraTS-like 0.993 vs 0.997, CT 0.976 vs 0.988 (docs/training.md).
1000 iterations are 4% of a default run (250 x 100), the whole of a few-minute CPU run."""


@dataclass
class TrainConfig:
    """Everything that decides how a fold is trained.

    Defaults were chosen by measurement on the generated datasets (see docs/training.md): AdamW at
    1e-3 with weight decay 0.01 learned faster than 3e-4 after 300 CPU seconds on the thin-structure, MNI anatomy
    and prostate-like datasets (and at least as fast among {1e-4, 3e-4, 1e-3} in earlier short runs), a short
    linear warm-up keeps the transformer from diverging in the first iterations, clipping at 1 is nnU-Net's
    transformer recipe, and the refinement head, which starts at zero, learns at ``head_lr_scale`` times the rate
    (:mod:`segformer3d_auto.training.optimizer`). The first ``augmentation_warmup`` iterations train on mirrored
    patches only (:data:`AUGMENTATION_WARMUP`).
    """

    dataset_name: str
    fold: int | str
    configuration: str = CONFIGURATION
    epochs: int = 250
    iterations_per_epoch: int = 100
    val_iterations: int = 20
    batch_size: int | None = None
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_epochs: int = 10
    poly_exponent: float = 0.9
    grad_clip: float = 1.0
    head_lr_scale: float = HEAD_LR_SCALE
    augmentation_warmup: int = AUGMENTATION_WARMUP
    oversample_foreground: float = 0.33
    device: str = "cpu"
    num_workers: int | None = None
    seed: int = 12345
    compile: bool = False
    mixed_precision: str = "auto"
    save_every: int = 5
    pretrained: str | None = None
    validate_only: bool = False
    time_budget: float | None = None
    budget_clock: str = "wall"
    early_stopping: int | None = None
    freeze_encoder_epochs: int = 0
    loggers: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_fold(self.fold)
        for name in ("epochs", "iterations_per_epoch", "val_iterations", "save_every"):
            if int(getattr(self, name)) < (0 if name == "val_iterations" else 1):
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not self.head_lr_scale > 0:
            raise ValueError(f"head_lr_scale must be positive, got {self.head_lr_scale}")
        if self.warmup_epochs < 0 or self.weight_decay < 0 or self.grad_clip < 0 or self.augmentation_warmup < 0:
            raise ValueError("warmup_epochs, weight_decay, grad_clip and augmentation_warmup must be >= 0")
        if not 0 <= self.oversample_foreground <= 1:
            raise ValueError(f"oversample_foreground must be in [0, 1], got {self.oversample_foreground}")
        if self.time_budget is not None and not self.time_budget > 0:
            raise ValueError(f"time_budget must be positive seconds, got {self.time_budget}")
        if self.budget_clock not in CLOCKS:
            raise ValueError(f"budget_clock must be one of {', '.join(CLOCKS)}, got {self.budget_clock!r}")
        if self.early_stopping is not None and self.early_stopping < 1:
            raise ValueError(f"early_stopping (patience) must be >= 1 epoch, got {self.early_stopping}")
        if self.freeze_encoder_epochs < 0:
            raise ValueError(f"freeze_encoder_epochs must be >= 0, got {self.freeze_encoder_epochs}")
        if self.mixed_precision not in ("auto", "no", "fp16", "bf16"):
            raise ValueError(f"mixed_precision must be auto, no, fp16 or bf16, got {self.mixed_precision!r}")

    @property
    def fold_name(self) -> str:
        """Folder name of the fold: ``fold_0`` .. ``fold_4`` or ``fold_all``."""
        return f"fold_{self.fold}"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (also stored inside checkpoints)."""
        return dataclasses.asdict(self)


def parse_fold(text: str | int) -> int | str:
    """Turn ``"fold3"``, ``"fold_3"``, ``"3"`` or ``"all"`` into ``3`` or ``"all"``.

    Raises:
        ValueError: anything else, including a negative number.
    """
    value = str(text).strip().lower()
    if value in (FOLD_ALL, "fold_all", "foldall"):
        return FOLD_ALL
    for prefix in ("fold_", "fold"):
        if value.startswith(prefix):
            value = value[len(prefix):]
            break
    if not value.isdigit():
        raise ValueError(f"fold {text!r}: expected 0..4, fold0..fold4 or all")
    return int(value)


def check_fold(fold: int | str) -> None:
    """ValueError unless ``fold`` is a non-negative int or ``"all"``."""
    if fold == FOLD_ALL:
        return
    if isinstance(fold, bool) or not isinstance(fold, int) or fold < 0:
        raise ValueError(f"fold must be a non-negative int or 'all', got {fold!r}")
