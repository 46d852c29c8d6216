from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from segformer3d_auto.dataset.image_io import write_segmentation
from segformer3d_auto.dataset.labels import LabelManager, class_key
from segformer3d_auto.errors import InputError
from segformer3d_auto.evaluation.evaluate_folder import evaluate_folder
from segformer3d_auto.parallel import CaseMap

IDENTITY = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
SHAPE = (6, 10, 12)


def _write(path, seg, spacing=(2.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=IDENTITY):
    props = {"spacing": list(spacing), "origin": list(origin), "direction": list(direction),
             "shape": list(seg.shape)}
    write_segmentation(seg.astype(np.uint8), props, path)


def _labels_dataset(tmp_path, n_cases=3):
    """Two labels; case 0 has a known overlap, label 2 is absent from case 1 in both folders."""
    ref_dir, pred_dir = tmp_path / "ref", tmp_path / "pred"
    for i in range(n_cases):
        ref = np.zeros(SHAPE, dtype=np.uint8)
        ref[1:5, 2:6, 2:6] = 1  # 64 voxels
        pred = np.zeros(SHAPE, dtype=np.uint8)
        pred[1:5, 2:6, 2 + i:6 + i] = 1  # shifted by i voxels along x: Dice (4 - i) / 4
        if i != 1:
            ref[1:3, 7:9, 8:10] = 2
            pred[1:3, 7:9, 8:10] = 2
        _write(ref_dir / f"case_{i:03d}.nii.gz", ref)
        _write(pred_dir / f"case_{i:03d}.nii.gz", pred)
    dataset_json = {"labels": {"background": 0, "liver": 1, "kidney": 2}, "file_ending": ".nii.gz",
                    "channel_names": {"0": "CT"}, "numTraining": n_cases}
    return ref_dir, pred_dir, dataset_json


def test_labels_dataset_summary_and_csv(tmp_path):
    ref_dir, pred_dir, dj = _labels_dataset(tmp_path)
    out = tmp_path / "eval" / "summary.json"
    summary = evaluate_folder(ref_dir, pred_dir, dj, output_file=out)
    cases = summary["metric_per_case"]
    assert [c["reference_file"] for c in cases] == [str(ref_dir / f"case_{i:03d}.nii.gz") for i in range(3)]
    assert cases[0]["prediction_file"] == str(pred_dir / "case_000.nii.gz")
    dice_1 = [c["metrics"]["1"]["Dice"] for c in cases]
    assert dice_1 == pytest.approx([1.0, 0.75, 0.5])
    assert cases[2]["metrics"]["1"]["IoU"] == pytest.approx(32 / 96)
    assert cases[1]["metrics"]["1"]["HD95"] == pytest.approx(1.0)  # one voxel of 1 mm along x
    assert cases[1]["metrics"]["1"]["volume_ref_ml"] == pytest.approx(64 * 2e-3)
    assert math.isnan(cases[1]["metrics"]["2"]["Dice"])  # empty in both: NaN, left out of the mean
    assert summary["mean"]["1"]["Dice"] == pytest.approx(0.75)
    assert summary["mean"]["2"]["Dice"] == pytest.approx(1.0)
    assert summary["mean"]["2"]["TP"] == pytest.approx(16 / 3)  # counts are never NaN: all cases count
    assert summary["foreground_mean"]["Dice"] == pytest.approx(0.875)
    on_disk = json.loads(out.read_text())
    assert on_disk["mean"]["1"]["Dice"] == pytest.approx(0.75)
    assert set(on_disk) == {"metric_per_case", "mean", "foreground_mean"}
    table = pd.read_csv(out.with_suffix(".csv"))
    assert len(table) == 6
    assert list(table["case"][:2]) == ["case_000", "case_000"]
    assert set(table["name"]) == {"liver", "kidney"}
    assert table.query("case == 'case_002' and `class` == 1")["Dice"].item() == pytest.approx(0.5)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_region_dataset_and_keys(tmp_path):
    ref = np.zeros(SHAPE, dtype=np.uint8)
    ref[1:5, 1:9, 1:9] = 1
    ref[2:4, 3:7, 3:7] = 2  # core inside the whole
    pred = ref.copy()
    pred[2:4, 3:7, 3:5] = 1  # half of the core predicted as edema: whole unchanged, core halved
    _write(tmp_path / "r" / "a.nii.gz", ref)
    _write(tmp_path / "p" / "a.nii.gz", pred)
    dj = {"labels": {"background": 0, "whole": [1, 2], "core": [2]}, "regions_class_order": [1, 2],
          "file_ending": ".nii.gz"}
    summary = evaluate_folder(tmp_path / "r", tmp_path / "p", dj)
    metrics = summary["metric_per_case"][0]["metrics"]
    assert list(metrics) == ["(1, 2)", "2"]
    assert metrics["(1, 2)"]["Dice"] == 1.0
    assert metrics["2"]["Dice"] == pytest.approx(2 * 16 / (32 + 16))
    assert class_key((1, 2, 3)) == "(1, 2, 3)" and class_key((2,)) == "2" and class_key(4) == "4"


def test_ignore_label_voxels_are_not_counted(tmp_path):
    ref = np.zeros(SHAPE, dtype=np.uint8)
    ref[1:3, 1:5, 1:5] = 1
    ref[3:5, 1:5, 1:5] = 2  # ignore: unannotated
    pred = np.zeros(SHAPE, dtype=np.uint8)
    pred[1:5, 1:5, 1:5] = 1  # spills into the unannotated voxels only
    _write(tmp_path / "r" / "a.nii.gz", ref)
    _write(tmp_path / "p" / "a.nii.gz", pred)
    lm = LabelManager({"background": 0, "lesion": 1, "ignore": 2})
    m = evaluate_folder(tmp_path / "r", tmp_path / "p", lm, ".nii.gz")["metric_per_case"][0]["metrics"]
    assert list(m) == ["1"]
    assert m["1"]["FP"] == 0 and m["1"]["Dice"] == 1.0 and m["1"]["HD95"] == 0.0


def test_missing_prediction(tmp_path):
    ref_dir, pred_dir, dj = _labels_dataset(tmp_path)
    (pred_dir / "case_001.nii.gz").unlink()
    with pytest.raises(InputError, match="case_001.nii.gz: prediction file not found"):
        evaluate_folder(ref_dir, pred_dir, dj, output_file=tmp_path / "summary.json")
    assert not (tmp_path / "summary.json").exists()
    summary = evaluate_folder(ref_dir, pred_dir, dj, allow_missing=True)
    assert [c["prediction_file"][-15:] for c in summary["metric_per_case"]] == [
        "case_000.nii.gz", "case_002.nii.gz"]
    with pytest.raises(InputError, match="reference folder not found"):
        evaluate_folder(tmp_path / "nowhere", pred_dir, dj)
    with pytest.raises(InputError, match="no reference files ending in .nrrd"):
        evaluate_folder(ref_dir, pred_dir, dj, file_ending=".nrrd")


@pytest.mark.parametrize(
    "geometry, problem",
    [
        ({"spacing": (2.0, 1.0, 1.5)}, "spacing"),
        ({"origin": (0.0, 0.0, 4.0)}, "origin"),
        ({"direction": [-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0]}, "direction"),
        ({"shape": (6, 10, 13)}, "shape"),
    ],
)
def test_prediction_with_other_geometry_is_named(tmp_path, geometry, problem):
    ref_dir, pred_dir, dj = _labels_dataset(tmp_path)
    bad = np.zeros(geometry.pop("shape", SHAPE), dtype=np.uint8)
    _write(pred_dir / "case_002.nii.gz", bad, **geometry)
    with pytest.raises(InputError, match=f"case_002.nii.gz: geometry differs .*{problem}"):
        evaluate_folder(ref_dir, pred_dir, dj)


def test_parallel_equals_serial_and_reads_dataset_json_file(tmp_path):
    ref_dir, pred_dir, dj = _labels_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps(dj))
    serial = evaluate_folder(ref_dir, pred_dir, dj)
    with CaseMap(2) as pool:
        parallel = evaluate_folder(ref_dir, pred_dir, tmp_path / "dataset.json", pool=pool)
    assert json.dumps(serial, sort_keys=True) == json.dumps(parallel, sort_keys=True)
