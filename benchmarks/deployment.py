"""Exported-model prediction on the CPU: torch vs ONNX Runtime vs OpenVINO, and the torch-free runtime's size.

For the 4-channel 160x192x160 MRI and the 512x512x300 CT of ``benchmarks/predict.py`` (SegFormer3D-B0, random
weights: time and memory do not depend on them) the model folder is exported with ``sf3d_export_model`` and
every case is predicted from the zip with ``sf3d_predict --backend torch|onnxruntime|openvino``, each as its own
process measured by ``benchmarks/measure.py`` (wall time, peak RSS of the process tree). The baseline is the torch
backend of the same run, at the same step size and TTA; agreement is the fraction of voxels whose label equals the
torch backend's. Then (``--venvs``) two clean venvs without pip are built by this pip (its cache reused): the
prediction runtime without torch (numpy, scipy, SimpleITK, tqdm, onnxruntime, threadpoolctl + this package with
--no-deps) and the torch one (the package with its dependencies and the CPU torch the Makefile installs), and
their size on disk and the time from an empty venv to a first prediction are printed.

The network alone (``--network``, after the predictions): the fold's network on one random patch per engine, in
this process, at one thread and at the engine's default threads, as wall and CPU seconds per window. CPU seconds
at one thread are the engines' cost of the arithmetic itself; wall seconds at all threads show how each engine's
thread pool copes with the cores it gets (on a shared machine PyTorch's OpenMP threads wait for each other).

    python benchmarks/deployment.py                                  # MRI with TTA, CT without, venvs
    python benchmarks/deployment.py --cases mri --settings default --no-venvs
    python benchmarks/deployment.py --ct-shape 150 512 512           # a shorter CT on a slow machine
    python benchmarks/deployment.py --work DIR --only-venvs          # venvs only, with DIR/mri.zip of a run
    python benchmarks/deployment.py --cases ct --no-venvs --network  # CT per case, then the network alone
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import run_measured  # noqa: E402
from predict import _make_case  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ("torch", "onnxruntime", "openvino")
RUNTIME_PACKAGES = ["numpy", "scipy", "SimpleITK", "tqdm", "onnxruntime", "threadpoolctl"]
TORCH = "torch==2.13.0"  # what `make install` puts into a fresh venv (CPU wheel)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", choices=("mri", "ct"), default=["mri", "ct"])
    parser.add_argument("--tta", nargs="*", choices=("mri", "ct"), default=["mri"],
                        help="cases predicted with mirror TTA (default: mri; the CT without, 8x fewer passes)")
    parser.add_argument("--ct-shape", nargs=3, type=int, default=[300, 512, 512], metavar=("Z", "Y", "X"))
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--no-venvs", dest="venvs", action="store_false", help="skip the venv size/time part")
    parser.add_argument("--network", action="store_true",
                        help="also time the network alone per engine, at one thread and at the default threads")
    parser.add_argument("--work", type=Path, default=None, help="folder for the generated data (default: temp)")
    parser.add_argument("--only-venvs", action="store_true",
                        help="only the venv part, with the MRI zip an earlier run left in --work")
    args = parser.parse_args(argv)
    if args.only_venvs:
        if args.work is None or not (args.work / "mri.zip").is_file():
            parser.error("--only-venvs needs --work with the mri.zip of an earlier run")
        _venvs(args.work, args.work / "in_mri", args.work / "mri.zip")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        print(f"{'case':<22} {'TTA':<4} {'backend':<12} {'wall s':>8} {'peak RSS GB':>12} {'x torch':>8} "
              f"{'same label':>11}", flush=True)
        archives = {}
        for case in args.cases:
            inputs, model = _make_case(work, case) if case == "mri" else _make_ct(work, tuple(args.ct_shape))
            archive = work / f"{case}.zip"
            export = subprocess.run([sys.executable, "-m", "segformer3d_auto.cli.export_model", "-m", str(model),
                                     "-o", str(archive)], capture_output=True, text=True)
            if export.returncode != 0:
                print(export.stderr, file=sys.stderr)
                return 1
            archives[case] = (inputs, archive)
            tta = case in args.tta
            name = "MRI 4x160x192x160" if case == "mri" else "CT 1x" + "x".join(str(s) for s in args.ct_shape[::-1])
            baseline = reference = None
            for backend in args.backends:
                out = work / f"out_{case}_{backend}"
                seconds, peak, result = run_measured(
                    [sys.executable, "-m", "segformer3d_auto.cli.predict", "-i", str(inputs), "-o", str(out),
                     "-m", str(archive), "--backend", backend, "--read-ahead", "0", "--disable-progress-bar",
                     *([] if tta else ["--disable-tta"])])
                if result.returncode != 0:
                    print(result.stderr, file=sys.stderr)
                    return 1
                labels = _labels(out)
                if backend == "torch":
                    baseline, reference = seconds, labels
                ratio = f"{baseline / seconds:8.2f}" if baseline else f"{'':>8}"
                same = f"{np.mean(labels == reference):11.5f}" if reference is not None else f"{'':>11}"
                print(f"{name:<22} {'on' if tta else 'off':<4} {backend:<12} {seconds:8.1f} {peak / 2**30:12.2f} "
                      f"{ratio} {same}", flush=True)
        if args.network:
            for case, (_, archive) in archives.items():
                _network_speed(case, archive, args.backends)
        if args.venvs and "mri" in archives:
            _venvs(work, *archives["mri"])
    return 0


def _network_speed(case: str, archive: Path, backends: list[str], repeats: int = 3) -> None:
    """Per-window wall and CPU seconds of fold 0's network per engine, at one thread and at the default threads."""
    import json
    import os
    import zipfile

    import torch

    from segformer3d_auto.checkpoint import load_network_weights
    from segformer3d_auto.inference.engines import load_onnx_network
    from segformer3d_auto.model import create_model

    with zipfile.ZipFile(archive) as zipped, tempfile.TemporaryDirectory() as tmp:
        plans = json.loads(zipped.read("plans.json"))
        onnx = zipped.read("fold_0/checkpoint_final.onnx")
        weights = load_network_weights(zipped.extract("fold_0/checkpoint_final.pth", tmp))
    plan = next(iter(plans["configurations"].values()))
    config, patch = plan["network"], [int(p) for p in plan["patch_size"]]
    network = create_model(config["name"], **config.get("kwargs", {}))
    network.load_state_dict(weights)
    network.eval()
    channels = int(config.get("kwargs", {}).get("in_channels", 1))
    x = np.random.default_rng(0).standard_normal((1, channels, *patch)).astype(np.float32)
    default_threads = torch.get_num_threads()
    print(f"\n{case} network alone, patch {channels}x{'x'.join(map(str, patch))}: seconds per window "
          f"(best of {repeats})")
    print(f"{'backend':<12} {'threads':>7} {'wall s':>8} {'CPU s':>8} {'x torch wall':>13}")
    for threads in sorted({1, int(os.environ.get("OMP_NUM_THREADS", default_threads))}):
        baseline = None
        for backend in backends:
            if backend == "torch":
                torch.set_num_threads(threads)

                def run(batch: np.ndarray) -> None:
                    with torch.inference_mode():
                        network(torch.from_numpy(batch))
            else:
                run = load_onnx_network(onnx, backend, threads)
            run(x)  # warm-up: engines compile on the first call
            best_wall = best_cpu = float("inf")
            for _ in range(repeats):
                wall, cpu = time.perf_counter(), time.process_time()
                run(x)
                best_wall = min(best_wall, time.perf_counter() - wall)
                best_cpu = min(best_cpu, time.process_time() - cpu)
            baseline = best_wall if backend == "torch" else baseline
            ratio = f"{baseline / best_wall:13.2f}" if baseline else f"{'':>13}"
            print(f"{backend:<12} {threads:>7} {best_wall:8.3f} {best_cpu:8.3f} {ratio}", flush=True)
    torch.set_num_threads(default_threads)


def _make_ct(work: Path, shape: tuple[int, int, int]) -> tuple[Path, Path]:
    """``benchmarks/predict.py``'s CT, cut to ``shape`` (z, y, x) when smaller."""
    inputs, model = _make_case(work, "ct")
    if shape != (300, 512, 512):
        import SimpleITK as sitk

        file = inputs / "ct_001_0000.nii.gz"
        image = sitk.ReadImage(str(file))
        sitk.WriteImage(image[: shape[2], : shape[1], : shape[0]], str(file))
    return inputs, model


def _labels(out: Path) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(next(out.glob("*.nii.gz")))))


def _venvs(work: Path, inputs: Path, archive: Path) -> None:
    """Build the torch-free and the torch venv from scratch; print size and time to a first prediction."""
    print("\nvenv                       install s  first prediction s   size MB  (MRI, no TTA, from the zip)")
    sizes = {}
    for kind in ("no torch", "torch"):
        venv = work / f"venv_{kind.replace(' ', '_')}"
        shutil.rmtree(venv, ignore_errors=True)
        start = time.perf_counter()
        # no pip inside either venv (it is not needed to run, and 24 MB with setuptools): this pip installs into it
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet"]
        if kind == "no torch":
            subprocess.run([*pip, *RUNTIME_PACKAGES], check=True, capture_output=True)
            subprocess.run([*pip, "--no-deps", str(REPO)], check=True, capture_output=True)
        else:
            subprocess.run([*pip, TORCH], check=True, capture_output=True)
            subprocess.run([*pip, str(REPO)], check=True, capture_output=True)
        installed = time.perf_counter() - start
        start = time.perf_counter()
        command = [str(venv / "bin" / "sf3d_predict"), "-i", str(inputs), "-o", str(work / f"first_{venv.name}"),
                   "-m", str(archive), "--disable-tta", "--disable-progress-bar"]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            print(result.stderr, file=sys.stderr)
        first = time.perf_counter() - start
        sizes[kind] = _megabytes(venv)
        print(f"{kind:<26} {installed:9.1f} {first:19.1f} {sizes[kind]:9.0f}", flush=True)
    print(f"size ratio no torch / torch: {sizes['no torch'] / sizes['torch']:.2f}")


def _megabytes(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) / 2**20


if __name__ == "__main__":
    sys.exit(main())
