"""One-dimensional interpolation weights and the in-plane resize that ``resampling`` builds volumes from.

All three orders use the pixel-centre convention of ``torch.nn.functional.interpolate(align_corners=False)``
(and of scikit-image's ``resize``, which nnU-Net uses): output voxel ``j`` of ``n_out`` samples the input at
``(j + 0.5) * n_in / n_out - 0.5``, and samples beyond the border repeat the edge voxel. The weights are written
out here (rather than left to ``interpolate``) so that a volume can be resampled one slab of output slices at a
time along its first axis with exactly the result of resampling it whole.

The resizes take torch tensors or numpy arrays and compute in the same library: the same banded matrix
products, in torch (as measured fastest by ``benchmarks/resampling.py``) or in numpy for the prediction runtime
without torch. :func:`loaded_torch` is how callers choose: torch when the process has imported it already.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

SUPPORTED_ORDERS = (0, 1, 3)
"""Interpolation orders: 0 nearest, 1 linear, 3 cubic convolution (Keys, a = -0.5: Catmull-Rom)."""

_CUBIC_A = -0.5
_BLOCK = 32
"""Output rows per block of a banded matrix product: measured fastest of 16, 32 and 64 on 2 CPU cores."""


def loaded_torch() -> ModuleType | None:
    """The torch module when this process has imported it, else None (then resampling runs in numpy).

    Training, and prediction with the torch backend, have torch loaded and resample in torch as before; the
    ONNX backends never import it, so prediction without torch installed takes the numpy path, and one with
    torch installed does not pay for loading it.
    """
    return sys.modules.get("torch")


def check_order(order: int, name: str = "order") -> None:
    """Raise ValueError unless ``order`` is one of :data:`SUPPORTED_ORDERS`."""
    if isinstance(order, bool) or order not in SUPPORTED_ORDERS:
        raise ValueError(f"{name} must be one of {SUPPORTED_ORDERS} (nearest, linear, cubic), got {order!r}")


def axis_taps(n_in: int, n_out: int, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Input indices and weights that make each output sample along one axis.

    Args:
        n_in: number of input samples along the axis.
        n_out: number of output samples.
        order: 0, 1 or 3.

    Returns:
        ``(indices, weights)``, both of shape ``(n_out, taps)``: output sample ``j`` is
        ``sum_k weights[j, k] * input[indices[j, k]]``. Indices are clamped into ``[0, n_in)``; the weights of
        each row sum to 1. An unchanged length gives the identity (one tap of weight 1) for every order.
    """
    check_order(order)
    if n_in < 1 or n_out < 1:
        raise ValueError(f"axis lengths must be >= 1, got n_in={n_in}, n_out={n_out}")
    if n_in == n_out:
        return np.arange(n_out, dtype=np.int64)[:, None], np.ones((n_out, 1), dtype=np.float32)
    source = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    if order == 0:
        idx = np.minimum(np.floor(source + 0.5), n_in - 1).astype(np.int64)
        return idx[:, None], np.ones((n_out, 1), dtype=np.float32)
    if order == 1:
        source = np.maximum(source, 0.0)
        low = np.minimum(np.floor(source), n_in - 1)
        frac = source - low
        idx = np.stack([low, np.minimum(low + 1, n_in - 1)], axis=1).astype(np.int64)
        return idx, np.stack([1.0 - frac, frac], axis=1).astype(np.float32)
    low = np.floor(source)
    t = source - low
    idx = np.clip(low[:, None] + np.arange(-1, 3)[None, :], 0, n_in - 1).astype(np.int64)
    weights = np.stack([_cubic_outer(t + 1.0), _cubic_inner(t), _cubic_inner(1.0 - t), _cubic_outer(2.0 - t)], 1)
    return idx, weights.astype(np.float32)


def _cubic_inner(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel for |x| <= 1."""
    return ((_CUBIC_A + 2.0) * x - (_CUBIC_A + 3.0)) * x * x + 1.0


def _cubic_outer(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel for 1 < |x| < 2."""
    return ((_CUBIC_A * x - 5.0 * _CUBIC_A) * x + 8.0 * _CUBIC_A) * x - 4.0 * _CUBIC_A


def axis_matrix_numpy(n_in: int, n_out: int, order: int) -> np.ndarray:
    """The resampling of one axis as a dense ``(n_out, n_in)`` float32 matrix (rows are :func:`axis_taps`)."""
    indices, weights = axis_taps(n_in, n_out, order)
    matrix = np.zeros((n_out, n_in), dtype=np.float32)
    for k in range(indices.shape[1]):
        np.add.at(matrix, (np.arange(n_out), indices[:, k]), weights[:, k])
    return matrix


def axis_matrix(n_in: int, n_out: int, order: int) -> torch.Tensor:
    """:func:`axis_matrix_numpy` as a torch tensor."""
    import torch

    return torch.from_numpy(axis_matrix_numpy(n_in, n_out, order))


def resize_planes(block: Any, size: tuple[int, int], order: int) -> Any:
    """Resize the last two axes of a ``(n, c, p, q)`` tensor or numpy array to ``size``, each plane on its own.

    Linear and cubic apply the separable weights of :func:`axis_taps` as banded matrix products (measured faster
    on CPU than ``torch.nn.functional.interpolate``, whose cubic kernel is a = -0.75); nearest gathers indices, so
    it also works on integer arrays. The result has the input's type.
    """
    check_order(order)
    (p, q), (big_p, big_q) = block.shape[2:], size
    if (p, q) == (big_p, big_q):
        return block
    if order == 0:
        rows, cols = axis_taps(p, big_p, 0)[0][:, 0], axis_taps(q, big_q, 0)[0][:, 0]
        if isinstance(block, np.ndarray):
            return np.take(np.take(block, rows, axis=2), cols, axis=3)
        import torch

        return block.index_select(2, torch.from_numpy(rows)).index_select(3, torch.from_numpy(cols))
    if p * big_q <= big_p * q:  # resample the axis whose pass leaves the smaller intermediate first
        return _along_rows(_along_last(block, big_q, order), big_p, order)
    return _along_last(_along_rows(block, big_p, order), big_q, order)


def _along_last(x: Any, n_out: int, order: int) -> Any:
    """Resample the last axis with block-banded matrix products."""
    n_in = x.shape[-1]
    if n_in == n_out:
        return x
    matrix, windows = _banded(n_in, n_out, order, not isinstance(x, np.ndarray))
    out = _empty_like(x, tuple(x.shape[:-1]) + (n_out,))
    for j0, j1, i0, i1 in windows:
        out[..., j0:j1] = x[..., i0:i1] @ matrix[j0:j1, i0:i1].T
    return out


def _along_rows(x: Any, n_out: int, order: int) -> Any:
    """Resample the second-to-last axis with block-banded matrix products."""
    n_in = x.shape[-2]
    if n_in == n_out:
        return x
    matrix, windows = _banded(n_in, n_out, order, not isinstance(x, np.ndarray))
    out = _empty_like(x, tuple(x.shape[:-2]) + (n_out, x.shape[-1]))
    for j0, j1, i0, i1 in windows:
        out[..., j0:j1, :] = matrix[j0:j1, i0:i1] @ x[..., i0:i1, :]
    return out


def _empty_like(x: Any, shape: tuple[int, ...]) -> Any:
    return np.empty(shape, dtype=x.dtype) if isinstance(x, np.ndarray) else x.new_empty(shape)


@lru_cache(maxsize=32)
def _banded(n_in: int, n_out: int, order: int, as_torch: bool) -> tuple[Any, list[tuple[int, int, int, int]]]:
    """The axis matrix and its blocks: (first row, end row, first input column, end input column).

    Cached, because every slab (and every label of a label map) resizes planes of the same size; callers only
    read the matrix.
    """
    indices = axis_taps(n_in, n_out, order)[0]
    windows = []
    for j0 in range(0, n_out, _BLOCK):
        j1 = min(j0 + _BLOCK, n_out)
        windows.append((j0, j1, int(indices[j0:j1].min()), int(indices[j0:j1].max()) + 1))
    return (axis_matrix if as_torch else axis_matrix_numpy)(n_in, n_out, order), windows


def combine_rows(planes: Any, positions: np.ndarray, weights: np.ndarray) -> Any:
    """Weighted sums of rows of ``planes`` along its first axis: the first-axis half of a separable resize.

    Args:
        planes: ``(n, ...)`` tensor or numpy array of already in-plane-resized input slices.
        positions: ``(rows, taps)`` indices into ``planes``'s first axis.
        weights: ``(rows, taps)`` float32 weights.

    Returns:
        ``(rows, ...)`` of ``planes``'s type; ``out[j] = sum_k weights[j, k] * planes[positions[j, k]]``.
    """
    numpy = isinstance(planes, np.ndarray)
    if positions.shape[1] == 1 and np.all(weights == 1.0):
        index = np.ascontiguousarray(positions[:, 0])
        if numpy:
            return np.take(planes, index, axis=0)
        import torch

        return planes.index_select(0, torch.from_numpy(index))
    matrix = np.zeros((positions.shape[0], planes.shape[0]), dtype=np.float32)
    for k in range(positions.shape[1]):
        np.add.at(matrix, (np.arange(positions.shape[0]), positions[:, k]), weights[:, k])
    flat = planes.reshape(planes.shape[0], -1)
    if not numpy:
        import torch

        matrix = torch.from_numpy(matrix)
    return (matrix @ flat).reshape((positions.shape[0],) + tuple(planes.shape[1:]))
