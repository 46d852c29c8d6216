"""Gaussian-weighted sliding-window prediction of a whole image with a patch-sized network.

The network only ever sees patches of the planned size. Windows overlap (``step_size`` 0.5 moves half a
patch), and each window's logits are weighted with a Gaussian centred on the patch, because a network sees
less context near a patch border and is less reliable there. Optional mirror test-time augmentation averages
the network's logits over all flips of the chosen axes. The result is the weighted mean of LOGITS; turning
them into probabilities and averaging folds is the predictor's job.

Everything here is plain torch and runs on any device; nothing needs a GPU.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from tqdm import tqdm


def compute_gaussian(
    patch_size: Sequence[int],
    sigma_scale: float = 1.0 / 8,
    value_scaling_factor: float = 10.0,
    dtype: torch.dtype = torch.float32,
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
        dtype: dtype of the map.
        device: device of the map.
    """
    patch_size = tuple(int(p) for p in patch_size)
    if not patch_size or any(p < 1 for p in patch_size):
        raise ValueError(f"patch_size must be positive integers, got {patch_size}")
    if not sigma_scale > 0 or not value_scaling_factor > 0:
        raise ValueError(
            f"sigma_scale and value_scaling_factor must be > 0, got {sigma_scale} and {value_scaling_factor}"
        )
    return _gaussian(patch_size, float(sigma_scale), float(value_scaling_factor), dtype, torch.device(device))


@functools.lru_cache(maxsize=4)
def _gaussian(
    patch_size: tuple[int, ...], sigma_scale: float, value_scaling_factor: float, dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    gaussian = torch.ones((), dtype=torch.float64)
    for size in patch_size:
        # the peak sits on voxel size // 2, the voxel the network's receptive field is best centred on
        offsets = torch.arange(size, dtype=torch.float64) - size // 2
        sigma = size * sigma_scale
        profile = torch.exp(-0.5 * (offsets / sigma) ** 2)
        gaussian = gaussian[..., None] * profile
    gaussian = (gaussian / gaussian.max() * value_scaling_factor).to(dtype)
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


def pad_to_patch(data: torch.Tensor, patch_size: Sequence[int]) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Pad the spatial axes of ``data`` (c, z, y, x) with zeros to at least ``patch_size``, centred.

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
    # F.pad takes (last axis before, last axis after, second-to-last before, ...)
    pads = [n for b, a in zip(reversed(before), reversed(after)) for n in (b, a)]
    return F.pad(data, pads, mode="constant", value=0.0), slicer


def sliding_window_predict(
    network: Callable[[torch.Tensor], torch.Tensor],
    data: torch.Tensor,
    patch_size: Sequence[int],
    num_outputs: int,
    step_size: float = 0.5,
    mirror_axes: tuple[int, ...] | None = (0, 1, 2),
    sw_batch_size: int = 1,
    use_gaussian: bool = True,
    device: torch.device | str = "cpu",
    accumulate_dtype: torch.dtype = torch.float32,
    progress: bool = False,
) -> torch.Tensor:
    """Logits of a whole image, the (Gaussian-)weighted mean of the network's logits over overlapping windows.

    Args:
        network: maps a batch (b, c, *patch_size) to logits (b, num_outputs, *patch_size); already on
            ``device`` and in eval mode. It is called under ``torch.inference_mode()``; wrap this call in
            ``torch.autocast`` for mixed precision.
        data: preprocessed image (c, z, y, x), on any device; only window-sized pieces move to ``device``.
        patch_size: window size (z, y, x), the network's input size.
        num_outputs: number of output channels of the network.
        step_size: distance between window starts as a fraction of the patch size, in (0, 1].
        mirror_axes: spatial axes (0, 1, 2 = z, y, x of the patch) to mirror for test-time augmentation; the
            logits are averaged over all 2**len(mirror_axes) flip combinations. None or () disables it.
        sw_batch_size: number of windows per network call.
        use_gaussian: weight each window with :func:`compute_gaussian` instead of uniformly.
        device: where the network runs and the result is accumulated.
        accumulate_dtype: dtype of the accumulator and of the result; float16 halves the memory on CUDA,
            float32 is the choice on CPU.
        progress: show a progress bar over the windows.

    Returns:
        Logits (num_outputs, z, y, x) of the unpadded image, on ``device``, in ``accumulate_dtype``.
    """
    device = torch.device(device)
    patch_size = tuple(int(p) for p in patch_size)
    axes = _check_arguments(data, patch_size, num_outputs, step_size, mirror_axes, sw_batch_size)
    padded, slicer = pad_to_patch(data, patch_size)
    spatial = tuple(padded.shape[1:])
    windows = [
        tuple(slice(start, start + p) for start, p in zip(starts, patch_size))
        for starts in itertools.product(*compute_steps(spatial, patch_size, step_size))
    ]
    weight_acc = (
        compute_gaussian(patch_size, dtype=accumulate_dtype, device=device)
        if use_gaussian
        else torch.ones(patch_size, dtype=accumulate_dtype, device=device)
    )
    weight = weight_acc.float()  # the very same weights, for multiplying the float32 logits
    logits = torch.zeros((num_outputs, *spatial), dtype=accumulate_dtype, device=device)
    weight_sum = torch.zeros(spatial, dtype=accumulate_dtype, device=device)
    # tensor dims of every flip combination of the mirror axes, the identity () first
    flips = [tuple(2 + a for a in c) for n in range(len(axes) + 1) for c in itertools.combinations(axes, n)]
    bar = tqdm(total=len(windows), desc="sliding window", unit="window", leave=False, disable=not progress)
    with torch.inference_mode():
        for first in range(0, len(windows), sw_batch_size):
            batch_windows = windows[first:first + sw_batch_size]
            batch = torch.stack([padded[(slice(None), *w)] for w in batch_windows]).to(device)
            prediction = _mirrored_prediction(network, batch, flips, num_outputs, patch_size)
            prediction *= weight
            for window, window_logits in zip(batch_windows, prediction):
                logits[(slice(None), *window)] += window_logits.to(accumulate_dtype)
                weight_sum[window] += weight_acc
            bar.update(len(batch_windows))
        bar.close()
        logits /= weight_sum
        if not (torch.isfinite(logits.amax()) and torch.isfinite(logits.amin())):
            raise RuntimeError(
                f"sliding-window logits are not finite (accumulated in {accumulate_dtype}); the network "
                "output NaN/inf or the accumulator overflowed: try accumulate_dtype=torch.float32"
            )
    return logits[slicer]


def _mirrored_prediction(
    network: Callable[[torch.Tensor], torch.Tensor],
    batch: torch.Tensor,
    flips: list[tuple[int, ...]],
    num_outputs: int,
    patch_size: tuple[int, ...],
) -> torch.Tensor:
    """Mean over ``flips`` of the network's logits for the flipped batch, flipped back (float32)."""
    total = None
    for dims in flips:
        out = network(torch.flip(batch, dims) if dims else batch)
        expected = (batch.shape[0], num_outputs, *patch_size)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"network must return logits of shape {expected} for this batch, got {got}")
        out = out.float()
        if dims:
            out = torch.flip(out, dims)
        total = out if total is None else total.add_(out)
    if len(flips) > 1:
        total /= len(flips)
    return total


def _check_arguments(
    data: torch.Tensor,
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
