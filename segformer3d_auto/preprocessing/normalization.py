"""Intensity normalization schemes, chosen per channel by the planner and applied per case.

``CTNormalization``: CT intensities are calibrated (Hounsfield units), so every case is normalized the same way,
with statistics of the foreground of the whole training set (from the fingerprint): clip to its 0.5 and 99.5
percentiles, then subtract its mean and divide by its standard deviation.

``ZScoreNormalization``: other modalities (MRI, ...) have arbitrary intensity scales, so each case is normalized
by its own mean and standard deviation. With ``use_mask`` (the planner sets it when cropping to the nonzero region
removed much of the image), only voxels inside the nonzero mask (``seg >= 0``, see ``cropping``) are used and
normalized, and the voxels outside are set to 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

CT = "CTNormalization"
ZSCORE = "ZScoreNormalization"
SCHEMES = (CT, ZSCORE)
_EPS = 1e-8
_CT_KEYS = ("mean", "std", "percentile_00_5", "percentile_99_5")


def scheme_for_channel_name(name: str) -> str:
    """Normalization scheme for a channel named in ``dataset.json``: "CT" (any case) gives CT, all else z-score."""
    return CT if str(name).strip().casefold() == "ct" else ZSCORE


def normalize(
    data: np.ndarray,
    schemes: Sequence[str],
    use_mask: Sequence[bool],
    intensity_properties: Mapping[str, Mapping[str, float]],
    seg: np.ndarray | None = None,
) -> np.ndarray:
    """Normalize each channel of ``data`` with its scheme.

    Args:
        data: ``(c, z, y, x)`` image channels; not modified.
        schemes: one scheme name per channel (:data:`SCHEMES`).
        use_mask: one flag per channel; for z-score, normalize only where ``seg >= 0`` and set the rest to 0.
            Ignored by CT normalization, as in nnU-Net.
        intensity_properties: the fingerprint's ``foreground_intensity_properties_per_channel``, keyed by the
            channel index as a string; needed for CT channels only.
        seg: ``(z, y, x)`` labels with -1 outside the nonzero mask (from ``crop_to_nonzero``); needed when a
            z-score channel uses the mask.

    Returns:
        A new float32 array of ``data``'s shape.
    """
    if data.ndim != 4:
        raise ValueError(f"data must be (c, z, y, x), got shape {data.shape}")
    if len(schemes) != data.shape[0] or len(use_mask) != data.shape[0]:
        raise ValueError(
            f"need one normalization scheme and one use_mask flag per channel ({data.shape[0]}), got "
            f"{list(schemes)} and {list(use_mask)}"
        )
    unknown = [s for s in schemes if s not in SCHEMES]
    if unknown:
        raise ValueError(f"unknown normalization scheme(s) {unknown}; known: {list(SCHEMES)}")
    if seg is not None and seg.shape != data.shape[1:]:
        raise ValueError(f"seg shape {seg.shape} does not match the image's spatial shape {data.shape[1:]}")
    out = np.empty(data.shape, dtype=np.float32)
    mask = None
    for c, (scheme, masked) in enumerate(zip(schemes, use_mask)):
        if scheme == CT:
            out[c] = ct_normalize(data[c], _ct_properties(intensity_properties, c))
            continue
        if masked:
            if seg is None:
                raise ValueError(f"channel {c} uses the nonzero mask for z-score normalization, but no seg was given")
            mask = seg >= 0 if mask is None else mask
        out[c] = zscore_normalize(data[c], mask if masked else None)
    return out


def ct_normalize(channel: np.ndarray, properties: Mapping[str, float]) -> np.ndarray:
    """Clip to the dataset's foreground percentiles 0.5 and 99.5, then z-score with its foreground mean and std."""
    clipped = np.clip(channel, properties["percentile_00_5"], properties["percentile_99_5"]).astype(np.float32)
    clipped -= np.float32(properties["mean"])
    clipped /= np.float32(max(float(properties["std"]), _EPS))
    return clipped


def zscore_normalize(channel: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Z-score with the case's own mean and std; with a mask, over and for the masked voxels only (rest 0)."""
    values = channel.astype(np.float32)
    if mask is None:
        mean, std = values.mean(dtype=np.float64), values.std(dtype=np.float64)
        values -= np.float32(mean)
        values /= np.float32(max(std, _EPS))
        return values
    inside = values[mask]
    if inside.size == 0:
        return np.zeros_like(values)
    mean, std = inside.mean(dtype=np.float64), inside.std(dtype=np.float64)
    out = np.zeros_like(values)
    out[mask] = (inside - np.float32(mean)) / np.float32(max(std, _EPS))
    return out


def _ct_properties(intensity_properties: Mapping[str, Mapping[str, float]], channel: int) -> Mapping[str, float]:
    props = intensity_properties.get(str(channel)) if isinstance(intensity_properties, Mapping) else None
    if props is None:
        raise ValueError(
            f"CT normalization of channel {channel} needs foreground_intensity_properties_per_channel"
            f"['{channel}'] from the fingerprint; have {sorted(intensity_properties or {})}"
        )
    missing = [k for k in _CT_KEYS if k not in props]
    if missing:
        raise ValueError(f"foreground intensity properties of channel {channel} lack {missing}")
    return props
