"""Per-case wall time and peak RSS of ``sf3d_predict`` on a large CT and a 4-channel MRI volume.

Generates (in a temporary folder) a 1-channel 512x512x300 CT-like volume and a 4-channel 160x192x160 MRI-like
one, a model folder for each with a SegFormer3D-B0 (random weights: time and memory do not depend on them),
and predicts each with the default settings and with ``--disable-tta``. Every prediction runs as its own
``sf3d_predict`` subprocess started by a fresh measuring process, so ``resource.getrusage(RUSAGE_CHILDREN)``
gives that prediction's peak RSS alone. On CUDA it also prints the GPU time and peak GPU memory.

    python benchmarks/predict.py                       # everything (slow on a small CPU: TTA is 8 passes)
    python benchmarks/predict.py --cases mri --settings no-tta
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from segformer3d_auto.model_folder import FINAL, fold_folder
from segformer3d_auto.planners.planner import CONFIGURATION

SETTINGS = {"default": [], "no-tta": ["--disable-tta"]}
CT_LIMIT_GB = 4.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", choices=("ct", "mri"), default=["ct", "mri"])
    parser.add_argument("--settings", nargs="+", choices=tuple(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--work", type=Path, default=None, help="folder for the generated data (default: temp)")
    parser.add_argument("--measure", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        return _measure(args.measure)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        print(f"{'case':<28} {'setting':<8} {'wall s':>8} {'peak RSS GB':>12}")
        for case in args.cases:
            inputs, model = _make_case(work, case)
            for setting in args.settings:
                out = work / f"out_{case}_{setting}"
                command = [sys.executable, "-m", "segformer3d_auto.cli.predict", "-i", str(inputs), "-o", str(out),
                           "-m", str(model), "--read-ahead", "0", "--device", args.device, "--disable-progress-bar",
                           *SETTINGS[setting]]
                result = subprocess.run([sys.executable, __file__, "--measure", *command], capture_output=True,
                                        text=True)
                if result.returncode != 0:
                    print(result.stdout, result.stderr, file=sys.stderr)
                    return 1
                figures = json.loads(result.stdout.strip().splitlines()[-1])
                name = "CT 1x512x512x300" if case == "ct" else "MRI 4x160x192x160"
                note = ""
                if case == "ct":
                    note = "  within 4 GB" if figures["peak_rss_gb"] <= CT_LIMIT_GB else "  OVER 4 GB"
                print(f"{name:<28} {setting:<8} {figures['wall_s']:>8.1f} {figures['peak_rss_gb']:>12.2f}{note}",
                      flush=True)
    return 0


def _measure(command: list[str]) -> int:
    """Run one prediction and print its wall time and peak RSS (this process's children only) as JSON."""
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        print(result.stderr, file=sys.stderr)
        return result.returncode
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # kilobytes on Linux
    print(json.dumps({"wall_s": wall, "peak_rss_gb": peak_kb / 2**20}))
    return 0


def _make_case(work: Path, case: str) -> tuple[Path, Path]:
    """Write the input image and a model folder for ``case``; returns (input folder, model folder)."""
    import torch

    from segformer3d_auto.atomic import write_json
    from segformer3d_auto.dataset.image_io import write_image
    from segformer3d_auto.model import create_model

    rng = np.random.default_rng(0)
    inputs = work / f"in_{case}"
    inputs.mkdir(parents=True, exist_ok=True)
    if case == "ct":
        shape, spacing, channels = (300, 512, 512), [2.5, 0.78, 0.78], 1
        zz, yy, xx = np.ogrid[:300, :512, :512]
        body = ((yy - 256) / 200.0) ** 2 + ((xx - 256) / 230.0) ** 2 < 1
        image = np.where(body, 40, -1000).astype(np.int16) + rng.normal(0, 8, (1, 512, 512)).astype(np.int16)
        image = np.broadcast_to(image, shape).copy()
        image[100:220, 180:330, 120:300] += 30
        write_image(image, {"spacing": spacing, "origin": [-200.0, -200.0, -600.0],
                            "direction": [-1, 0, 0, 0, -1, 0, 0, 0, 1]}, inputs / "ct_001_0000.nii.gz")
        labels = {"background": 0, "liver": 1, "kidney": 2}
        plan_spacing, patch, heads, schemes = [2.5, 0.8, 0.8], [64, 128, 128], 3, ["CTNormalization"]
        names, regions = {"0": "CT"}, {}
    else:
        shape, spacing, channels = (160, 192, 160), [1.0, 1.0, 1.0], 4
        zz, yy, xx = np.ogrid[:160, :192, :160]
        brain = ((zz - 80) / 70.0) ** 2 + ((yy - 96) / 85.0) ** 2 + ((xx - 80) / 70.0) ** 2 < 1
        for c in range(channels):
            image = (brain * (100 + 20 * c) + brain * rng.normal(0, 10, shape)).astype(np.float32)
            write_image(image, {"spacing": spacing, "origin": [0.0, 0.0, 0.0],
                                "direction": [1, 0, 0, 0, 1, 0, 0, 0, 1]}, inputs / f"brats_001_{c:04d}.nii.gz")
        labels = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]}
        plan_spacing, patch, heads, schemes = [1.0, 1.0, 1.0], [128, 128, 128], 3, ["ZScoreNormalization"] * 4
        names, regions = {str(c): f"MR{c}" for c in range(channels)}, {"regions_class_order": [1, 2, 3]}
    network = {"name": "segformer3d_b0", "kwargs": {"in_channels": channels, "num_classes": heads}}
    plans = {
        "dataset_name": f"Dataset999_Bench{case}", "plans_name": "SegFormer3DPlans",
        "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "foreground_intensity_properties_per_channel": {"0": {
            "mean": 60.0, "std": 40.0, "median": 60.0, "min": -1000.0, "max": 1500.0,
            "percentile_00_5": -100.0, "percentile_99_5": 250.0}},
        "configurations": {CONFIGURATION: {
            "data_identifier": CONFIGURATION, "spacing": plan_spacing, "patch_size": patch, "batch_size": 2,
            "median_image_size_in_voxels": list(shape), "normalization_schemes": schemes,
            "use_mask_for_norm": [case == "mri"] * channels,
            "resampling": {"data": {"order": 3, "order_z": 0}, "seg": {"order": 1, "order_z": 0}},
            "mirror_axes": [0, 1, 2], "anisotropic": case == "ct", "network": network}},
    }
    model = work / f"model_{case}"
    fold_folder(model, 0).mkdir(parents=True, exist_ok=True)
    write_json(plans, model / "plans.json")
    write_json({"channel_names": names, "labels": labels, "numTraining": 1, "file_ending": ".nii.gz", **regions},
               model / "dataset.json")
    torch.manual_seed(0)
    weights = create_model(network["name"], **network["kwargs"]).state_dict()
    torch.save({"network_weights": weights, "epoch": 0}, fold_folder(model, 0) / FINAL)
    return inputs, model


if __name__ == "__main__":
    sys.exit(main())
