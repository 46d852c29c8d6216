"""Time and accuracy of resampling candidates, against an nnU-Net-like baseline.

Usage::

    python benchmarks/resampling.py              # 4 x 160 x 160 x 128 float volume, a label map, a whole case
    python benchmarks/resampling.py --threads 2  # torch threads of the other torch candidate (default 1)
    python benchmarks/resampling.py --large      # also: a 300 x 512 x 512 probability-map export, peak RSS

The baseline follows nnU-Net v2's documented resampling (not its code): scikit-image ``resize`` in float64, order 3
for images and one-hot order 1 painted where >= 0.5 for labels, per slice plus nearest neighbour across slices when
the spacing is anisotropic. Accuracy is measured against a known smooth function: each channel samples it on the
input grid, and the resampled result is compared with the same function sampled on the output grid (RMSE relative
to the function's standard deviation, two voxels from the border left out).
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.ndimage as ndi
import SimpleITK as sitk
import torch
import torch.nn.functional as F
from skimage.transform import resize

from segformer3d_auto.planners.planner import CONFIGURATION
from segformer3d_auto.preprocessing.case_preprocessor import preprocess_case, sample_foreground_locations
from segformer3d_auto.preprocessing.cropping import crop_to_nonzero
from segformer3d_auto.preprocessing.normalization import normalize
from segformer3d_auto.preprocessing.resampling import compute_new_shape, get_separate_axis, resample

SCENARIOS = {  # name: (input spatial shape, input spacing, target spacing); both 3.3 M voxels per channel
    "3d": ((160, 160, 128), (1.2, 0.9, 0.9), (1.0, 1.0, 1.0)),
    "separate-z": ((40, 320, 256), (4.0, 0.8, 0.8), (3.0, 1.0, 1.0)),
}


def test_function(shape: tuple[int, ...], spacing: tuple[float, ...], channel: int) -> np.ndarray:
    """A smooth function of position in mm (sinusoids plus a soft-edged ball), sampled at voxel centres."""
    axes = [(np.arange(n) + 0.5) * s for n, s in zip(shape, spacing)]
    z, y, x = np.meshgrid(*axes, indexing="ij", sparse=True)
    k = 0.08 * (1 + channel)
    radius = np.sqrt((z - 60) ** 2 + (y - 64) ** 2 + (x - 64) ** 2)
    ball = np.tanh((30 - radius) / 2.0)
    return (np.sin(k * z) * np.cos(0.7 * k * y) + 0.5 * np.sin(1.3 * k * x) + ball).astype(np.float32)


def nnunet_like(data: np.ndarray, new_shape: tuple[int, ...], axis: int | None, order: int, seg: bool) -> np.ndarray:
    """Baseline: scikit-image resize in float64, separate axis with nearest neighbour, labels one-hot >= 0.5."""

    def resize_one(vol: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        if not seg:
            return resize(vol.astype(np.float64), shape, order=order, mode="edge", anti_aliasing=False)
        result = np.zeros(shape, dtype=vol.dtype)
        for label in np.unique(vol):
            mask = resize((vol == label).astype(np.float64), shape, order=order, mode="edge", anti_aliasing=False)
            result[mask >= 0.5] = label
        return result

    out = []
    for channel in data:
        if axis is None:
            out.append(resize_one(channel, new_shape))
            continue
        moved = np.moveaxis(channel, axis, 0)
        plane = tuple(s for i, s in enumerate(new_shape) if i != axis)
        planes = np.stack([resize_one(sl, plane) for sl in moved])
        n_in, n_out = moved.shape[0], new_shape[axis]
        idx = np.minimum(np.floor((np.arange(n_out) + 0.5) * n_in / n_out), n_in - 1).astype(int)
        out.append(np.moveaxis(planes[idx], 0, axis))
    return np.stack(out)


def scipy_zoom3(data: np.ndarray, new_shape: tuple[int, ...]) -> np.ndarray:
    """Cubic B-spline in float32 with scipy (3D only)."""
    factors = np.asarray(new_shape) / np.asarray(data.shape[1:])
    return np.stack([ndi.zoom(c, factors, order=3, mode="nearest", grid_mode=True) for c in data])


def sitk_bspline(data: np.ndarray, new_shape: tuple[int, ...]) -> np.ndarray:
    """SimpleITK B-spline resample with the same voxel-centre geometry (3D only)."""
    out = []
    spacing = np.asarray(data.shape[1:]) / np.asarray(new_shape)
    for channel in data:
        image = sitk.GetImageFromArray(channel)
        origin = ((spacing - 1) / 2)[::-1]
        result = sitk.Resample(image, [int(s) for s in new_shape[::-1]], sitk.Transform(), sitk.sitkBSpline,
                               origin.tolist(), spacing[::-1].tolist())
        out.append(sitk.GetArrayFromImage(result))
    return np.stack(out)


def torch_trilinear(data: np.ndarray, new_shape: tuple[int, ...]) -> np.ndarray:
    """Whole-volume trilinear with torch (no separate axis)."""
    return F.interpolate(torch.from_numpy(data)[None], size=new_shape, mode="trilinear", align_corners=False)[0].numpy()


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    """Best wall time and best CPU time of ``repeats`` runs, and the last result."""
    wall, cpu, result = float("inf"), float("inf"), None
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = fn()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return wall, cpu, result


def relative_rmse(result: np.ndarray, truth: np.ndarray) -> float:
    inner = (slice(None),) + (slice(2, -2),) * 3
    return float(np.sqrt(np.mean((result[inner] - truth[inner]) ** 2)) / truth[inner].std())


def run_scenario(name: str, shape: tuple[int, ...], old_sp: tuple, new_sp: tuple, repeats: int) -> None:
    new_shape = compute_new_shape(shape, old_sp, new_sp)
    axis = get_separate_axis(old_sp, new_sp)
    eff_sp = tuple(n * s / m for n, s, m in zip(shape, old_sp, new_shape))
    data = np.stack([test_function(shape, old_sp, c) for c in range(4)])
    truth = np.stack([test_function(new_shape, eff_sp, c) for c in range(4)])
    print(f"\n== {name}: spacing {old_sp} -> {new_sp}, data {data.shape} -> {new_shape}, separate axis {axis}")
    candidates: dict[str, Callable[[], np.ndarray]] = {
        "nnunet-like skimage order 3 (baseline)": lambda: nnunet_like(data, new_shape, axis, 3, False),
        "ours cubic (order 3; default 1 thread)": lambda: resample(data, new_shape, old_sp, new_sp, False, order=3),
        "ours cubic with 2 torch threads": lambda: resample(data, new_shape, old_sp, new_sp, False, order=3,
                                                            num_threads=2),
        "ours linear (order 1; 1 thread)": lambda: resample(data, new_shape, old_sp, new_sp, False, order=1),
    }
    if axis is None:
        candidates["scipy zoom order 3 float32"] = lambda: scipy_zoom3(data, new_shape)
        candidates["SimpleITK B-spline"] = lambda: sitk_bspline(data, new_shape)
        candidates["torch trilinear whole volume"] = lambda: torch_trilinear(data, new_shape)
    base = None
    print(f"{'data candidate':42s} {'wall s':>8s} {'cpu s':>8s} {'cpu speed-up':>13s} {'rel. RMSE':>10s}")
    for label, fn in candidates.items():
        wall, cpu, result = timed(fn, 1 if "baseline" in label else repeats)
        base = base or cpu
        print(f"{label:42s} {wall:8.3f} {cpu:8.3f} {base / cpu:12.1f}x {relative_rmse(result, truth):10.4f}")
    seg = np.zeros((1,) + shape, dtype=np.int8)
    seg[0] = np.digitize(data[0], [-0.5, 0.5, 1.2]).astype(np.int8)
    seg[0, :2] = -1
    base_wall, base_cpu, base_seg = timed(lambda: nnunet_like(seg, new_shape, axis, 1, True), 1)
    wall, cpu, ours = timed(lambda: resample(seg, new_shape, old_sp, new_sp, True, order=1), repeats)
    print(f"{'labels nnunet-like one-hot >= 0.5 order 1':42s} {base_wall:8.3f} {base_cpu:8.3f} {1.0:12.1f}x")
    print(f"{'labels ours one-hot arg-max order 1':42s} {wall:8.3f} {cpu:8.3f} {base_cpu / cpu:12.1f}x"
          f"   agreement {np.mean(ours == base_seg):.4f}; labels {sorted(np.unique(ours).tolist())} "
          f"(input {sorted(np.unique(seg).tolist())})")


def run_case(repeats: int) -> None:
    """A whole case through ``preprocess_case``, by stage, against the same steps with the baseline resampling."""
    shape, old_sp, new_sp = (128, 160, 160), (1.5, 0.8, 0.8), (1.0, 1.0, 1.0)
    body = test_function(shape, old_sp, 0)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    inside = ((z - 64) / 60.0) ** 2 + ((y - 80) / 70.0) ** 2 + ((x - 80) / 75.0) ** 2 < 1
    data = np.where(inside, 300 * body, 0).astype(np.float32)[None]
    seg = (inside & (body > 0.8)).astype(np.uint8) + (inside & (body < -0.8)).astype(np.uint8) * 2
    props = {"spacing": list(old_sp)}
    plans = {"transpose_forward": [0, 1, 2], "foreground_intensity_properties_per_channel": {},
             "configurations": {CONFIGURATION: {"spacing": list(new_sp), "use_mask_for_norm": [True],
                                               "normalization_schemes": ["ZScoreNormalization"]}}}
    print(f"\n== whole case: {data.shape} spacing {old_sp} -> {new_sp}, ZScore with mask, labels 0-2")
    stages: dict[str, Callable[[], Any]] = {}
    state: dict[str, Any] = {}
    stages["crop to nonzero"] = lambda: state.update(zip(("d", "s", "b"), crop_to_nonzero(data, seg.astype(np.int8))))
    stages["normalize"] = lambda: state.update(n=normalize(state["d"], ["ZScoreNormalization"], [True], {}, state["s"]))
    new_shape = compute_new_shape(shape, old_sp, new_sp)
    stages["resample data (ours, cubic)"] = lambda: resample(state["n"], new_shape, old_sp, new_sp, False)
    stages["resample labels (ours)"] = lambda: state.update(r=resample(state["s"][None], new_shape, old_sp, new_sp,
                                                                        True, order=1)[0])
    stages["sample foreground locations"] = lambda: sample_foreground_locations(state["r"], [1, 2])
    stages["resample data (baseline)"] = lambda: nnunet_like(state["n"], new_shape, None, 3, False)
    stages["resample labels (baseline)"] = lambda: nnunet_like(state["s"][None], new_shape, None, 1, True)
    cpu_time = {}
    for name, fn in stages.items():
        wall, cpu_time[name], _ = timed(fn, 1 if "baseline" in name else repeats)
        print(f"  {name:40s} wall {wall:7.3f} s   cpu {cpu_time[name]:7.3f} s")
    wall, cpu, _ = timed(lambda: preprocess_case(data, seg, props, plans), repeats)
    shared = sum(cpu_time[k] for k in ("crop to nonzero", "normalize", "sample foreground locations"))
    baseline = shared + cpu_time["resample data (baseline)"] + cpu_time["resample labels (baseline)"]
    print(f"  {'preprocess_case total':40s} wall {wall:7.3f} s   cpu {cpu:7.3f} s")
    print(f"  same steps with the baseline resampling: cpu {baseline:.3f} s -> {baseline / cpu:.1f}x")


def run_large(repeats: int) -> None:
    """Export-like: float16 probabilities (3, 150, 400, 400) back to (3, 300, 512, 512); peak RSS it adds."""
    rng = np.random.default_rng(0)
    probs = np.empty((3, 150, 400, 400), dtype=np.float16)
    for k in range(probs.shape[1]):  # filled slice by slice so that no float32 copy raises the peak first
        probs[:, k] = rng.random((3, 400, 400), dtype=np.float32)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    seconds, _, out = timed(lambda: resample(probs, (300, 512, 512), (2.0, 1.0, 1.0), (1.0, 0.78, 0.78), False,
                                             order=1, order_z=0), repeats)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\n== large export-like resample {probs.shape} float16 -> {out.shape} {out.dtype}: {seconds:.2f} s; "
          f"input {probs.nbytes / 2**30:.2f} GiB, output {out.nbytes / 2**30:.2f} GiB; peak RSS "
          f"{before:.2f} -> {after:.2f} GiB (+{after - before:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for 'torch trilinear whole volume' (default 1; ours sets its own)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per candidate, best taken (baseline: 1)")
    parser.add_argument("--large", action="store_true", help="also time a 300 x 512 x 512 export-like resample")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}")
    if args.large:  # first, so that the peak RSS it reports is its own
        run_large(1)
    for name, (shape, old_sp, new_sp) in SCENARIOS.items():
        run_scenario(name, shape, old_sp, new_sp, args.repeats)
    run_case(args.repeats)


if __name__ == "__main__":
    main()
