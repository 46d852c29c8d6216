"""sf3d_predict end to end: a briefly trained model finds its case's foreground; resume after a kill; bad input."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def _run(*args: str, results: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, SF3D_RESULTS=str(results)) if results is not None else None
    return subprocess.run([sys.executable, "-m", "segformer3d_auto.cli.predict", *args, "--disable-progress-bar"],
                          capture_output=True, text=True, env=env, timeout=timeout)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float(np.sum(a & b)) / float(np.sum(a) + np.sum(b))


def test_trained_model_finds_the_foreground(trained: dict, tmp_path: Path) -> None:
    out = tmp_path / "preds"
    # no -d: the only trained dataset in $SF3D_RESULTS; no TTA: 40 steps without mirroring augmentation do not
    # make a network that is right on mirrored images (the predictor tests check the TTA itself)
    result = _run("-i", str(trained["inputs"]), "-o", str(out), "--save-probabilities", "--disable-tta",
                  results=trained["results"])
    assert result.returncode == 0, result.stderr
    pred = sitk.ReadImage(str(out / "ct_000.nii.gz"))
    ref = sitk.ReadImage(str(trained["label"]))
    assert (pred.GetSize(), pred.GetSpacing(), pred.GetOrigin(), pred.GetDirection()) == \
        (ref.GetSize(), ref.GetSpacing(), ref.GetOrigin(), ref.GetDirection())
    pred_a, ref_a = sitk.GetArrayFromImage(pred), sitk.GetArrayFromImage(ref)
    assert _dice(pred_a > 0, ref_a > 0) > 0.5
    with np.load(out / "ct_000.npz") as npz:
        probs = npz["probabilities"]
    assert probs.shape == (3, *ref_a.shape)
    np.testing.assert_array_equal(np.argmax(probs, axis=0), pred_a)
    assert (out / "plans.json").is_file() and (out / "dataset.json").is_file()


def test_kill_then_continue_completes_every_case(trained: dict, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(6):
        shutil.copy(trained["inputs"] / "ct_000_0000.nii.gz", inputs / f"case_{i}_0000.nii.gz")
    out = tmp_path / "out"
    args = [sys.executable, "-m", "segformer3d_auto.cli.predict", "-i", str(inputs), "-o", str(out),
            "-m", str(trained["model"]), "--step-size", "0.25", "--disable-progress-bar"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not list(out.glob("case_*.nii.gz")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done_before = {p.name: p.stat().st_mtime_ns for p in out.glob("case_*.nii.gz")}
    assert done_before, "no output appeared before the kill"
    for path in out.glob("case_*.nii.gz"):  # whatever is there is whole
        assert sitk.ReadImage(str(path)).GetSize() == sitk.ReadImage(str(trained["label"])).GetSize()
    result = subprocess.run(args + ["--continue"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in out.glob("case_*.nii.gz"))
    assert names == [f"case_{i}.nii.gz" for i in range(6)]
    for path in out.glob("case_*.nii.gz"):
        assert sitk.GetArrayFromImage(sitk.ReadImage(str(path))).shape[0] > 0
    assert {n: (out / n).stat().st_mtime_ns for n in done_before} == done_before  # skipped, not redone
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_shards_split_the_cases(trained: dict, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(3):
        shutil.copy(trained["inputs"] / "ct_000_0000.nii.gz", inputs / f"c{i}_0000.nii.gz")
    outs = []
    for part in (0, 1):
        out = tmp_path / f"out{part}"
        result = _run("-i", str(inputs), "-o", str(out), "-m", str(trained["model"]), "--disable-tta",
                      "--num-parts", "2", "--part-id", str(part), "--read-ahead", "0")
        assert result.returncode == 0, result.stderr
        outs.append(sorted(p.name for p in out.glob("c*.nii.gz")))
    assert outs == [["c0.nii.gz", "c2.nii.gz"], ["c1.nii.gz"]]


def _assert_one_line_error(result: subprocess.CompletedProcess, path: Path, out: Path) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() or not list(out.glob("*.nii.gz"))


def test_bad_input_is_one_line_and_writes_nothing(trained: dict, tmp_path: Path, cli_main) -> None:
    from segformer3d_auto.cli.predict import main

    def run_main(*args: str, results: Path | None = None) -> subprocess.CompletedProcess:
        env = {"SF3D_RESULTS": str(results)} if results is not None else None
        return cli_main(main, *args, "--disable-progress-bar", env=env)

    model = str(trained["model"])
    out = tmp_path / "out"
    # wrong channel count: a second channel for a one-channel model (a real subprocess: the shell's view)
    two = tmp_path / "two"
    two.mkdir()
    shutil.copy(trained["inputs"] / "ct_000_0000.nii.gz", two / "a_0000.nii.gz")
    shutil.copy(trained["inputs"] / "ct_000_0000.nii.gz", two / "a_0001.nii.gz")
    _assert_one_line_error(_run("-i", str(two), "-o", str(out), "-m", model), two / "a_0001.nii.gz", out)
    # the other cases call main() in this process: the same message and exit status without a torch import each
    # unreadable file
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "b_0000.nii.gz").write_bytes(b"this is no image")
    _assert_one_line_error(run_main("-i", str(bad), "-o", str(out), "-m", model), bad / "b_0000.nii.gz", out)
    # empty input folder
    empty = tmp_path / "empty"
    empty.mkdir()
    _assert_one_line_error(run_main("-i", str(empty), "-o", str(out), "-m", model), empty, out)
    # missing model folder, missing fold
    inputs = trained["inputs"]
    missing = tmp_path / "no_model"
    _assert_one_line_error(run_main("-i", str(inputs), "-o", str(out), "-m", str(missing)), missing, out)
    _assert_one_line_error(run_main("-i", str(inputs), "-o", str(out), "-m", model, "-f", "0", "4"),
                           trained["model"] / "fold_4", out)
    # output folder not writable: its parent is a file
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _assert_one_line_error(run_main("-i", str(inputs), "-o", str(blocker / "out"), "-m", model), blocker / "out",
                           out)
    # no -d and no trained dataset
    empty_results = tmp_path / "results"
    empty_results.mkdir()
    _assert_one_line_error(run_main("-i", str(inputs), "-o", str(out), results=empty_results), empty_results, out)
    assert not out.exists()
