"""What the quality report measures, and the training reference it compares against.

Input measures (per case, from the raw image before preprocessing): spacing per axis and its ratio to the
training median, physical extent per axis (mm), the orientation code of the direction matrix (``LPS``-style,
the patient axis each array axis x, y, z runs closest to) and its obliquity, and per channel the 0.5/50/99.5
percentiles of the nonzero voxels plus ``median_position = (p50 - p0.5) / (p99.5 - p0.5)``, a scale- and
offset-free shape of the histogram that tells channels apart even when each scan has its own intensity scale
(FLAIR and T1 swapped, for example).

The reference (``crossval/quality_reference.json``, written by ``sf3d_crossval`` from the raw training images
and labels) holds the range of each input measure over the training cases, the orientations seen, and each
class's volume in ml. Without it, ``reference_from_fingerprint`` derives a coarser one from
``dataset_fingerprint.json``: spacings, extents after cropping, and the foreground intensity percentiles as the
allowed range of each channel's p90.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

AXES = ("z", "y", "x")
_PATIENT = ("LR", "PA", "SI")  # SimpleITK's LPS: +x to the left, +y to posterior, +z to superior


def input_measures(image: np.ndarray, properties: Mapping[str, Any],
                   channel_names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The input measures of one raw image ``(c, z, y, x)`` with its properties (see the module docstring);
    ``channel_names`` (dataset.json's) tells which channels are CT."""
    if image.ndim != 4:
        raise ValueError(f"image must be (c, z, y, x), got shape {image.shape}")
    spacing = [float(s) for s in properties["spacing"]]
    measures: dict[str, Any] = {f"spacing_{a}": s for a, s in zip(AXES, spacing)}
    measures.update({f"extent_{a}_mm": float(n * s) for a, n, s in zip(AXES, image.shape[1:], spacing)})
    code, obliquity = orientation(properties["direction"])
    measures["orientation"] = code
    measures["obliquity_degrees"] = obliquity
    for c, channel in enumerate(image):
        ct = str((channel_names or {}).get(str(c), "")).lower() == "ct"
        measures.update({f"channel_{c}_{k}": v for k, v in channel_intensity(channel, ct).items()})
    return measures


def channel_intensity(channel: np.ndarray, ct: bool = False) -> dict[str, float]:
    """p0.5, p90, p99.5 of the nonzero voxels (all voxels when none is zero) and the histogram shape."""
    values = channel[channel != 0]
    if values.size == 0:
        values = channel.ravel()
    p005, p10, p50, p90, p995 = (float(v) for v in np.percentile(values, [0.5, 10.0, 50.0, 90.0, 99.5]))
    low = p10 if ct else p005
    middle = p90 if ct else p50
    shape = (middle - low) / (p995 - low) if p995 > low else 0.5
    return {"p00_5": p005, "p90": p90, "p99_5": p995, "histogram_shape": float(shape)}


def orientation(direction: Sequence[float]) -> tuple[str, float]:
    """Orientation code (the patient direction each of x, y, z points to, e.g. ``"LPS"``) and the largest
    angle (degrees) between an image axis and its closest patient axis."""
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    code, worst = "", 0.0
    for axis in range(3):
        column = d[:, axis]
        k = int(np.argmax(np.abs(column)))
        code += _PATIENT[k][0] if column[k] > 0 else _PATIENT[k][1]
        worst = max(worst, float(np.degrees(np.arccos(min(1.0, abs(column[k]) / np.linalg.norm(column))))))
    return code, worst


def summarize(values: Iterable[float]) -> dict[str, float]:
    """min, median and max of the training values of one measure."""
    array = np.asarray(list(values), dtype=float)
    return {"min": float(array.min()), "median": float(np.median(array)), "max": float(array.max()),
            "cases": int(array.size)}


def reference_from_cases(measures: Sequence[Mapping[str, Any]], volumes: Sequence[Mapping[str, float]],
                         source: str) -> dict[str, Any]:
    """A reference from per-training-case input measures and per-case class volumes (ml)."""
    numeric = sorted(k for k, v in measures[0].items() if isinstance(v, (int, float)))
    reference: dict[str, Any] = {
        "source": source, "cases": len(measures),
        "measures": {k: summarize(m[k] for m in measures if k in m) for k in numeric},
        "orientations": sorted({str(m["orientation"]) for m in measures}),
    }
    if volumes:
        reference["volumes_ml"] = {name: summarize(v[name] for v in volumes) for name in volumes[0]}
    return reference


def reference_from_fingerprint(fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """A coarser reference from ``dataset_fingerprint.json`` (no orientations, no volumes)."""
    spacings = np.asarray(fingerprint["spacings"], dtype=float)
    extents = spacings * np.asarray(fingerprint["shapes_after_crop"], dtype=float)
    measures = {f"spacing_{a}": summarize(spacings[:, i]) for i, a in enumerate(AXES)}
    measures.update({f"extent_{a}_mm": summarize(extents[:, i]) for i, a in enumerate(AXES)})
    for c, stats in fingerprint.get("foreground_intensity_properties_per_channel", {}).items():
        measures[f"channel_{c}_p90"] = {"min": float(stats["percentile_00_5"]), "median": float(stats["median"]),
                                        "max": float(stats["percentile_99_5"]), "cases": len(spacings)}
    return {"source": "dataset_fingerprint.json", "cases": len(spacings), "measures": measures,
            "orientations": []}


def class_volumes_ml(seg: np.ndarray, spacing: Sequence[float], label_manager: Any) -> dict[str, float]:
    """Volume in ml of each class (or region) of a label map."""
    voxel_ml = float(np.prod(spacing)) / 1000.0
    volumes = {}
    for value, name in zip(label_manager.classes_or_regions, label_manager.names):
        members = list(value) if isinstance(value, (list, tuple)) else [value]
        volumes[name] = float(np.isin(seg, members).sum()) * voxel_ml
    return volumes


def fold_label_maps(probabilities: np.ndarray, regions: bool) -> np.ndarray:
    """One fold's decision on the network grid: arg-max labels ``(z, y, x)``, or region masks ``(r, z, y, x)``.

    Computed slab by slab along z into the result, so no full-size int64 arg-max is ever built.
    """
    if regions:
        return probabilities > 0.5
    return _by_slab(probabilities, np.int16, lambda slab: np.argmax(slab, axis=0))


def pairwise_fold_dice(maps: Sequence[np.ndarray], label_manager: Any) -> dict[str, float]:
    """Mean pairwise Dice between folds' decisions per class or region (NaN where no fold predicts it)."""
    result = {}
    for index, (value, name) in enumerate(zip(label_manager.classes_or_regions, label_manager.names)):
        masks = [m[index] if label_manager.has_regions else m == value for m in maps]
        scores = []
        for i in range(len(masks)):
            for j in range(i + 1, len(masks)):
                total = int(masks[i].sum()) + int(masks[j].sum())
                if total:
                    scores.append(2.0 * int(np.logical_and(masks[i], masks[j]).sum()) / total)
        result[name] = float(np.mean(scores)) if scores else float("nan")
    return result


def normalized_entropy(probabilities: np.ndarray, regions: bool) -> np.ndarray:
    """Voxel-wise entropy in [0, 1]: of the softmax over the classes divided by log(classes), or the mean binary
    entropy of the regions divided by log 2.

    Computed slab by slab along z, so the temporaries stay small next to a large CT's probabilities.
    """
    return _by_slab(probabilities, np.float32, lambda slab: _entropy(slab, regions))


def _entropy(probabilities: np.ndarray, regions: bool) -> np.ndarray:
    p = np.clip(probabilities.astype(np.float32, copy=False), 1e-7, 1.0)
    if regions:
        q = np.clip(1.0 - p, 1e-7, 1.0)
        return (-(p * np.log(p) + q * np.log(q)).mean(axis=0) / np.log(2.0)).astype(np.float32)
    return (-(p * np.log(p)).sum(axis=0) / np.log(max(p.shape[0], 2))).astype(np.float32)


def foreground_mask(probabilities: np.ndarray, regions: bool) -> np.ndarray:
    """Voxels predicted as any foreground class or region."""
    return _by_slab(probabilities, bool, lambda slab: _foreground(slab, regions))


def _foreground(probabilities: np.ndarray, regions: bool) -> np.ndarray:
    return (probabilities > 0.5).any(axis=0) if regions else np.argmax(probabilities, axis=0) > 0


def foreground_entropy(probabilities: np.ndarray, regions: bool) -> tuple[float, float]:
    """Mean :func:`normalized_entropy` over the :func:`foreground_mask` (NaN without foreground) and the
    foreground fraction, slab by slab: neither map is built at full size."""
    entropy_sum, foreground, total = 0.0, 0, 0
    for z in _slabs(probabilities.shape[1]):
        slab = probabilities[:, z]
        mask = _foreground(slab, regions)
        count = int(mask.sum())
        if count:
            entropy_sum += float(_entropy(slab, regions)[mask].sum(dtype=np.float64))
            foreground += count
        total += mask.size
    return (entropy_sum / foreground if foreground else float("nan")), (foreground / total if total else 0.0)


def _by_slab(probabilities: np.ndarray, dtype: Any, measure: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``measure`` of each (c, slab, y, x) slab of ``probabilities``, written into one (z, y, x) array of
    ``dtype``: its temporaries stay slab-sized."""
    out = np.empty(probabilities.shape[1:], dtype=dtype)
    for z in _slabs(probabilities.shape[1]):
        out[z] = measure(probabilities[:, z])
    return out


def _slabs(depth: int, slab: int = 16) -> list[slice]:
    return [slice(start, min(start + slab, depth)) for start in range(0, depth, slab)]
