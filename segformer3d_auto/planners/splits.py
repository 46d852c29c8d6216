"""Five-fold cross-validation splits, seeded and written once (a user's own ``splits_final.json`` is kept)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from segformer3d_auto.atomic import read_user_json, write_json
from segformer3d_auto.errors import InputError

NUM_FOLDS = 5
SEED = 12345


def make_splits(identifiers: Sequence[str], num_folds: int = NUM_FOLDS, seed: int = SEED) -> list[dict[str, list]]:
    """Shuffle the cases with ``seed`` and cut them into ``num_folds`` validation sets of near-equal size.

    With fewer cases than folds, every case is a validation set of its own (and there are that many folds).

    Raises:
        ValueError: for fewer than two cases or fewer than two folds.
    """
    ids = sorted(identifiers)
    if len(ids) < 2 or num_folds < 2:
        raise ValueError(f"cross-validation needs at least 2 cases and 2 folds, got {len(ids)} and {num_folds}")
    order = np.random.default_rng(seed).permutation(len(ids))
    folds = np.array_split(order, min(num_folds, len(ids)))
    return [
        {"train": sorted(ids[i] for i in order if i not in set(fold)), "val": sorted(ids[i] for i in fold)}
        for fold in folds
    ]


def load_or_create_splits(path: Path, identifiers: Sequence[str]) -> list[dict[str, list]]:
    """The splits in ``path`` if it exists (checked against the cases), else new ones written there."""
    path = Path(path)
    if not path.exists():
        splits = make_splits(identifiers)
        write_json(splits, path)
        return splits
    splits = read_user_json(path)
    known = set(identifiers)
    if not isinstance(splits, list) or not all(isinstance(s, dict) and {"train", "val"} <= set(s) for s in splits):
        raise InputError(f"{path}: expected a list of {{'train': [...], 'val': [...]}} folds")
    unknown = sorted({c for s in splits for c in s["train"] + s["val"]} - known)
    if unknown:
        raise InputError(f"{path}: cases that are not in the dataset: {', '.join(unknown[:5])}")
    return splits
