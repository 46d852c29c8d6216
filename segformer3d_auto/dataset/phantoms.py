"""Building blocks of the synthetic datasets: ellipsoids, smooth noise, and the arrays of one case.

Each ``*_case`` function draws one case from its own ``numpy.random.Generator`` and returns arrays only;
``segformer3d_auto.dataset.synthetic`` writes them to disk.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter


def ellipsoid(shape: tuple[int, int, int], center: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Boolean mask of an axis-aligned ellipsoid (voxel units) in an array of ``shape``."""
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    dist = sum(((g - c) / max(r, 0.5)) ** 2 for g, c, r in zip(grids, center, radii))
    return dist <= 1.0


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float = 1.0) -> np.ndarray:
    """Unit-variance noise with a little spatial correlation (texture rather than salt and pepper)."""
    noise = gaussian_filter(rng.standard_normal(shape), sigma)
    return noise / max(float(noise.std()), 1e-6)


def _inner(rng: np.random.Generator, center: np.ndarray, radii: np.ndarray, scale: float) -> tuple:
    """An ellipsoid shrunk by ``scale`` and shifted a little, still well inside the outer one."""
    new_radii = radii * scale * rng.uniform(0.9, 1.1, 3)
    shift = (radii - new_radii) * rng.uniform(-0.3, 0.3, 3)
    return center + shift, new_radii


def mri_case(rng: np.random.Generator, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A BraTS-like case: 4 channels (FLAIR, T1, T1ce, T2) and labels 1 edema, 2 non-enhancing, 3 enhancing.

    A brain ellipsoid sits in zeros (so cropping to the nonzero region has work); the tumour is three nested
    blobs, enhancing innermost. Each channel shows the tissues with its own contrast, plus noise.
    """
    size = np.asarray(shape, dtype=float)
    brain_c = size / 2 + rng.uniform(-0.04, 0.04, 3) * size
    brain_r = size * rng.uniform(0.36, 0.42, 3)
    brain = ellipsoid(shape, brain_c, brain_r)
    edema_c = brain_c + rng.uniform(-0.3, 0.3, 3) * brain_r * 0.6
    edema_r = brain_r * rng.uniform(0.45, 0.55, 3)
    core_c, core_r = _inner(rng, edema_c, edema_r, 0.75)
    enh_c, enh_r = _inner(rng, core_c, core_r, 0.65)
    seg = np.zeros(shape, dtype=np.uint8)
    seg[ellipsoid(shape, edema_c, edema_r) & brain] = 1
    seg[ellipsoid(shape, core_c, core_r) & brain] = 2
    seg[ellipsoid(shape, enh_c, enh_r) & brain] = 3
    # Mean intensity of (brain, edema, non-enhancing, enhancing) per channel.
    contrast = np.array([[1.0, 2.2, 1.6, 1.9],    # FLAIR: edema bright
                         [1.0, 0.8, 0.45, 0.9],   # T1: core dark
                         [1.0, 1.1, 0.6, 2.6],    # T1ce: enhancing bright
                         [1.0, 2.0, 2.4, 1.5]])   # T2: fluid bright
    images = np.zeros((4, *shape), dtype=np.float32)
    tissue = seg.astype(np.intp)
    bias = 1.0 + 0.1 * smooth_noise(rng, shape, sigma=max(shape) / 4)
    for channel in range(4):
        scale = rng.uniform(300.0, 600.0)
        clean = contrast[channel][tissue] * bias
        noisy = clean + 0.12 * smooth_noise(rng, shape, sigma=0.7)
        images[channel] = np.where(brain, np.maximum(noisy, 0.02) * scale, 0.0)
    return images, seg


def ct_case(rng: np.random.Generator, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """An abdominal-CT-like case as (1, z, y, x) int16 Hounsfield units, and its labels.

    Air (-1000) around a body of soft tissue (~35 HU) with a spine (~450 HU, unlabelled), a liver (label 1,
    ~60 HU) and a contrast-enhanced kidney (label 2, ~150 HU), plus noise (8 HU).
    """
    size = np.asarray(shape, dtype=float)
    body_c = size / 2 + np.r_[0.0, rng.uniform(-0.03, 0.03, 2) * size[1:]]
    body_r = np.r_[size[0] * 10.0, size[1:] * rng.uniform(0.38, 0.45, 2)]  # a cylinder along z
    body = ellipsoid(shape, body_c, body_r)
    liver_c = body_c + np.r_[0.0, -0.1 * body_r[1], -0.35 * body_r[2]] + rng.uniform(-1, 1, 3)
    liver_r = np.r_[size[0] * rng.uniform(0.3, 0.4), body_r[1:] * rng.uniform(0.38, 0.48, 2)]
    kidney_c = body_c + np.r_[0.0, 0.35 * body_r[1], 0.45 * body_r[2]] + rng.uniform(-1, 1, 3)
    kidney_r = np.r_[size[0] * rng.uniform(0.2, 0.3), body_r[1:] * rng.uniform(0.16, 0.22, 2)]
    spine_c = body_c + np.r_[0.0, 0.7 * body_r[1], 0.0]
    spine_r = np.r_[size[0] * 10.0, body_r[1:] * 0.12]
    hu = np.full(shape, -1000.0)
    hu[body] = 35.0
    hu[ellipsoid(shape, spine_c, spine_r) & body] = 450.0
    seg = np.zeros(shape, dtype=np.uint8)
    seg[ellipsoid(shape, liver_c, liver_r) & body] = 1
    seg[ellipsoid(shape, kidney_c, kidney_r) & body] = 2
    hu[seg == 1] = 60.0 + rng.uniform(-5, 5)
    hu[seg == 2] = 150.0 + rng.uniform(-10, 10)
    hu += 8.0 * smooth_noise(rng, shape, sigma=0.6)
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16)[None], seg


def prostate_case(rng: np.random.Generator, shape: tuple[int, int, int],
                  num_channels: int) -> tuple[np.ndarray, np.ndarray]:
    """A prostate-MRI-like case: ``num_channels`` channels (T2, ADC, ...) and labels 1 PZ, 2 TZ.

    The transition zone (2) is a central blob; the peripheral zone (1) a larger blob shifted posteriorly
    (+y) around it.
    """
    size = np.asarray(shape, dtype=float)
    center = size / 2 + rng.uniform(-0.05, 0.05, 3) * size
    pz_r = np.r_[size[0] * 0.3, size[1:] * rng.uniform(0.22, 0.28, 2)]
    pz_c = center + np.r_[0.0, 0.25 * pz_r[1], 0.0]
    tz_r = pz_r * rng.uniform(0.5, 0.6, 3)
    seg = np.zeros(shape, dtype=np.uint8)
    seg[ellipsoid(shape, pz_c, pz_r)] = 1
    seg[ellipsoid(shape, center, tz_r)] = 2
    contrast = np.array([[1.0, 1.8, 0.6],    # T2: PZ bright, TZ dark
                         [1.0, 1.5, 0.7]])   # ADC
    images = np.zeros((num_channels, *shape), dtype=np.float32)
    for channel in range(num_channels):
        row = contrast[channel % len(contrast)]
        clean = row[seg.astype(np.intp)] * rng.uniform(200.0, 400.0)
        images[channel] = np.maximum(clean * (1 + 0.12 * smooth_noise(rng, shape, sigma=0.7)), 0.0)
    return images, seg


def folded_ribbon(shape: tuple[int, int, int], center: np.ndarray, radius: float, thickness: float,
                  folds: int, depth: float, phase: np.ndarray) -> np.ndarray:
    """A closed, folded shell (cortex-like ribbon) ``thickness`` voxels thick around a sphere of ``radius``.

    The shell's radius varies with direction by up to ``depth`` voxels in ``folds`` waves per turn, so the ribbon
    bends back and forth like gyri and sulci; its thickness is measured along the radius.
    """
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    z, y, x = (g - c for g, c in zip(grids, center))
    rho = np.sqrt(z * z + y * y + x * x)
    polar = np.arccos(np.clip(z / np.maximum(rho, 1e-6), -1.0, 1.0))
    azimuth = np.arctan2(y, x)
    surface = radius + depth * np.sin(folds * azimuth + phase[0]) * np.sin(folds * polar + phase[1])
    return np.abs(rho - surface) <= thickness / 2


def tubes(shape: tuple[int, int, int], rng: np.random.Generator, count: int, radius_range: tuple[float, float],
          steps: int = 24) -> np.ndarray:
    """``count`` winding tubes (vessel-like) of radius drawn from ``radius_range`` voxels, as a boolean mask.

    Each tube is a smooth random walk of ``steps`` straight segments starting near the centre; a voxel belongs to
    it when its centre lies within the radius of a segment (exact point-segment distance, so sub-voxel radii give
    1-3 voxel wide tubes rather than rasterisation noise).
    """
    size = np.asarray(shape, dtype=float)
    mask = np.zeros(shape, dtype=bool)
    for _ in range(count):
        radius = rng.uniform(*radius_range)
        position = size / 2 + rng.uniform(-0.15, 0.15, 3) * size
        direction = rng.standard_normal(3)
        step = min(shape) / 12
        for _ in range(steps):
            direction = direction / np.linalg.norm(direction) + 0.5 * rng.standard_normal(3)
            direction /= np.linalg.norm(direction)
            end = np.clip(position + step * direction, 2, size - 3)
            segment = end - position
            # only the segment's bounding box (grown by the radius) can be within reach
            low = np.maximum(np.floor(np.minimum(position, end) - radius - 1), 0).astype(int)
            high = np.minimum(np.ceil(np.maximum(position, end) + radius + 2), size).astype(int)
            box = tuple(slice(lo, hi) for lo, hi in zip(low, high))
            points = np.stack(np.meshgrid(*(np.arange(lo, hi, dtype=float) for lo, hi in zip(low, high)),
                                          indexing="ij"), -1)
            t = np.clip((points - position) @ segment / max(float(segment @ segment), 1e-9), 0.0, 1.0)
            dist2 = ((points - position - t[..., None] * segment) ** 2).sum(-1)
            mask[box] |= dist2 <= radius * radius
            position = end
    return mask


def thin_case(rng: np.random.Generator, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A case of thin structures: 1 MRI-like channel and labels 1 ribbon (a folded shell 1.5-2.5 voxels thick,
    like cortex) and 2 vessels (winding tubes 1-3 voxels wide).

    The ribbon and vessels sit in a head-like ellipsoid of tissue in a background of zeros; vessels cross the
    ribbon in places (the vessel label wins). The image is a mildly blurred (partial volume) tissue map plus noise.
    """
    size = np.asarray(shape, dtype=float)
    center = size / 2 + rng.uniform(-0.03, 0.03, 3) * size
    head = ellipsoid(shape, center, size * 0.46)
    ribbon = folded_ribbon(shape, center, float(min(shape)) * rng.uniform(0.28, 0.33), rng.uniform(1.5, 2.5),
                           int(rng.integers(3, 6)), float(min(shape)) * rng.uniform(0.05, 0.08),
                           rng.uniform(0, 2 * np.pi, 2))
    vessels = tubes(shape, rng, int(rng.integers(5, 8)), (0.6, 1.4))
    seg = np.zeros(shape, dtype=np.uint8)
    seg[ribbon & head] = 1
    seg[vessels & head] = 2
    tissue = np.array([1.0, 1.9, 0.35])[seg.astype(np.intp)]
    clean = gaussian_filter(tissue, 0.5) * rng.uniform(300.0, 500.0)
    image = clean * (1 + 0.08 * smooth_noise(rng, shape, sigma=0.6))
    return np.where(head, np.maximum(image, 1.0), 0.0).astype(np.float32)[None], seg
