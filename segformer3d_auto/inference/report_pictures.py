"""The pictures of ``report.html``: slice mosaics drawn with numpy and encoded as PNG with zlib.

Every prediction run writes a report page, so its pictures are on every user's path. Drawn with matplotlib they
cost 0.5 s of import and about 0.2 s per case, as much as predicting a small case; as plain arrays they cost a
few milliseconds. The column titles and slice numbers go into the page's HTML instead of the picture.
"""

from __future__ import annotations

import base64
import math
import struct
import zlib
from collections.abc import Sequence

import numpy as np

LABEL_COLOURS = np.array([[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
                          [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207]],
                         dtype=np.float32)
"""Colour of label k (k >= 1): row (k - 1) mod 10 (matplotlib's tab10 palette)."""
HEAT_ANCHORS = np.array([[0, 0, 4], [81, 18, 124], [183, 55, 121], [252, 137, 97], [252, 253, 191]],
                        dtype=np.float32)
"""Evenly spaced anchors of a magma-like map from 0 (black) to 1 (pale yellow), interpolated linearly."""
TARGET_SIZE = 160
"""Slices are scaled by a whole factor (nearest neighbour) towards this many pixels on their longer side."""
GAP = 2


def encode_png(rgb: np.ndarray) -> bytes:
    """An ``(height, width, 3)`` uint8 array as PNG bytes (8-bit RGB, no filtering, zlib level 6)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or 0 in rgb.shape:
        raise ValueError(f"need a non-empty (height, width, 3) uint8 array, got {rgb.dtype} {rgb.shape}")
    height, width = rgb.shape[:2]
    rows = np.concatenate([np.zeros((height, 1), np.uint8), rgb.reshape(height, width * 3)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
            + chunk(b"IEND", b""))


def png_data_uri(rgb: np.ndarray) -> str:
    """``data:image/png;base64,...`` of an RGB array, for an ``<img>`` inside a self-contained page."""
    return "data:image/png;base64," + base64.b64encode(encode_png(rgb)).decode("ascii")


def grey(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """Intensities mapped linearly from [low, high] to black..white, as float RGB in [0, 255]."""
    scaled = np.clip((image.astype(np.float32) - low) / max(high - low, 1e-6), 0.0, 1.0) * 255.0
    return np.repeat(scaled[..., None], 3, axis=-1)


def heat(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (clipped) as float RGB through the magma-like anchors."""
    position = np.clip(values.astype(np.float32), 0.0, 1.0) * (len(HEAT_ANCHORS) - 1)
    below = np.minimum(position.astype(np.int64), len(HEAT_ANCHORS) - 2)
    weight = (position - below)[..., None]
    return HEAT_ANCHORS[below] * (1.0 - weight) + HEAT_ANCHORS[below + 1] * weight


def with_labels(rgb: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``rgb`` with each labelled voxel (label > 0) blended with its label's colour."""
    out = rgb.copy()
    mask = labels > 0
    colours = LABEL_COLOURS[(labels[mask].astype(np.int64) - 1) % len(LABEL_COLOURS)]
    out[mask] = (1.0 - alpha) * out[mask] + alpha * colours
    return out


def mosaic(tiles: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
    """Rows of equally sized float RGB tiles as one uint8 picture, scaled to about ``TARGET_SIZE`` per tile."""
    height, width = tiles[0][0].shape[:2]
    longer = max(height, width)
    up = max(1, min(8, TARGET_SIZE // longer))
    down = max(1, math.ceil(longer / (2 * TARGET_SIZE)))  # large slices are thinned, not drawn at full size
    rows = []
    for row in tiles:
        scaled = [np.repeat(np.repeat(t[::down, ::down], up, axis=0), up, axis=1) for t in row]
        gap = np.full((scaled[0].shape[0], GAP, 3), 255.0, np.float32)
        rows.append(np.concatenate([part for tile in scaled for part in (tile, gap)][:-1], axis=1))
    gap = np.full((GAP, rows[0].shape[1], 3), 255.0, np.float32)
    picture = np.concatenate([part for row in rows for part in (row, gap)][:-1], axis=0)
    return np.clip(np.rint(picture), 0, 255).astype(np.uint8)
