"""sf3d_export_model / sf3d_install_model / sf3d_predict -m model.zip end to end, with every backend, and a
prediction runtime without torch (a venv built here with numpy, scipy, SimpleITK, tqdm, onnxruntime and
threadpoolctl only)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from segformer3d_auto.inference.model_export import export_model

REPO = Path(__file__).resolve().parents[2]
RUNTIME_PACKAGES = ["numpy", "scipy", "SimpleITK", "tqdm", "onnxruntime", "threadpoolctl"]


def _cli(module: str, *args: str, results: Path | None = None, python: str = sys.executable,
         timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, SF3D_RESULTS=str(results)) if results is not None else None
    return subprocess.run([python, "-m", f"segformer3d_auto.cli.{module}", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=REPO if python == sys.executable else "/")


def _labels(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


@pytest.fixture(scope="module")
def exported(trained: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The trained model exported to model.zip, and the torch prediction of its case from the model folder."""
    base = tmp_path_factory.mktemp("export")
    archive = base / "model.zip"
    exported = _cli("export_model", "-o", str(archive), results=trained["results"])
    assert exported.returncode == 0, exported.stderr
    reference = base / "reference"
    result = _cli("predict", "-i", str(trained["inputs"]), "-o", str(reference), "-m", str(trained["model"]),
                  "--backend", "torch", "--disable-tta", "--disable-progress-bar")
    assert result.returncode == 0, result.stderr
    return {**trained, "zip": archive, "reference": _labels(reference / "ct_000.nii.gz"), "stdout": exported.stdout}


def test_zip_holds_what_prediction_needs_with_checksums(exported: dict) -> None:
    with zipfile.ZipFile(exported["zip"]) as z:
        names = sorted(z.namelist())
        manifest = json.loads(z.read("manifest.json"))
        assert names == sorted(["manifest.json", "plans.json", "dataset.json", "fold_0/checkpoint_final.pth",
                                "fold_0/checkpoint_final.onnx"])
        for name in names:
            if name == "manifest.json":
                continue
            assert manifest["files"][name]["sha256"] == hashlib.sha256(z.read(name)).hexdigest()
        assert z.read("plans.json") == (exported["model"] / "plans.json").read_bytes()
        checkpoint = torch.load(z.open("fold_0/checkpoint_final.pth"), weights_only=True)
    assert list(checkpoint) == ["network_weights"]  # no optimizer state
    source = torch.load(exported["model"] / "fold_0" / "checkpoint_final.pth", weights_only=True)["network_weights"]
    assert all(torch.equal(checkpoint["network_weights"][k], v) for k, v in source.items())
    assert manifest["dataset"] == exported["model"].parent.name and manifest["folds"] == [0]
    assert manifest["versions"]["torch"] == torch.__version__
    assert 0 <= manifest["onnx_check"]["max_abs_difference"]["0"] <= 1e-3


def test_export_prints_the_onnx_check_and_no_onnx_leaves_it_out(exported: dict, tmp_path: Path) -> None:
    match = re.search(r"fold 0: ONNX network at patch \[16, 32, 32\], max \|torch - \w+\| = ([0-9.e+-]+)",
                      exported["stdout"])
    assert match and float(match.group(1)) <= 1e-3, exported["stdout"]
    manifest = export_model(exported["model"], tmp_path / "n.zip", onnx=False)
    with zipfile.ZipFile(tmp_path / "n.zip") as z:
        assert sorted(z.namelist()) == ["dataset.json", "fold_0/checkpoint_final.pth", "manifest.json", "plans.json"]
    assert manifest["onnx_check"] is None


@pytest.mark.parametrize("backend", ["torch", "onnxruntime", "openvino"])
def test_predict_from_zip_matches_the_model_folder(exported: dict, tmp_path: Path, backend: str) -> None:
    out = tmp_path / "out"
    result = _cli("predict", "-i", str(exported["inputs"]), "-o", str(out), "-m", str(exported["zip"]),
                  "--backend", backend, "--disable-tta", "--disable-progress-bar")
    assert result.returncode == 0, result.stderr
    assert f"backend {backend}" in result.stdout
    labels = _labels(out / "ct_000.nii.gz")
    reference = exported["reference"]
    assert len(np.unique(reference)) >= 2  # a real segmentation, not one label everywhere
    assert np.mean(labels == reference) >= 0.999


def test_install_refuses_a_different_model_unless_forced(exported: dict, tmp_path: Path) -> None:
    results = tmp_path / "results"
    first = _cli("install_model", str(exported["zip"]), results=results)
    assert first.returncode == 0, first.stderr
    folder = results / exported["model"].parent.name / exported["model"].name
    assert (folder / "fold_0" / "checkpoint_final.onnx").is_file()
    again = _cli("install_model", str(exported["zip"]), results=results)
    assert again.returncode == 0 and "unchanged" in again.stdout
    (folder / "plans.json").write_text((folder / "plans.json").read_text() + " ")  # now a different model
    refused = _cli("install_model", str(exported["zip"]), results=results)
    assert refused.returncode == 2 and "--force" in refused.stderr and len(refused.stderr.splitlines()) == 1
    assert (folder / "plans.json").read_bytes() != (exported["model"] / "plans.json").read_bytes()
    forced = _cli("install_model", str(exported["zip"]), "--force", results=results)
    assert forced.returncode == 0, forced.stderr
    assert (folder / "plans.json").read_bytes() == (exported["model"] / "plans.json").read_bytes()
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]  # no staging folders left
    out = tmp_path / "out"
    predicted = _cli("predict", "-i", str(exported["inputs"]), "-o", str(out), "--disable-tta",
                     "--disable-progress-bar", results=results)
    assert predicted.returncode == 0, predicted.stderr
    assert np.mean(_labels(out / "ct_000.nii.gz") == exported["reference"]) >= 0.999


def _rewrite(source: Path, target: Path, change: dict[str, bytes | None], manifest_files: dict | None = None) -> None:
    """Copy a zip, replacing (bytes) or dropping (None) members, optionally editing the manifest's file list."""
    with zipfile.ZipFile(source) as z_in, zipfile.ZipFile(target, "w") as z_out:
        for name in z_in.namelist():
            data = z_in.read(name)
            if name == "manifest.json" and manifest_files is not None:
                manifest = json.loads(data)
                manifest["files"].update(manifest_files)
                data = json.dumps(manifest).encode()
            if name in change:
                if change[name] is None:
                    continue
                data = change[name]
            z_out.writestr(name, data)
        for name, data in change.items():
            if name not in z_in.namelist() and data is not None:
                z_out.writestr(name, data)


def test_damaged_or_altered_zips_are_refused_and_install_nothing(exported: dict, tmp_path: Path) -> None:
    good = exported["zip"]
    plans = json.loads(zipfile.ZipFile(good).read("plans.json"))
    plans["configurations"]["3d_fullres"]["patch_size"] = [32, 32, 32]
    evil = b'{"a": 1}'
    evil_entry = {"sha256": hashlib.sha256(evil).hexdigest(), "size": len(evil)}
    cases = {
        "tampered": ({"plans.json": json.dumps(plans).encode()}, None, "checksum mismatch"),
        "extra": ({"fold_0/notes.txt": b"hello"}, None, "unexpected member"),
        "climbing": ({"../../evil.json": evil}, {"../../evil.json": evil_entry}, "unexpected member"),
        "missing": ({"fold_0/checkpoint_final.pth": None}, None, "missing"),
    }
    results = tmp_path / "results"
    for name, (change, files, message) in cases.items():
        archive = tmp_path / f"{name}.zip"
        _rewrite(good, archive, change, files)
        result = _cli("install_model", str(archive), results=results)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and str(archive) in lines[0], (name, result.stderr)
        assert message in lines[0], (name, lines[0])
        predicted = _cli("predict", "-i", str(exported["inputs"]), "-o", str(tmp_path / "out"), "-m", str(archive))
        assert predicted.returncode == 2 and message in predicted.stderr, (name, predicted.stderr)
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    result = _cli("install_model", str(truncated), results=results)
    assert result.returncode == 2 and "Traceback" not in result.stderr and str(truncated) in result.stderr
    corrupt = tmp_path / "corrupt.zip"  # a flipped byte inside a compressed member: CRC or checksum catches it
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as z:
        info = z.getinfo("fold_0/checkpoint_final.onnx")
    data[info.header_offset + 30 + len(info.filename) + 100] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    result = _cli("install_model", str(corrupt), results=results)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not results.exists() or not any(results.rglob("*"))  # nothing installed, nothing half-written
    assert not (tmp_path.parent / "evil.json").exists() and not (tmp_path / "evil.json").exists()


@pytest.fixture(scope="module")
def runtime_venv() -> Path:
    """A venv with the prediction runtime and no torch: numpy, scipy, SimpleITK, tqdm, onnxruntime, threadpoolctl,
    and this package installed with --no-deps (editable). Built once under the repository (``.venv-runtime``) and
    rebuilt when setup.cfg or that list changes; pip's cache makes a rebuild take seconds of unpacking."""
    venv = REPO / ".venv-runtime"
    stamp = venv / ".installed"
    key = hashlib.sha256((REPO / "setup.cfg").read_bytes() + " ".join(RUNTIME_PACKAGES).encode()).hexdigest()
    if not (stamp.is_file() and stamp.read_text() == key):
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet"]
        subprocess.run([*pip, *RUNTIME_PACKAGES], check=True, capture_output=True)
        subprocess.run([*pip, "--no-deps", "-e", str(REPO)], check=True, capture_output=True)
        stamp.write_text(key)
    return venv


def test_prediction_runtime_without_torch(runtime_venv: Path, exported: dict, tmp_path: Path) -> None:
    python = str(runtime_venv / "bin" / "python")
    no_torch = subprocess.run([python, "-c", "import torch"], capture_output=True, text=True)
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr
    out = tmp_path / "out"
    result = _cli("predict", "-i", str(exported["inputs"]), "-o", str(out), "-m", str(exported["zip"]),
                  "--disable-tta", "--disable-progress-bar", python=python)
    assert result.returncode == 0, result.stderr
    assert "backend onnxruntime" in result.stdout
    assert np.mean(_labels(out / "ct_000.nii.gz") == exported["reference"]) >= 0.999
    page = (out / "report.html").read_text(encoding="utf-8")  # its pictures need numpy only, not matplotlib
    assert "<img alt='ct_000 slices' src='data:image/png;base64," in page
