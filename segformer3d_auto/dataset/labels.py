"""Labels, regions and the ignore label of a dataset: what the network predicts and how it maps back.

``dataset.json``'s ``labels`` maps names to values. A plain int is a label; a list of ints of length > 1 is a
*region* (BraTS-style overlapping targets such as "whole tumor" = [1, 2, 3]); as soon as one region is present,
every non-background entry is a region (an int becomes a one-label region) and ``regions_class_order`` says
which label value each region paints when predictions are turned back into a label map. An ``"ignore"`` entry
marks voxels without annotation; it must be the highest value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

IGNORE_KEY = "ignore"


class LabelManager:
    """What to train on and evaluate for a dataset's labels or regions.

    Args:
        labels: ``dataset.json``'s ``labels`` (name -> int, or name -> list of ints for a region); may hold an
            ``"ignore"`` entry.
        regions_class_order: required with regions: the label value painted for each region, in order.

    Raises:
        ValueError: the labels are inconsistent (see ``check_labels``).
    """

    def __init__(self, labels: Mapping[str, int | Sequence[int]],
                 regions_class_order: Sequence[int] | None = None) -> None:
        problem = check_labels(labels, regions_class_order)
        if problem is not None:
            raise ValueError(problem)
        self.labels = dict(labels)
        self.has_regions = _has_regions(labels)
        ignore = labels.get(IGNORE_KEY)
        self.ignore_label: int | None = None if ignore is None else int(ignore)
        entries = [(name, _as_tuple(v)) for name, v in labels.items() if name != IGNORE_KEY]
        foreground = [(name, values) for name, values in entries if values != (0,)]
        self.foreground_labels: list[int] = sorted({v for _, values in foreground for v in values})
        if self.has_regions:
            self.regions_class_order: list[int] | None = [int(c) for c in regions_class_order]
            self.foreground_regions: list[tuple[int, ...]] = [values for _, values in foreground]
            self.classes_or_regions: list[int | tuple[int, ...]] = list(self.foreground_regions)
            self.names: list[str] = [name for name, _ in foreground]
        else:
            self.regions_class_order = None
            self.foreground_regions = []
            self.classes_or_regions = list(self.foreground_labels)
            by_value = {values[0]: name for name, values in foreground}
            self.names = [by_value[v] for v in self.foreground_labels]
        declared = {0, *self.foreground_labels}
        if self.ignore_label is not None:
            declared.add(self.ignore_label)
        self.all_labels: list[int] = sorted(declared)

    @classmethod
    def from_dataset_json(cls, dataset_json: Mapping) -> LabelManager:
        """Build from a loaded ``dataset.json`` dict."""
        return cls(dataset_json["labels"], dataset_json.get("regions_class_order"))

    @property
    def has_ignore_label(self) -> bool:
        """Whether some voxels are marked as unannotated."""
        return self.ignore_label is not None

    @property
    def num_segmentation_heads(self) -> int:
        """Network output channels: one per region, or one per label including background."""
        if self.has_regions:
            return len(self.foreground_regions)
        return len(self.foreground_labels) + 1

    @property
    def head_values(self) -> list[int]:
        """Label value of each output channel (labels only): ``[0, *foreground_labels]``."""
        if self.has_regions:
            raise ValueError("region datasets have no per-channel label values; use foreground_regions")
        return [0, *self.foreground_labels]

    def to_onehot(self, seg: np.ndarray) -> np.ndarray:
        """Boolean targets (heads, ...): region membership, or one channel per label including background.

        Ignore-label voxels are False in every channel.
        """
        seg = np.asarray(seg)
        if self.has_regions:
            out = np.zeros((len(self.foreground_regions), *seg.shape), dtype=bool)
            for i, region in enumerate(self.foreground_regions):
                out[i] = np.isin(seg, region)
            return out
        values = self.head_values
        out = np.zeros((len(values), *seg.shape), dtype=bool)
        for i, value in enumerate(values):
            out[i] = seg == value
        return out

    def __repr__(self) -> str:
        kind = "regions" if self.has_regions else "labels"
        return (f"LabelManager({kind}={self.classes_or_regions}, names={self.names}, "
                f"ignore_label={self.ignore_label})")


def check_labels(labels: Mapping, regions_class_order: Sequence[int] | None = None) -> str | None:
    """What is wrong with a ``labels`` dict (and ``regions_class_order``), or None when it is usable.

    Rules (nnU-Net v2's): a background entry with value 0; label values unique non-negative ints, consecutive
    from 0 (they index the network's output channels); a region is a list of positive ints and, with regions,
    ``regions_class_order`` gives one int per region; ``"ignore"`` is an int above every other value.
    """
    if not isinstance(labels, Mapping) or not labels:
        return "'labels' must be a non-empty dict of name -> int (or list of ints for a region)"
    ignore = labels.get(IGNORE_KEY)
    values: dict[str, tuple[int, ...]] = {}
    for name, value in labels.items():
        if name == IGNORE_KEY:
            if not _is_int(value):
                return f"label 'ignore' must be an int, got {value!r}"
            continue
        if _is_int(value):
            values[name] = (int(value),)
        elif isinstance(value, (list, tuple)) and value and all(_is_int(v) for v in value):
            values[name] = tuple(int(v) for v in value)
        else:
            return f"label {name!r} must be an int or a non-empty list of ints, got {value!r}"
        if any(v < 0 for v in values[name]):
            return f"label {name!r} has a negative value {value!r}"
    if (0,) not in values.values():
        return "no background label: one label must have the value 0 (e.g. \"background\": 0)"
    every = {v for vs in values.values() for v in vs}
    if ignore is not None and every and int(ignore) <= max(every):
        return f"ignore label {ignore} must be higher than every other label value (max {max(every)})"
    if _has_regions(labels):
        regions = [vs for vs in values.values() if vs != (0,)]
        if any(0 in vs for vs in regions):
            return "a region must not contain the background value 0"
        if len(set(regions)) != len(regions):
            return "two regions have the same label values"
        if regions_class_order is None:
            return "labels define regions (lists of ints) but 'regions_class_order' is missing"
        if not isinstance(regions_class_order, (list, tuple)) or not all(_is_int(c) for c in regions_class_order):
            return f"'regions_class_order' must be a list of ints, got {regions_class_order!r}"
        if len(regions_class_order) != len(regions):
            return (f"'regions_class_order' has {len(regions_class_order)} entries but there are "
                    f"{len(regions)} regions")
        return None
    flat = [vs[0] for vs in values.values()]
    if len(set(flat)) != len(flat):
        dup = sorted({v for v in flat if flat.count(v) > 1})
        return f"label values must be unique, {dup} used more than once"
    if sorted(flat) != list(range(len(flat))):
        return f"label values must be consecutive from 0 (0, 1, 2, ...), got {sorted(flat)}"
    return None


def _has_regions(labels: Mapping) -> bool:
    return any(isinstance(v, (list, tuple)) and len(v) > 1 for k, v in labels.items() if k != IGNORE_KEY)


def _as_tuple(value: int | Sequence[int]) -> tuple[int, ...]:
    return (int(value),) if _is_int(value) else tuple(int(v) for v in value)


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def region_or_label_to_mask(seg: np.ndarray, label_or_region: int | Sequence[int]) -> np.ndarray:
    """Boolean mask of one label (``seg == label``) or one region (``seg`` in any of the region's labels).

    Args:
        seg: integer label map.
        label_or_region: a label value, or a region given as a tuple or list of label values.
    """
    if isinstance(label_or_region, (tuple, list)):
        if len(label_or_region) == 0:
            raise ValueError("a region needs at least one label value, got an empty tuple")
        if len(label_or_region) == 1:
            return seg == label_or_region[0]
        return np.isin(seg, np.asarray(label_or_region))
    return seg == label_or_region


def class_key(label_or_region: int | Sequence[int]) -> str:
    """The key of a label (``"2"``) or region (``"(1, 2, 3)"``; a one-label region is ``"1"``) in every file that
    lists classes: ``summary.json``, ``postprocessing.json`` and the preprocessed ``class_locations``."""
    if isinstance(label_or_region, (tuple, list)):
        values = tuple(int(v) for v in label_or_region)
        return str(values[0]) if len(values) == 1 else str(values)
    return str(int(label_or_region))
