from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.ndimage import binary_erosion

from segformer3d_auto.dataset import anatomy
from segformer3d_auto.dataset.anatomy import anatomy_case
from segformer3d_auto.dataset.dataset_json import list_training_cases, load_dataset_json
from segformer3d_auto.dataset.image_io import read_images, read_segmentation
from segformer3d_auto.dataset.integrity import check_dataset
from segformer3d_auto.dataset.labels import LabelManager
from segformer3d_auto.dataset.phantoms import ellipsoid
from segformer3d_auto.dataset.synthetic import (
    make_ct_dataset,
    make_mri_regions_dataset,
    make_msd_task,
    make_thin_dataset,
)


def _case(folder, identifier):
    dj = load_dataset_json(folder / "dataset.json")
    case = next(c for c in list_training_cases(folder, dj) if c.identifier == identifier)
    images, props = read_images(case.images)
    seg, _ = read_segmentation(case.label)
    return images, seg, props


def test_mri_regions_dataset(tmp_path):
    folder = make_mri_regions_dataset(tmp_path, num_cases=3, shape=(24, 24, 24), num_test_cases=1)
    assert folder == tmp_path / "Dataset501_SyntheticBraTS"
    dj = load_dataset_json(folder / "dataset.json")
    assert dj["channel_names"] == {"0": "FLAIR", "1": "T1", "2": "T1ce", "3": "T2"}
    assert dj["regions_class_order"] == [1, 2, 3] and dj["numTraining"] == 3
    assert LabelManager.from_dataset_json(dj).foreground_regions == [(1, 2, 3), (2, 3), (3,)]
    assert check_dataset(folder, dj, verify=True) == []
    assert len(list((folder / "imagesTs").iterdir())) == 4 and len(list((folder / "labelsTs").iterdir())) == 1
    images, seg, props = _case(folder, "brats_000")
    assert images.shape == (4, 24, 24, 24) and props["spacing"] == [1.0, 1.0, 1.0]
    assert set(np.unique(seg)) == {0, 1, 2, 3}
    brain = images[0] > 0
    assert not brain[0].any() and not brain[:, 0].any(), "zeros around the brain: cropping has work"
    assert (images[:, ~brain] == 0).all(), "all channels share the zero background"
    healthy = brain & (seg == 0)
    assert images[0][seg == 1].mean() > 1.5 * images[0][healthy].mean(), "edema bright in FLAIR"
    assert images[2][seg == 3].mean() > 1.5 * images[2][healthy].mean(), "enhancing bright in T1ce"


def test_generation_is_deterministic(tmp_path):
    a = make_mri_regions_dataset(tmp_path / "a", num_cases=2, shape=(16, 16, 16), num_test_cases=0, seed=3)
    b = make_mri_regions_dataset(tmp_path / "b", num_cases=1, shape=(16, 16, 16), num_test_cases=0, seed=3)
    c = make_mri_regions_dataset(tmp_path / "c", num_cases=1, shape=(16, 16, 16), num_test_cases=0, seed=4)
    ia, sa, _ = _case(a, "brats_000")
    ib, sb, _ = _case(b, "brats_000")
    ic, _, _ = _case(c, "brats_000")
    np.testing.assert_array_equal(ia, ib)
    np.testing.assert_array_equal(sa, sb)
    assert not np.array_equal(ia, ic)


def test_ct_dataset(tmp_path):
    folder = make_ct_dataset(tmp_path, dataset_id=7, num_cases=3, shape=(8, 24, 24), num_test_cases=1)
    assert folder.name == "Dataset007_SyntheticCT"
    dj = load_dataset_json(folder / "dataset.json")
    assert dj["channel_names"] == {"0": "CT"} and dj["labels"] == {"background": 0, "liver": 1, "kidney": 2}
    assert check_dataset(folder, dj, verify=True) == []
    cases = [_case(folder, f"ct_{i:03d}") for i in range(3)]
    images, seg, props = cases[0]
    assert np.allclose(props["spacing"], [5.0, 0.8, 0.8])
    assert props["direction"] == [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0]
    assert sitk.ReadImage(str(folder / "imagesTr" / "ct_000_0000.nii.gz")).GetPixelID() == sitk.sitkInt16
    assert images.min() <= -990, "air outside the body"
    assert 40 < images[0][seg == 1].mean() < 80 and 120 < images[0][seg == 2].mean() < 180
    assert len({tuple(p["origin"]) for _, _, p in cases}) == 3 and all(p["origin"][0] > 100 for _, _, p in cases)
    assert all(p["shape"][0] >= 8 and p["shape"][1] >= 24 for _, _, p in cases)
    assert len({tuple(p["shape"]) for _, _, p in cases}) > 1, "shapes vary across cases"


def test_msd_task_layout(tmp_path):
    task = make_msd_task(tmp_path, num_cases=2, shape=(8, 16, 16))
    assert task == tmp_path / "Task05_Prostate"
    dj = json.loads((task / "dataset.json").read_text())
    assert dj["modality"] == {"0": "T2", "1": "ADC"} and dj["labels"] == {"0": "background", "1": "PZ", "2": "TZ"}
    assert dj["training"][0] == {"image": "./imagesTr/prostate_00.nii.gz", "label": "./labelsTr/prostate_00.nii.gz"}
    assert dj["numTraining"] == 2 and dj["numTest"] == 2 and dj["test"][0] == "./imagesTs/prostate_02.nii.gz"
    image = sitk.ReadImage(str(task / "imagesTr" / "prostate_00.nii.gz"))
    assert image.GetDimension() == 4 and image.GetSize() == (16, 16, 8, 2)
    label = sitk.ReadImage(str(task / "labelsTr" / "prostate_00.nii.gz"))
    assert label.GetDimension() == 3
    assert set(np.unique(sitk.GetArrayFromImage(label))) == {0, 1, 2}
    single = make_msd_task(tmp_path, name="Task09_Single", num_cases=1, shape=(8, 16, 16), modalities=["CT"])
    assert sitk.ReadImage(str(single / "imagesTr" / "single_00.nii.gz")).GetDimension() == 3


def test_command_line_entry_point(tmp_path):
    result = subprocess.run([sys.executable, "-m", "segformer3d_auto.dataset.synthetic", "--kind", "ct",
                             "--out", str(tmp_path), "--num-cases", "1", "--num-test-cases", "0", "-d", "612"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("Dataset612_SyntheticCT")
    assert (tmp_path / "Dataset612_SyntheticCT" / "labelsTr" / "ct_000.nii.gz").is_file()


def test_thin_dataset_has_structures_below_the_paper_grid(tmp_path):
    folder = make_thin_dataset(tmp_path, num_cases=2, shape=(32, 32, 32), num_test_cases=1)
    assert folder.name == "Dataset503_SyntheticThin"
    dj = load_dataset_json(folder / "dataset.json")
    assert dj["labels"] == {"background": 0, "ribbon": 1, "vessel": 2}
    assert check_dataset(folder, dj, verify=True) == []
    images, seg, _ = _case(folder, "thin_000")
    assert images.shape == (1, 32, 32, 32) and set(np.unique(seg)) == {0, 1, 2}
    for label in (1, 2):
        mask = seg == label
        # thin: a 3x3x3 erosion (which keeps only voxels at least 2 voxels from both sides) removes nearly all
        survivors = binary_erosion(mask, np.ones((3, 3, 3), bool)).sum()
        assert mask.sum() > 30 and survivors <= 0.05 * mask.sum()
    assert images[0][seg == 1].mean() > 1.3 * images[0][(seg == 0) & (images[0] > 0)].mean()


def _stand_in_template() -> dict[str, np.ndarray]:
    """A template of the MNI one's kind (T1 and grey / white probability maps at 1 mm), 40x48x44: white matter
    inside a grey shell."""
    shape = (40, 48, 44)
    c = np.asarray(shape) / 2
    wm = ellipsoid(shape, c, np.asarray(shape) * 0.3).astype(np.float32)
    gm = ellipsoid(shape, c, np.asarray(shape) * 0.4).astype(np.float32) - wm
    return {"t1": 0.5 * gm + 1.0 * wm + 0.2 * ellipsoid(shape, c, np.asarray(shape) * 0.45), "gm": gm, "wm": wm}


def test_anatomy_case_from_a_template(tmp_path):
    # the case at 2 mm must label the stand-in's shell grey and its core white, on a half-size grid
    image, seg = anatomy_case(np.random.default_rng(0), _stand_in_template(), (1.0, 1.0, 1.0), 2.0,
                              deformation_mm=1.0)
    assert image.shape == (1, 20, 24, 22) and seg.shape == (20, 24, 22)
    centre = tuple(s // 2 for s in seg.shape)
    assert seg[centre] == 2 and seg[0, 0, 0] == 0 and (seg == 1).sum() > 50
    assert image[0][seg == 2].mean() > image[0][seg == 1].mean()


def test_anatomy_noise_changes_only_the_image_by_its_amount():
    # the same case with and without noise: identical labels, and images whose ratio inside the brain is
    # 1 + noise x (unit-variance noise), so its standard deviation is close to the noise asked for
    template = _stand_in_template()
    clean, seg_clean = anatomy_case(np.random.default_rng(3), template, (1.0, 1.0, 1.0), 2.0, noise=0.0)
    noisy, seg_noisy = anatomy_case(np.random.default_rng(3), template, (1.0, 1.0, 1.0), 2.0, noise=0.1)
    np.testing.assert_array_equal(seg_clean, seg_noisy)
    brain = clean[0] > 0
    assert brain.sum() > 1000
    ratio = noisy[0][brain] / clean[0][brain]
    assert abs(float(ratio.mean()) - 1.0) < 0.02 and 0.07 < float(ratio.std()) < 0.13
    with pytest.raises(ValueError, match="noise"):
        anatomy_case(np.random.default_rng(3), template, (1.0, 1.0, 1.0), 2.0, noise=-0.1)


def test_anatomy_needs_nilearn_and_says_so(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r"\[anatomy\]"):
        anatomy.template_folder()
