"""Resampling of images, segmentations and probability maps to a new voxel grid, following nnU-Net's rules.

nnU-Net's rules, kept here:

* the new shape is ``round(old_spacing / new_spacing * old_shape)`` per axis;
* when the current spacing (or, failing that, the target spacing) is anisotropic, i.e. its largest entry is more
  than ``anisotropy_threshold`` times its smallest and one axis alone has the largest spacing, that axis is
  resampled on its own with ``order_z`` (0, nearest, by default) so that thick slices are not blended, while each
  slice is resized in-plane with ``order``;
* segmentations are resampled one label at a time as one-hot masks.

What differs, measured by ``benchmarks/resampling.py`` on 2 CPU cores:

* order 3 is cubic convolution (Keys, a = -0.5, i.e. Catmull-Rom) instead of a cubic B-spline: its error against
  a known smooth function is as small as the B-spline's (a = -0.75, torch's "bicubic", is no better than linear),
  and it needs no prefilter, so it is applied separably, axis by axis, as banded float32 matrix products: about
  30x less CPU time than scikit-image's order-3 resize in float64, which nnU-Net uses;
* a label goes to the voxel where its interpolated one-hot mask is the largest (an arg-max) rather than where it
  is at least 0.5, so no voxel drops to background at a junction of three labels (``label_resampling``);
* the work is done in slabs of output slices along the first resampled axis, so memory stays near the size of
  the input plus the output, which matters when exporting large probability maps.

Images and probability maps are resampled in torch when the process has imported torch, else in numpy (the same
matrix products; see ``interpolation.loaded_torch``), so prediction with an ONNX engine needs no torch.
Segmentations (training only) always use torch.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from segformer3d_auto.preprocessing.interpolation import (
    axis_taps,
    check_order,
    combine_rows,
    loaded_torch,
    resize_planes,
)

DEFAULT_SLAB_BYTES = 32 * 2**20
"""Bytes of float32 intermediates per slab: measured as fast as larger slabs, and small next to a volume."""
ANISOTROPY_THRESHOLD = 3.0
RESAMPLING_DEFAULTS: dict[str, dict[str, Any]] = {
    kind: {"order": order, "order_z": 0, "force_separate_z": None, "anisotropy_threshold": ANISOTROPY_THRESHOLD}
    for kind, order in (("data", 3), ("seg", 1), ("probabilities", 1))
}
"""nnU-Net's settings per kind of array: cubic images, linear labels (per label) and probabilities, and nearest
along a separated low-resolution axis. The planner writes them into ``plans.json``; a plan may override them."""


def compute_new_shape(
    old_shape: Sequence[int], old_spacing: Sequence[float], new_spacing: Sequence[float]
) -> tuple[int, ...]:
    """Shape of an image after resampling from ``old_spacing`` to ``new_spacing`` (nnU-Net's rounding).

    Args:
        old_shape: spatial shape, one entry per axis.
        old_spacing: voxel spacing of ``old_shape``, same axis order.
        new_spacing: target voxel spacing, same axis order.

    Returns:
        ``round(old_spacing / new_spacing * old_shape)`` per axis, at least 1.
    """
    if not len(old_shape) == len(old_spacing) == len(new_spacing):
        raise ValueError(
            f"shape and spacings need one entry per axis, got {list(old_shape)}, {list(old_spacing)}, "
            f"{list(new_spacing)}"
        )
    _check_spacing(old_spacing, "old_spacing")
    _check_spacing(new_spacing, "new_spacing")
    ratio = np.asarray(old_spacing, dtype=np.float64) / np.asarray(new_spacing, dtype=np.float64)
    shape = np.round(ratio * np.asarray(old_shape, dtype=np.float64)).astype(int)
    return tuple(int(s) for s in np.maximum(shape, 1))


def get_separate_axis(
    current_spacing: Sequence[float],
    new_spacing: Sequence[float],
    force_separate_z: bool | None = None,
    anisotropy_threshold: float = ANISOTROPY_THRESHOLD,
) -> int | None:
    """The axis to resample on its own (with ``order_z``), or None for a plain 3D resample.

    Args:
        current_spacing: spacing of the array now.
        new_spacing: spacing after resampling.
        force_separate_z: None applies nnU-Net's rule (see the module docstring); False never separates; True
            always does, along the low-resolution axis of the current spacing, else of the new spacing, else
            axis 0 when both are isotropic.
        anisotropy_threshold: largest/smallest spacing ratio above which an axis counts as low-resolution.
    """
    _check_spacing(current_spacing, "current_spacing")
    _check_spacing(new_spacing, "new_spacing")
    if force_separate_z is False:
        return None
    current_axis = _lowres_axis(current_spacing)
    new_axis = _lowres_axis(new_spacing)
    if force_separate_z is True:
        for axis in (current_axis, new_axis):
            if axis is not None:
                return axis
        return 0
    if _is_anisotropic(current_spacing, anisotropy_threshold):
        return current_axis
    if _is_anisotropic(new_spacing, anisotropy_threshold):
        return new_axis
    return None



def resampling_settings(configuration: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """The :func:`resample` keyword arguments for ``kind`` (``data``, ``seg`` or ``probabilities``): the plan's
    ``resampling[kind]`` over :data:`RESAMPLING_DEFAULTS`.

    Raises:
        ValueError: an unknown kind, or an unknown setting in the plan.
    """
    if kind not in RESAMPLING_DEFAULTS:
        raise ValueError(f"kind must be one of {sorted(RESAMPLING_DEFAULTS)}, got {kind!r}")
    given = dict(configuration.get("resampling", {}).get(kind, {}))
    known = RESAMPLING_DEFAULTS[kind]
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ValueError(f"unknown resampling setting(s) {unknown} for {kind}; known: {list(known)}")
    return {**known, **given}

def resample(
    data: np.ndarray,
    new_shape: Sequence[int],
    current_spacing: Sequence[float],
    new_spacing: Sequence[float],
    is_seg: bool,
    order: int = 3,
    order_z: int = 0,
    force_separate_z: bool | None = None,
    anisotropy_threshold: float = ANISOTROPY_THRESHOLD,
    out: np.ndarray | None = None,
    slab_bytes: int = DEFAULT_SLAB_BYTES,
    num_threads: int | None = 1,
) -> np.ndarray:
    """Resample a ``(c, z, y, x)`` array to spatial shape ``new_shape``.

    Args:
        data: image channels, probability maps (float32 or float16) or a segmentation (integer labels, -1
            allowed), shaped ``(c, z, y, x)``.
        new_shape: target spatial shape ``(z, y, x)``, e.g. from :func:`compute_new_shape`.
        current_spacing: spacing of ``data``; with ``new_spacing`` it only decides which axis, if any, is
            resampled separately (the geometry itself comes from the shapes).
        new_spacing: spacing that ``new_shape`` stands for.
        is_seg: resample as labels (one-hot, arg-max); the output keeps the input's integer dtype.
        order: in-plane interpolation order, 0 nearest, 1 linear or 3 cubic (also used along every axis when
            no axis is separated). Cubic output is clipped to each channel's input range, as scikit-image does.
        order_z: interpolation order along the separated axis.
        force_separate_z: see :func:`get_separate_axis`.
        anisotropy_threshold: see :func:`get_separate_axis`.
        out: optional array (or writable view, e.g. into a larger array) of shape ``(c, *new_shape)`` to fill
            instead of allocating one.
        slab_bytes: memory for intermediates per slab of output slices.
        num_threads: torch threads (when torch does the work) while this runs (restored after), or None to leave
            torch's setting. One by
            default: resampling runs many short parallel regions, which measured 10x slower with 2 threads than
            with 1 when the other core was busy (as when cases are preprocessed in parallel processes).

    Returns:
        The resampled array (``out`` when given): float32 for float input (float16 stays float16), the input's
        dtype for segmentations. An unchanged shape gives a copy of the input.
    """
    _check_arguments(data, new_shape, is_seg, order, order_z, slab_bytes, num_threads)
    new_shape = tuple(int(s) for s in new_shape)
    out_dtype = data.dtype if is_seg or data.dtype == np.float16 else np.dtype(np.float32)
    if out is None:
        out = np.empty((data.shape[0],) + new_shape, dtype=out_dtype)
    elif out.shape != (data.shape[0],) + new_shape:
        raise ValueError(f"out has shape {out.shape}, expected {(data.shape[0],) + new_shape}")
    if tuple(data.shape[1:]) == new_shape:
        out[...] = data
        return out
    axis = get_separate_axis(current_spacing, new_spacing, force_separate_z, anisotropy_threshold)
    first_axis, first_order = (0, order) if axis is None else (axis, order_z)
    moved_in = np.moveaxis(data, first_axis + 1, 0)
    moved_out = np.moveaxis(out, first_axis + 1, 0)
    plane_shape = tuple(s for i, s in enumerate(new_shape) if i != first_axis)
    taps = axis_taps(moved_in.shape[0], moved_out.shape[0], first_order)
    with _torch_threads(num_threads):
        if is_seg:
            from segformer3d_auto.preprocessing.label_resampling import resample_labels

            resample_labels(moved_in, moved_out, plane_shape, taps, order, slab_bytes)
        else:
            _resample_float(moved_in, moved_out, plane_shape, taps, order, slab_bytes)
    return out


@contextmanager
def _torch_threads(num_threads: int | None) -> Iterator[None]:
    """Run the block with ``num_threads`` threads, then restore the previous number: torch's threads when the
    process has loaded torch, else (the numpy path) those of numpy's BLAS, through threadpoolctl when it is
    installed. The numpy path needs the limit as much as torch: its many small matrix products ran several times
    slower with OpenBLAS's two threads than with one while the other core was busy."""
    torch = loaded_torch()
    if torch is None:
        with _blas_threads(num_threads):
            yield
        return
    previous = torch.get_num_threads()
    if num_threads is not None and num_threads != previous:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


@contextmanager
def _blas_threads(num_threads: int | None) -> Iterator[None]:
    """Limit numpy's BLAS to ``num_threads`` inside the block (nothing happens without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    if num_threads is None or threadpool_limits is None:
        yield
        return
    with threadpool_limits(limits=num_threads, user_api="blas"):
        yield


def _resample_float(
    src: np.ndarray,
    dst: np.ndarray,
    plane_shape: tuple[int, int],
    taps: tuple[np.ndarray, np.ndarray],
    order: int,
    slab_bytes: int,
) -> None:
    """Fill ``dst`` (rows, c, P, Q) from ``src`` (n, c, p, q), slab by slab along the first axis."""
    indices, weights = taps
    channels = src.shape[1]
    torch = loaded_torch()
    clip = None
    if order == 3:  # cubic overshoots at edges; clip to each channel's input range as scikit-image does
        lows = np.array([src[:, c].min() for c in range(channels)], dtype=np.float32).reshape(1, -1, 1, 1)
        highs = np.array([src[:, c].max() for c in range(channels)], dtype=np.float32).reshape(1, -1, 1, 1)
        clip = (lows, highs) if torch is None else (torch.from_numpy(lows), torch.from_numpy(highs))
    row_bytes = 4 * channels * plane_shape[0] * plane_shape[1]
    step = max(1, slab_bytes // (row_bytes * (indices.shape[1] + 2)))
    for start in range(0, dst.shape[0], step):
        stop = min(start + step, dst.shape[0])
        needed = np.unique(indices[start:stop])
        block = np.ascontiguousarray(src[needed], dtype=np.float32)
        if torch is not None:
            block = torch.from_numpy(block)
        planes = resize_planes(block, plane_shape, order)
        rows = combine_rows(planes, np.searchsorted(needed, indices[start:stop]), weights[start:stop])
        if clip is not None:
            rows = np.clip(rows, clip[0], clip[1]) if torch is None else torch.clamp(rows, clip[0], clip[1])
        dst[start:stop] = rows if torch is None else rows.numpy()


def _check_arguments(
    data: np.ndarray,
    new_shape: Sequence[int],
    is_seg: bool,
    order: int,
    order_z: int,
    slab_bytes: int,
    num_threads: int | None,
) -> None:
    """Up-front checks so that a wrong call fails with a message rather than deep inside torch."""
    if not isinstance(data, np.ndarray) or data.ndim != 4:
        raise ValueError(f"data must be a numpy array (c, z, y, x), got {getattr(data, 'shape', type(data))}")
    if len(new_shape) != 3 or any(int(s) < 1 for s in new_shape):
        raise ValueError(f"new_shape must be three positive sizes (z, y, x), got {list(new_shape)}")
    check_order(order, "order")
    check_order(order_z, "order_z")
    if is_seg and not np.issubdtype(data.dtype, np.integer):
        raise ValueError(f"a segmentation must have an integer dtype, got {data.dtype}")
    if not is_seg and not np.issubdtype(data.dtype, np.number):
        raise ValueError(f"data must be numeric, got {data.dtype}")
    if slab_bytes < 1:
        raise ValueError(f"slab_bytes must be positive, got {slab_bytes}")
    if num_threads is not None and num_threads < 1:
        raise ValueError(f"num_threads must be None or >= 1, got {num_threads}")


def _check_spacing(spacing: Sequence[float], name: str) -> None:
    if len(spacing) == 0 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"{name} must be positive finite numbers, got {list(spacing)}")


def _lowres_axis(spacing: Sequence[float]) -> int | None:
    """The one axis with the largest spacing, or None when two or more axes share it."""
    spacing = np.asarray(spacing, dtype=np.float64)
    axes = np.flatnonzero(spacing == spacing.max())
    return int(axes[0]) if len(axes) == 1 else None


def _is_anisotropic(spacing: Sequence[float], threshold: float) -> bool:
    return float(max(spacing)) / float(min(spacing)) > threshold
