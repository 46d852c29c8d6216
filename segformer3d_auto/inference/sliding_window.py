"""Gaussian-weighted sliding-window prediction of a whole image with a patch-sized network.

The network only ever sees patches of the planned size. Windows overlap (``step_size`` 0.5 moves half a
patch), and each window's logits are weighted with a Gaussian centred on the patch, because a network sees
less context near a patch border and is less reliable there. Optional mirror test-time augmentation averages
the network's logits over all flips of the chosen axes. The result is the weighted mean of LOGITS; turning
them into probabilities and averaging folds is the predictor's job.

One implementation for two array types: a torch tensor ``data`` runs in torch on any device (nothing needs a
GPU); a numpy ``data`` runs in numpy with a network that maps numpy batches to numpy logits (an ONNX engine),
without importing torch.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

if TYPE_CHECKING:
    import torch


def compute_gaussian(
    patch_size: Sequence[int],
    sigma_scale: float = 1.0 / 8,
    value_scaling_factor: float = 10.0,
    dtype: torch.dtype | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Importance map of one window: a Gaussian centred on the patch, peak ``value_scaling_factor``.

    The standard deviation along each axis is ``sigma_scale`` times the patch size on that axis, as in
    nnU-Net. Values that underflow in ``dtype`` (to zero or to a subnormal number) are raised to the smallest
    normal number of ``dtype``, so that every voxel of a window gets some weight, no voxel of the image ends up
    with a total weight of 0, and the far tails keep full precision.

    The returned tensor is cached and shared between calls: treat it as read-only.

    Args:
        patch_size: window size per spatial axis.
        sigma_scale: standard deviation as a fraction of the patch size.
        value_scaling_factor: value at the centre.
        dtype: torch dtype of the map (float32 when None).
        device: device of the map.
    """
    import torch

    patch_size = _checked_gaussian_args(patch_size, sigma_scale, value_scaling_factor)
    dtype = torch.float32 if dtype is None else dtype
    return _gaussian(patch_size, float(sigma_scale), float(value_scaling_factor), dtype, torch.device(device))


def _checked_gaussian_args(patch_size: Sequence[int], sigma_scale: float,
                           value_scaling_factor: float) -> tuple[int, ...]:
    patch_size = tuple(int(p) for p in patch_size)
    if not patch_size or any(p < 1 for p in patch_size):
        raise ValueError(f"patch_size must be positive integers, got {patch_size}")
    if not sigma_scale > 0 or not value_scaling_factor > 0:
        raise ValueError(
            f"sigma_scale and value_scaling_factor must be > 0, got {sigma_scale} and {value_scaling_factor}"
        )
    return patch_size


def compute_gaussian_numpy(patch_size: Sequence[int], sigma_scale: float = 1.0 / 8,
                           value_scaling_factor: float = 10.0) -> np.ndarray:
    """:func:`compute_gaussian` in float32 as a numpy array (the same values), for the torch-free path."""
    patch_size = _checked_gaussian_args(patch_size, sigma_scale, value_scaling_factor)
    return _gaussian_numpy(patch_size, float(sigma_scale), float(value_scaling_factor))


@functools.lru_cache(maxsize=4)
def _gaussian_float64(patch_size: tuple[int, ...], sigma_scale: float, value_scaling_factor: float) -> np.ndarray:
    gaussian = np.ones((), dtype=np.float64)
    for size in patch_size:
        # the peak sits on voxel size // 2, the voxel the network's receptive field is best centred on
        offsets = np.arange(size, dtype=np.float64) - size // 2
        sigma = size * sigma_scale
        profile = np.exp(-0.5 * (offsets / sigma) ** 2)
        gaussian = gaussian[..., None] * profile
    return gaussian / gaussian.max() * value_scaling_factor


@functools.lru_cache(maxsize=4)
def _gaussian_numpy(patch_size: tuple[int, ...], sigma_scale: float, value_scaling_factor: float) -> np.ndarray:
    gaussian = _gaussian_float64(patch_size, sigma_scale, value_scaling_factor).astype(np.float32)
    gaussian = np.maximum(gaussian, np.finfo(np.float32).tiny)
    gaussian.flags.writeable = False
    return gaussian


@functools.lru_cache(maxsize=4)
def _gaussian(
    patch_size: tuple[int, ...], sigma_scale: float, value_scaling_factor: float, dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    import torch

    gaussian = torch.from_numpy(_gaussian_float64(patch_size, sigma_scale, value_scaling_factor)).to(dtype)
    # zeros and subnormals (fp16 tails) become the smallest normal number: weight stays > 0 everywhere and a
    # lone window's tail keeps full precision when logits are multiplied by it and divided again
    return gaussian.clamp_(min=torch.finfo(dtype).tiny).to(device)


def compute_steps(image_size: Sequence[int], patch_size: Sequence[int], step_size: float) -> list[list[int]]:
    """Start offsets of the windows along each axis.

    Windows cover the image: the first starts at 0 and the last ends at the image border; in between they are
    evenly spaced, as few as possible with no gap larger than ``step_size * patch_size`` (or one voxel, if
    that is larger), so no two windows coincide.

    Args:
        image_size: image size per spatial axis; at least the patch size (see :func:`pad_to_patch`).
        patch_size: window size per spatial axis.
        step_size: largest distance between window starts, as a fraction of the patch size, in (0, 1].

    Returns:
        One sorted list of start offsets per axis.
    """
    image_size, patch_size = list(image_size), list(patch_size)
    if len(image_size) != len(patch_size):
        raise ValueError(f"image_size {image_size} and patch_size {patch_size} have different lengths")
    if not 0 < step_size <= 1:
        raise ValueError(f"step_size must be in (0, 1], got {step_size}")
    if any(p < 1 for p in patch_size):
        raise ValueError(f"patch_size must be positive integers, got {patch_size}")
    if any(i < p for i, p in zip(image_size, patch_size)):
        raise ValueError(f"image_size {image_size} is smaller than patch_size {patch_size}: pad it first")
    steps = []
    for size, patch in zip(image_size, patch_size):
        span = size - patch  # the last window starts here
        # at least one voxel between windows, or tiny patches would get duplicate windows
        n_windows = math.ceil(span / max(patch * step_size, 1.0)) + 1
        stride = span / (n_windows - 1) if n_windows > 1 else 0.0
        steps.append([int(round(stride * i)) for i in range(n_windows)])
    return steps


def pad_to_patch(data: Any, patch_size: Sequence[int]) -> tuple[Any, tuple[slice, ...]]:
    """Pad the spatial axes of ``data`` (c, z, y, x, a tensor or numpy array) with zeros to at least ``patch_size``.

    The padding is centred.

    Returns:
        The padded tensor (``data`` itself when no axis needs padding) and the slicer that cuts the original
        region back out of it (or out of a prediction of the padded tensor).
    """
    spatial = data.shape[1:]
    if len(spatial) != len(patch_size):
        raise ValueError(
            f"data must be (channels, *spatial) with {len(patch_size)} spatial axes for patch_size "
            f"{list(patch_size)}, got shape {list(data.shape)}"
        )
    before = [max(int(p) - s, 0) // 2 for s, p in zip(spatial, patch_size)]
    after = [max(int(p) - s, 0) - b for s, p, b in zip(spatial, patch_size, before)]
    slicer = (slice(None),) + tuple(slice(b, b + s) for b, s in zip(before, spatial))
    if not any(before) and not any(after):
        return data, slicer
    if isinstance(data, np.ndarray):
        return np.pad(data, [(0, 0)] + list(zip(before, after))), slicer
    import torch.nn.functional as F

    # F.pad takes (last axis before, last axis after, second-to-last before, ...)
    pads = [n for b, a in zip(reversed(before), reversed(after)) for n in (b, a)]
    return F.pad(data, pads, mode="constant", value=0.0), slicer


def sliding_window_predict(
    network: Callable[[Any], Any],
    data: torch.Tensor | np.ndarray,
    patch_size: Sequence[int],
    num_outputs: int,
    step_size: float = 0.5,
    mirror_axes: tuple[int, ...] | None = (0, 1, 2),
    sw_batch_size: int = 1,
    use_gaussian: bool = True,
    device: torch.device | str = "cpu",
    accumulate_dtype: torch.dtype | None = None,
    progress: bool = False,
) -> torch.Tensor | np.ndarray:
    """Logits of a whole image, the (Gaussian-)weighted mean of the network's logits over overlapping windows.

    Args:
        network: maps a batch (b, c, *patch_size) to logits (b, num_outputs, *patch_size): torch tensors on
            ``device`` for a tensor ``data`` (called under ``torch.inference_mode()``; wrap this call in
            ``torch.autocast`` for mixed precision), float32 numpy arrays for a numpy ``data``.
        data: preprocessed image (c, z, y, x); a tensor on any device (only window-sized pieces move to
            ``device``), or a numpy array, which runs the whole window in numpy without torch.
        patch_size: window size (z, y, x), the network's input size.
        num_outputs: number of output channels of the network.
        step_size: distance between window starts as a fraction of the patch size, in (0, 1].
        mirror_axes: spatial axes (0, 1, 2 = z, y, x of the patch) to mirror for test-time augmentation; the
            logits are averaged over all 2**len(mirror_axes) flip combinations. None or () disables it.
        sw_batch_size: number of windows per network call.
        use_gaussian: weight each window with :func:`compute_gaussian` instead of uniformly.
        device: where the network runs and the result is accumulated (torch only).
        accumulate_dtype: torch dtype of the accumulator and of the result (float32 when None); float16 halves
            the memory on CUDA, float32 is the choice on CPU. The numpy path always accumulates in float32.
        progress: show a progress bar over the windows.

    Returns:
        Logits (num_outputs, z, y, x) of the unpadded image: on ``device`` in ``accumulate_dtype`` for a tensor
        ``data``, float32 numpy for a numpy ``data``.
    """
    patch_size = tuple(int(p) for p in patch_size)
    axes = _check_arguments(data, patch_size, num_outputs, step_size, mirror_axes, sw_batch_size)
    ops = _NumpyOps() if isinstance(data, np.ndarray) else _TorchOps(device, accumulate_dtype)
    padded, slicer = pad_to_patch(data, patch_size)
    spatial = tuple(padded.shape[1:])
    windows = [
        tuple(slice(start, start + p) for start, p in zip(starts, patch_size))
        for starts in itertools.product(*compute_steps(spatial, patch_size, step_size))
    ]
    weight_acc, weight = ops.weights(patch_size, use_gaussian)  # the same values, accumulator and float32 dtype
    logits = ops.zeros((num_outputs, *spatial))
    weight_sum = ops.zeros(spatial)
    # tensor dims of every flip combination of the mirror axes, the identity () first
    flips = [tuple(2 + a for a in c) for n in range(len(axes) + 1) for c in itertools.combinations(axes, n)]
    bar = tqdm(total=len(windows), desc="sliding window", unit="window", leave=False, disable=not progress)
    with ops.no_grad():
        for first in range(0, len(windows), sw_batch_size):
            batch_windows = windows[first:first + sw_batch_size]
            batch = ops.stack([padded[(slice(None), *w)] for w in batch_windows])
            prediction = _mirrored_prediction(network, batch, flips, num_outputs, patch_size, ops)
            prediction *= weight
            for window, window_logits in zip(batch_windows, prediction):
                logits[(slice(None), *window)] += ops.to_accumulator(window_logits)
                weight_sum[window] += weight_acc
            bar.update(len(batch_windows))
        bar.close()
        logits /= weight_sum
        if not ops.finite(logits):
            raise RuntimeError(
                f"sliding-window logits are not finite (accumulated in {ops.dtype}); the network "
                "output NaN/inf or the accumulator overflowed: try accumulate_dtype=torch.float32"
            )
    return logits[slicer]


def _mirrored_prediction(
    network: Callable[[Any], Any],
    batch: Any,
    flips: list[tuple[int, ...]],
    num_outputs: int,
    patch_size: tuple[int, ...],
    ops: _TorchOps | _NumpyOps,
) -> Any:
    """Mean over ``flips`` of the network's logits for the flipped batch, flipped back (float32)."""
    total = None
    for dims in flips:
        out = network(ops.flip(batch, dims) if dims else batch)
        expected = (batch.shape[0], num_outputs, *patch_size)
        if not ops.is_array(out) or tuple(out.shape) != expected:
            got = tuple(out.shape) if ops.is_array(out) else type(out).__name__
            raise ValueError(f"network must return logits of shape {expected} for this batch, got {got}")
        out = ops.float32(out)
        if dims:
            out = ops.flip(out, dims)
        if total is None:
            total = out
        else:
            total += out
    if len(flips) > 1:
        total /= len(flips)
    return total


class _TorchOps:
    """The array operations of the sliding window, for torch tensors on a device."""

    def __init__(self, device: torch.device | str, dtype: torch.dtype | None) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.dtype = torch.float32 if dtype is None else dtype

    def weights(self, patch_size: tuple[int, ...], use_gaussian: bool) -> tuple[torch.Tensor, torch.Tensor]:
        acc = (compute_gaussian(patch_size, dtype=self.dtype, device=self.device) if use_gaussian
               else self.torch.ones(patch_size, dtype=self.dtype, device=self.device))
        return acc, acc.float()

    def zeros(self, shape: tuple[int, ...]) -> torch.Tensor:
        return self.torch.zeros(shape, dtype=self.dtype, device=self.device)

    def no_grad(self) -> Any:
        return self.torch.inference_mode()

    def stack(self, pieces: list[torch.Tensor]) -> torch.Tensor:
        return self.torch.stack(pieces).to(self.device)

    def flip(self, x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
        return self.torch.flip(x, dims)

    def is_array(self, x: Any) -> bool:
        return isinstance(x, self.torch.Tensor)

    def float32(self, x: torch.Tensor) -> torch.Tensor:
        return x.float()

    def to_accumulator(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.dtype)

    def finite(self, x: torch.Tensor) -> bool:
        return bool(self.torch.isfinite(x.amax()) and self.torch.isfinite(x.amin()))


class _NumpyOps:
    """The array operations of the sliding window, for numpy arrays (float32), without torch."""

    dtype = np.float32

    def weights(self, patch_size: tuple[int, ...], use_gaussian: bool) -> tuple[np.ndarray, np.ndarray]:
        acc = compute_gaussian_numpy(patch_size) if use_gaussian else np.ones(patch_size, dtype=np.float32)
        return acc, acc

    def zeros(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.zeros(shape, dtype=np.float32)

    def no_grad(self) -> Any:
        return contextlib.nullcontext()

    def stack(self, pieces: list[np.ndarray]) -> np.ndarray:
        return np.stack(pieces).astype(np.float32, copy=False)

    def flip(self, x: np.ndarray, dims: tuple[int, ...]) -> np.ndarray:
        return np.ascontiguousarray(np.flip(x, dims))

    def is_array(self, x: Any) -> bool:
        return isinstance(x, np.ndarray)

    def float32(self, x: np.ndarray) -> np.ndarray:
        return x.astype(np.float32, copy=False)

    def to_accumulator(self, x: np.ndarray) -> np.ndarray:
        return x

    def finite(self, x: np.ndarray) -> bool:
        return bool(np.isfinite(x.max()) and np.isfinite(x.min()))


def _check_arguments(
    data: torch.Tensor | np.ndarray,
    patch_size: tuple[int, ...],
    num_outputs: int,
    step_size: float,
    mirror_axes: tuple[int, ...] | None,
    sw_batch_size: int,
) -> tuple[int, ...]:
    """Validate the arguments of :func:`sliding_window_predict`; return the mirror axes, sorted and unique."""
    if data.ndim != 4:
        raise ValueError(f"data must be (channels, z, y, x), got shape {list(data.shape)}")
    if len(patch_size) != 3 or any(p < 1 for p in patch_size):
        raise ValueError(f"patch_size must be three positive integers (z, y, x), got {list(patch_size)}")
    if num_outputs < 1:
        raise ValueError(f"num_outputs must be >= 1, got {num_outputs}")
    if not 0 < step_size <= 1:
        raise ValueError(f"step_size must be in (0, 1], got {step_size}")
    if sw_batch_size < 1:
        raise ValueError(f"sw_batch_size must be >= 1, got {sw_batch_size}")
    axes = tuple(sorted(set(mirror_axes or ())))
    if any(a not in (0, 1, 2) for a in axes):
        raise ValueError(f"mirror_axes must be spatial axes among 0, 1, 2 (z, y, x), got {mirror_axes}")
    return axes
