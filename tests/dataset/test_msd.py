from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from segformer3d_auto.dataset.dataset_json import load_dataset_json
from segformer3d_auto.dataset.image_io import read_images
from segformer3d_auto.dataset.integrity import check_dataset
from segformer3d_auto.dataset.msd import convert_msd
from segformer3d_auto.dataset.synthetic import make_msd_task
from segformer3d_auto.errors import InputError


def test_converts_4d_two_channel_task(sf3d_roots, msd_task):
    (msd_task / "imagesTr" / "._prostate_00.nii.gz").write_bytes(b"\x00\x05\x16\x07 resource fork")
    folder = convert_msd(msd_task)
    assert folder == sf3d_roots.raw / "Dataset005_Prostate"
    dj = load_dataset_json(folder / "dataset.json")
    assert dj["channel_names"] == {"0": "T2", "1": "ADC"}
    assert dj["labels"] == {"background": 0, "PZ": 1, "TZ": 2}
    assert dj["file_ending"] == ".nii.gz" and dj["numTraining"] == 4
    assert "training" not in dj and "test" not in dj and "modality" not in dj
    assert dj["description"].startswith("Synthetic prostate")
    assert check_dataset(folder, dj, verify=True) == []
    source = sitk.ReadImage(str(msd_task / "imagesTr" / "prostate_01.nii.gz"))
    channels, props = read_images([folder / "imagesTr" / f"prostate_01_{c:04d}.nii.gz" for c in range(2)])
    np.testing.assert_array_equal(channels, sitk.GetArrayFromImage(source))
    np.testing.assert_allclose(props["spacing"], source.GetSpacing()[2::-1])
    np.testing.assert_allclose(props["origin"], source.GetOrigin()[:3])
    np.testing.assert_allclose(np.reshape(props["direction"], (3, 3)),
                               np.reshape(source.GetDirection(), (4, 4))[:3, :3], atol=1e-6)
    assert sorted(p.name for p in (folder / "imagesTs").iterdir())[:2] == ["prostate_04_0000.nii.gz",
                                                                           "prostate_04_0001.nii.gz"]
    assert (folder / "labelsTs" / "prostate_04.nii.gz").is_file()
    assert not list(sf3d_roots.raw.glob(".*")), "no partial folder left"


def test_converts_3d_single_channel_task_with_chosen_id(sf3d_roots, tmp_path):
    task = make_msd_task(tmp_path, name="Task09_Spleen", num_cases=2, shape=(8, 16, 16), modalities=["CT"])
    folder = convert_msd(task, dataset_id=509, num_processes=2)
    assert folder.name == "Dataset509_Spleen"
    assert load_dataset_json(folder / "dataset.json")["channel_names"] == {"0": "CT"}
    copied = folder / "imagesTr" / "spleen_00_0000.nii.gz"
    assert copied.read_bytes() == (task / "imagesTr" / "spleen_00.nii.gz").read_bytes()
    assert sorted(p.name for p in (folder / "labelsTr").iterdir()) == ["spleen_00.nii.gz", "spleen_01.nii.gz"]


def test_interrupted_conversion_completes_on_rerun(sf3d_roots, msd_task):
    # Recreate what a killed run leaves: the hidden partial folder with some files converted, one temporary
    # file of an unfinished write, and no dataset.json.
    partial = sf3d_roots.raw / ".Dataset005_Prostate.partial"
    convert_msd(msd_task).rename(partial)
    (partial / "dataset.json").unlink()
    for name in ("prostate_02_0001.nii.gz", "prostate_03_0000.nii.gz", "prostate_03_0001.nii.gz"):
        (partial / "imagesTr" / name).unlink()
    (partial / "imagesTr" / ".prostate_03_0000.nii.gz.x1y2.nii.gz").write_bytes(b"half written")
    kept = partial / "imagesTr" / "prostate_00_0000.nii.gz"
    before = kept.stat().st_mtime_ns
    folder = convert_msd(msd_task)
    assert not partial.exists()
    assert (folder / "imagesTr" / kept.name).stat().st_mtime_ns == before, "finished files are not redone"
    assert check_dataset(folder, load_dataset_json(folder / "dataset.json"), verify=True) == []
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == [
        f"prostate_{i:02d}_{c:04d}.nii.gz" for i in range(4) for c in range(2)]


def test_existing_target_or_id_taken(sf3d_roots, msd_task):
    (sf3d_roots.preprocessed / "Dataset005_Other").mkdir()
    with pytest.raises(InputError, match="dataset ID 5 is taken by Dataset005_Other"):
        convert_msd(msd_task)
    (sf3d_roots.raw / "Dataset006_Prostate").mkdir()
    with pytest.raises(InputError, match="Dataset006_Prostate: already exists"):
        convert_msd(msd_task, dataset_id=6)


@pytest.mark.parametrize("breakage,message", [
    ("no_json", "not an MSD task folder"),
    ("v2_json", "not an MSD dataset.json, missing modality.*nnU-Net v2 dataset already"),
    ("missing_label", "prostate_01.nii.gz: missing label of training image"),
    ("wrong_channels", "prostate_00.nii.gz: 4D image with 2 channel\\(s\\), but 'modality' declares 3"),
    ("bad_labels", "cannot convert: label values must be consecutive"),
])
def test_bad_tasks_write_nothing(sf3d_roots, msd_task, breakage, message):
    data = json.loads((msd_task / "dataset.json").read_text())
    if breakage == "no_json":
        (msd_task / "dataset.json").unlink()
    elif breakage == "v2_json":
        data["channel_names"] = data.pop("modality")
    elif breakage == "missing_label":
        (msd_task / "labelsTr" / "prostate_01.nii.gz").unlink()
    elif breakage == "wrong_channels":
        data["modality"]["2"] = "DWI"
    else:
        data["labels"] = {"0": "background", "1": "PZ", "3": "TZ"}
    if breakage != "no_json":
        (msd_task / "dataset.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match=message):
        convert_msd(msd_task)
    assert list(sf3d_roots.raw.iterdir()) == []


def test_folder_name_without_task_number_needs_id(sf3d_roots, tmp_path):
    task = make_msd_task(tmp_path, name="MyProstate", num_cases=1, shape=(8, 16, 16))
    with pytest.raises(InputError, match="not TaskXX_Name; pass the target ID with -d"):
        convert_msd(task)
    assert convert_msd(task, dataset_id=600).name == "Dataset600_MyProstate"
