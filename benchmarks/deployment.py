"""Exported-model prediction on the CPU: torch vs ONNX Runtime vs OpenVINO, and the torch-free runtime's size.

For the 4-channel 160x192x160 MRI and the 512x512x300 CT of ``benchmarks/predict.py`` (SegFormer3D-B0, random
weights: time and memory do not depend on them) the model folder is exported with ``sf3d_export_model`` and
every case is predicted from the zip with ``sf3d_predict --backend torch|onnxruntime|openvino``, each as its own
process measured by ``benchmarks/measure.py`` (wall time, peak RSS of the process tree). The baseline is the torch
backend of the same run, at the same step size and TTA; agreement is the fraction of voxels whose label equals the
torch backend's. Then (``--venvs``) two clean venvs are built with pip (its cache reused): the prediction runtime
without torch (numpy, scipy, SimpleITK, tqdm, onnxruntime + this package with --no-deps) and the torch one (the
package with its dependencies and the CPU torch the Makefile installs), and their size on disk and the time from
an empty venv to a first prediction are printed.

    python benchmarks/deployment.py                                  # MRI with TTA, CT without, venvs
    python benchmarks/deployment.py --cases mri --settings default --no-venvs
    python benchmarks/deployment.py --ct-shape 150 512 512           # a shorter CT on a slow machine
    python benchmarks/deployment.py --work DIR --only-venvs          # venvs only, with DIR/mri.zip of a run
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
RUNTIME_PACKAGES = ["numpy", "scipy", "SimpleITK", "tqdm", "onnxruntime"]
TORCH = "torch==2.13.0"  # what `make install` puts into a fresh venv (CPU wheel)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", choices=("mri", "ct"), default=["mri", "ct"])
    parser.add_argument("--tta", nargs="*", choices=("mri", "ct"), default=["mri"],
                        help="cases predicted with mirror TTA (default: mri; the CT without, 8x fewer passes)")
    parser.add_argument("--ct-shape", nargs=3, type=int, default=[300, 512, 512], metavar=("Z", "Y", "X"))
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--no-venvs", dest="venvs", action="store_false", help="skip the venv size/time part")
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
        if args.venvs and "mri" in archives:
            _venvs(work, *archives["mri"])
    return 0


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
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
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
