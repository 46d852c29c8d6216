from __future__ import annotations

import json

import numpy as np

from segformer3d_auto.dataset.image_io import read_segmentation, write_segmentation
from segformer3d_auto.dataset.labels import LabelManager
from segformer3d_auto.evaluation.postprocessing_choice import determine_postprocessing
from segformer3d_auto.parallel import CaseMap

LABELS = LabelManager({"background": 0, "liver": 1, "tumour": 2})
PROPS = {"spacing": [2.0, 1.0, 1.0], "origin": [0.0, 0.0, 0.0],
         "direction": [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0], "shape": [8, 16, 16]}


def _write_case(folder, name, seg):
    write_segmentation(seg, PROPS, folder / f"{name}.nii.gz")


def test_determine_per_class_when_foreground_would_hurt_a_class(tmp_path):
    for i in range(3):
        ref = np.zeros((8, 16, 16), dtype=np.uint8)
        ref[1:6, 1:8, 1:8] = 1
        ref[2:4, 11:14, 11:14] = 2  # tumour, separate from the liver: foreground LCC would delete it
        pred = ref.copy()
        pred[7, 14 - i:16, 0:2] = 1  # stray liver false positives
        _write_case(tmp_path / "gt", f"c{i}", ref)
        _write_case(tmp_path / "cv", f"c{i}", pred)
    with CaseMap(2) as pool:  # the caller's pool, shared by the trials, the writing and the evaluation
        pp = determine_postprocessing(tmp_path / "gt", tmp_path / "cv", LABELS, ".nii.gz", tmp_path / "out", pool)
    assert pp["keep_largest_foreground"] is False and pp["keep_largest_per_class"] == ["1"]
    assert [t["try"] for t in pp["trials"]] == ["foreground", "1", "2"]
    assert [t["accepted"] for t in pp["trials"]] == [False, True, False]
    assert pp["trials"][0]["dice_after"]["2"] == 0.0
    assert json.loads((tmp_path / "out" / "postprocessing.json").read_text())["keep_largest_per_class"] == ["1"]
    summary = json.loads((tmp_path / "out" / "postprocessed" / "summary.json").read_text())
    assert summary["mean"]["1"]["Dice"] == 1.0 and summary["mean"]["2"]["Dice"] == 1.0
    seg, _ = read_segmentation(tmp_path / "out" / "postprocessed" / "c2.nii.gz")
    assert seg[7].max() == 0


def test_determine_foreground_for_one_label_and_nothing_for_clean_predictions(tmp_path):
    one = LabelManager({"background": 0, "organ": 1})
    for i in range(2):
        ref = np.zeros((8, 16, 16), dtype=np.uint8)
        ref[2:7, 3:12, 3:12] = 1
        pred = ref.copy()
        pred[0, 0:2, 0:2] = 1
        _write_case(tmp_path / "gt", f"c{i}", ref)
        _write_case(tmp_path / "cv", f"c{i}", pred)
        _write_case(tmp_path / "clean", f"c{i}", ref)
    pp = determine_postprocessing(tmp_path / "gt", tmp_path / "cv", one, ".nii.gz", tmp_path / "a")
    assert (pp["keep_largest_foreground"], pp["keep_largest_per_class"]) == (True, [])
    assert len(pp["trials"]) == 1  # per class is the same as foreground with one label
    assert (tmp_path / "a" / "postprocessed" / "c1.nii.gz").is_file()
    clean = determine_postprocessing(tmp_path / "gt", tmp_path / "clean", one, ".nii.gz", tmp_path / "a")
    assert (clean["keep_largest_foreground"], clean["keep_largest_per_class"]) == (False, [])
    assert json.loads((tmp_path / "a" / "postprocessing.json").read_text())["keep_largest_foreground"] is False
    assert not (tmp_path / "a" / "postprocessed").exists()  # the earlier run's folder does not linger
