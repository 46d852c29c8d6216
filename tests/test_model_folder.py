"""The model-folder layout: names written out here by hand (what nnU-Net users and our docs expect)."""

from __future__ import annotations

import pytest

from segformer3d_auto import model_folder as mf
from segformer3d_auto.errors import InputError


def test_layout_names(sf3d_roots):
    folder = mf.model_folder_for("Dataset501_X")
    assert folder == sf3d_roots.results / "Dataset501_X" / "SegFormer3D__3d_fullres"
    assert mf.model_folder_for("Dataset501_X", "3d_lowres", root="r").as_posix() == \
        "r/Dataset501_X/SegFormer3D__3d_lowres"
    assert mf.fold_folder(folder, 2) == folder / "fold_2" and mf.fold_folder(folder, "all") == folder / "fold_all"
    assert mf.postprocessing_file(folder) == folder / "crossval" / "postprocessing.json"
    assert mf.CHECKPOINTS == {"final": "checkpoint_final.pth", "best": "checkpoint_best.pth",
                              "latest": "checkpoint_latest.pth"}


def test_find_model_folder_and_folds(sf3d_roots):
    with pytest.raises(InputError, match="no trained datasets"):
        mf.find_model_folder()
    for name in ("Dataset501_A", "Dataset502_B"):
        folder = sf3d_roots.results / name / "SegFormer3D__3d_fullres"
        (folder / "fold_3").mkdir(parents=True)
        (folder / "fold_0").mkdir()
        (folder / "plans.json").write_text("{}")
    with pytest.raises(InputError, match="several trained datasets .*Dataset501_A, Dataset502_B"):
        mf.find_model_folder()
    folder = mf.find_model_folder(502)
    assert folder == sf3d_roots.results / "Dataset502_B" / "SegFormer3D__3d_fullres"
    assert mf.available_folds(folder) == [0, 3]
    with pytest.raises(InputError, match=r"fold_1: fold 1 not found \(folds found: 0, 3\)"):
        mf.checkpoint_file(folder, 1)
    with pytest.raises(InputError, match="checkpoint_best.pth: checkpoint not found"):
        mf.checkpoint_file(folder, 3, "best")


def test_newest_checkpoint_prefers_final_then_latest_then_best(tmp_path):
    assert mf.newest_checkpoint(tmp_path) is None
    for name in ("checkpoint_best.pth", "checkpoint_latest.pth", "checkpoint_final.pth"):
        (tmp_path / name).write_bytes(b"")
        assert mf.newest_checkpoint(tmp_path).name == name


def test_plan_files_are_copied_once(tmp_path):
    source, target = tmp_path / "pre", tmp_path / "model"
    source.mkdir()
    for name in ("plans.json", "dataset.json", "dataset_fingerprint.json", "splits_final.json"):
        (source / name).write_text(name)
    mf.copy_plan_files(source, target)
    assert sorted(p.name for p in target.iterdir()) == ["dataset.json", "dataset_fingerprint.json", "plans.json"]
    (source / "plans.json").write_text("changed")
    mf.copy_plan_files(source, target)
    assert (target / "plans.json").read_text() == "plans.json"  # the first run's plans stay with the model
