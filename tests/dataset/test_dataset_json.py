from __future__ import annotations

import json

import pytest

from segformer3d_auto.dataset.dataset_json import (
    CaseFiles,
    list_image_cases,
    list_training_cases,
    load_dataset_json,
)
from segformer3d_auto.errors import InputError

VALID = {"channel_names": {"0": "T2", "1": "ADC"}, "labels": {"background": 0, "PZ": 1, "TZ": 2},
         "numTraining": 2, "file_ending": ".nii.gz"}


def _json(tmp_path, data):
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_valid_dataset_json_loads(tmp_path):
    assert load_dataset_json(_json(tmp_path, VALID)) == VALID


def test_legacy_modality_key_becomes_channel_names(tmp_path):
    data = {k: v for k, v in VALID.items() if k != "channel_names"} | {"modality": {"0": "CT"}}
    loaded = load_dataset_json(_json(tmp_path, data))
    assert loaded["channel_names"] == {"0": "CT"}


def test_regions_with_class_order_load(tmp_path):
    data = VALID | {"labels": {"background": 0, "whole": [1, 2], "core": [2]}, "regions_class_order": [1, 2]}
    assert load_dataset_json(_json(tmp_path, data))["regions_class_order"] == [1, 2]


@pytest.mark.parametrize("change,message", [
    ({"channel_names": None}, "missing required key.*channel_names"),
    ({"labels": None}, "missing required key.*labels"),
    ({"numTraining": None}, "missing required key.*numTraining"),
    ({"file_ending": None}, "missing required key.*file_ending"),
    ({"labels": {"a": 1}}, "no background label"),
    ({"labels": {"background": 0, "a": 1, "b": 1}}, "unique"),
    ({"labels": {"background": 0, "a": 1, "b": "x"}}, "must be an int"),
    ({"labels": {"background": 0, "r": [1, 2], "s": [2]}}, "regions_class_order' is missing"),
    ({"labels": {"background": 0, "r": [1, 2], "s": [2]}, "regions_class_order": [1, 2, 3]},
     "3 entries but there are 2 regions"),
    ({"labels": {"background": 0, "a": 1, "ignore": 1}}, "ignore label 1 must be higher"),
    ({"file_ending": ".png"}, "unsupported file_ending '.png'"),
    ({"numTraining": "2"}, "numTraining' must be a non-negative int"),
    ({"channel_names": {"1": "T2"}}, "without gaps"),
    ({"dataset": {"a": {"images": ["x.nii.gz"]}}}, "must list 2 image path"),
])
def test_invalid_dataset_json(tmp_path, change, message):
    data = {k: v for k, v in (VALID | change).items() if v is not None}
    path = _json(tmp_path, data)
    with pytest.raises(InputError, match=f"^{path}: .*{message}"):
        load_dataset_json(path)


def test_missing_and_broken_json(tmp_path):
    with pytest.raises(InputError, match="dataset.json: file not found"):
        load_dataset_json(tmp_path / "dataset.json")
    with pytest.raises(InputError, match="dataset.json: not valid JSON"):
        load_dataset_json(_json(tmp_path, "{oops"))
    with pytest.raises(InputError, match="must hold a JSON object"):
        load_dataset_json(_json(tmp_path, "[1, 2]"))


def _touch(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")


def test_list_training_cases_from_folders(tmp_path):
    _touch(tmp_path / "imagesTr", "b_0000.nii.gz", "b_0001.nii.gz", "a_1_0001.nii.gz", "a_1_0000.nii.gz",
           "c_0000.nii.gz", "._b_0000.nii.gz", "readme.txt")
    _touch(tmp_path / "labelsTr", "a_1.nii.gz", "b.nii.gz")
    cases = list_training_cases(tmp_path, VALID)
    assert [c.identifier for c in cases] == ["a_1", "b", "c"]
    images = tmp_path / "imagesTr"
    assert cases[0] == CaseFiles("a_1", [images / "a_1_0000.nii.gz", images / "a_1_0001.nii.gz"],
                                 tmp_path / "labelsTr" / "a_1.nii.gz")
    # c lacks channel 1 and a label: listed with the expected paths, for the integrity check to report
    assert cases[2].images[1] == tmp_path / "imagesTr" / "c_0001.nii.gz" and cases[2].label is None


def test_list_training_cases_from_case_map(tmp_path, monkeypatch):
    monkeypatch.setenv("SOMEWHERE", str(tmp_path / "far"))
    data = VALID | {"dataset": {
        "z": {"images": ["imgs/z_t2.nii.gz", "$SOMEWHERE/z_adc.nii.gz"], "label": "segs/z.nii.gz"},
        "y": {"images": ["imgs/y_t2.nii.gz", "imgs/y_adc.nii.gz"]},
    }}
    cases = list_training_cases(tmp_path, load_dataset_json(_json(tmp_path, data)))
    assert [c.identifier for c in cases] == ["y", "z"]
    assert cases[1].images == [tmp_path / "imgs" / "z_t2.nii.gz", tmp_path / "far" / "z_adc.nii.gz"]
    assert cases[1].label == tmp_path / "segs" / "z.nii.gz" and cases[0].label is None


def test_list_training_cases_without_images_folder(tmp_path):
    with pytest.raises(InputError, match="imagesTr: folder not found"):
        list_training_cases(tmp_path, VALID)


def test_list_image_cases_groups_channels(tmp_path):
    _touch(tmp_path, "x_0001.nii.gz", "x_0000.nii.gz", "w_0000.nii.gz", "w_0001.nii.gz", "notes.json",
           ".x_0000.nii.gz.tmp")
    cases = list_image_cases(tmp_path, ".nii.gz", 2)
    assert [c.identifier for c in cases] == ["w", "x"]
    assert cases[1].images == [tmp_path / "x_0000.nii.gz", tmp_path / "x_0001.nii.gz"]
    assert cases[1].label is None


@pytest.mark.parametrize("names,message", [
    (["x_0000.nii.gz"], r"x_0001.nii.gz: missing channel 0001 of case 'x'"),
    (["x_0000.nii.gz", "x_0001.nii.gz", "x_0002.nii.gz"], r"x_0002.nii.gz: case 'x' has channel 0002 but"),
    (["x.nii.gz"], r"x.nii.gz: name does not follow"),
    (["x_0000.nrrd"], r"no .nii.gz images"),
])
def test_list_image_cases_errors(tmp_path, names, message):
    _touch(tmp_path / "in", *names)
    with pytest.raises(InputError, match=message):
        list_image_cases(tmp_path / "in", ".nii.gz", 2)


def test_list_image_cases_missing_folder(tmp_path):
    with pytest.raises(InputError, match="nope: folder not found"):
        list_image_cases(tmp_path / "nope", ".nii.gz", 1)
