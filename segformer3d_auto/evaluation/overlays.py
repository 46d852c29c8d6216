"""Overlay pictures: a few slices of an image with its reference and predicted labels side by side (PNG)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from segformer3d_auto.atomic import atomic_path


def slices_with_most_foreground(seg: np.ndarray, count: int = 3) -> list[int]:
    """Indices along the first axis of the ``count`` slices with the most labelled voxels, in order."""
    per_slice = (seg > 0).reshape(seg.shape[0], -1).sum(1)
    if per_slice.max() == 0:
        return sorted(np.linspace(0, seg.shape[0] - 1, count).astype(int).tolist())
    return sorted(np.argsort(per_slice)[::-1][:count].tolist())


def save_overlay(image: np.ndarray, reference: np.ndarray | None, prediction: np.ndarray, path: Path,
                 title: str = "", slices: Sequence[int] | None = None) -> Path:
    """Draw rows of (image, image + reference, image + prediction) for a few axial slices into ``path``.

    Args:
        image: ``(z, y, x)`` intensities (one channel).
        reference: ``(z, y, x)`` labels, or None when there is no reference.
        prediction: ``(z, y, x)`` labels.
        path: the PNG to write (atomically).
        title: figure title.
        slices: slice indices along z; default: the three with most reference (else predicted) foreground.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if image.shape != prediction.shape or (reference is not None and reference.shape != image.shape):
        raise ValueError(f"image {image.shape}, reference and prediction must have the same shape")
    if slices is None:
        slices = slices_with_most_foreground(reference if reference is not None else prediction)
    columns = [("image", None), ("reference", reference), ("prediction", prediction)]
    columns = [c for c in columns if c[0] != "reference" or reference is not None]
    low, high = np.percentile(image, [1, 99])
    num_labels = int(max(prediction.max(), 0 if reference is None else reference.max(), 1))
    fig, axes = plt.subplots(len(slices), len(columns), figsize=(3 * len(columns), 3 * len(slices)),
                             squeeze=False)
    for row, z in enumerate(slices):
        for col, (name, labels) in enumerate(columns):
            ax = axes[row][col]
            ax.imshow(image[z], cmap="gray", vmin=low, vmax=high)
            if labels is not None:
                masked = np.ma.masked_equal(labels[z], 0)
                ax.imshow(masked, cmap="tab10", vmin=1, vmax=max(num_labels, 2), alpha=0.5, interpolation="nearest")
            ax.set_axis_off()
            if row == 0:
                ax.set_title(name)
            if col == 0:
                ax.text(2, 8, f"z={z}", color="yellow", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
    return Path(path)
