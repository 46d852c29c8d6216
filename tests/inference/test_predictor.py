"""Predictor: geometry of the outputs, sliding window == plain forward on one patch, fold ensembling, errors."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy import ndimage

from segformer3d_auto.atomic import write_json
from segformer3d_auto.dataset.image_io import write_image
from segformer3d_auto.errors import InputError
from segformer3d_auto.inference.predictor import Predictor
from segformer3d_auto.model import create_model
from tests.inference.model_folders import labels_dataset_json, make_model_folder, make_plans

OBLIQUE = [float(v) for v in np.array(sitk.VersorTransform((1.0, 2.0, 0.5), 0.4).GetMatrix())]
LPS_FLIP = [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0]


def _model(tmp_path: Path, folds=(0,), regions: bool = False, ending: str = ".nii.gz", **plan_kw) -> Path:
    if regions:
        dataset_json = {"channel_names": {"0": "T1"}, "numTraining": 1, "file_ending": ending,
                        "labels": {"background": 0, "whole": [1, 2], "core": [2]}, "regions_class_order": [1, 2]}
        heads = 2
    else:
        dataset_json, heads = labels_dataset_json(ending=ending), 3
    plan_kw.setdefault("spacing", [1.0, 1.0, 1.0])
    plan_kw.setdefault("patch_size", [32, 32, 32])
    plans = make_plans(dataset_json, num_heads_out=heads, **plan_kw)
    return make_model_folder(tmp_path / "model", dataset_json, plans, folds=folds)


def _forward(folder: Path, fold: int, x: torch.Tensor) -> torch.Tensor:
    """The plain network of a fold on a batch, for comparison."""
    network = Predictor(folder, folds=[fold]).plan["network"]
    model = create_model(network["name"], **network["kwargs"])
    model.load_state_dict(torch.load(folder / f"fold_{fold}" / "checkpoint_final.pth")["network_weights"])
    with torch.inference_mode():
        return model.eval()(x)


@pytest.mark.parametrize("direction,ending", [(LPS_FLIP, ".nii.gz"), (OBLIQUE, ".nii.gz"), (OBLIQUE, ".nrrd")])
def test_output_has_the_inputs_geometry(tmp_path: Path, direction: list[float], ending: str) -> None:
    folder = _model(tmp_path, ending=ending, spacing=[1.5, 3.0, 1.2], transpose=(1, 2, 0))
    rng = np.random.default_rng(1)
    shape = (13, 21, 17)  # z, y, x; anisotropic spacing, resampled, transposed, cropped
    image = np.zeros(shape, dtype=np.int16)
    image[1:-2, 2:-1, 3:-3] = rng.integers(-100, 200, (shape[0] - 3, shape[1] - 3, shape[2] - 6))
    props = {"spacing": [3.3, 0.9, 1.7], "origin": [-120.5, 33.25, 401.0], "direction": direction}
    write_image(image, props, tmp_path / f"img_0000{ending}")
    out = Predictor(folder, use_mirroring=False).predict_files([tmp_path / f"img_0000{ending}"],
                                                              tmp_path / "out" / f"img{ending}")
    src, pred = sitk.ReadImage(str(tmp_path / f"img_0000{ending}")), sitk.ReadImage(str(out))
    assert pred.GetSize() == src.GetSize() == (17, 21, 13)
    assert pred.GetSpacing() == src.GetSpacing()
    assert pred.GetOrigin() == src.GetOrigin()
    if ending == ".nii.gz" and direction is OBLIQUE:
        # NIfTI keeps an oblique matrix in float32 (sform/quaternion): equal to float32 precision
        np.testing.assert_allclose(pred.GetDirection(), src.GetDirection(), rtol=0, atol=1e-6)
    else:
        assert pred.GetDirection() == src.GetDirection()
    values = sitk.GetArrayFromImage(pred)
    assert set(np.unique(values)) <= {0, 1, 2}
    outside = np.ones(shape, dtype=bool)
    outside[1:-2, 2:-1, 3:-3] = False  # the zero border that cropping removed
    assert np.all(values[outside] == 0) and np.any(values[~outside] != 0)


@pytest.mark.parametrize("regions", [False, True])
def test_one_patch_sliding_window_equals_plain_forward(tmp_path: Path, regions: bool) -> None:
    folder = _model(tmp_path, regions=regions)
    data = torch.randn(1, 32, 32, 32)
    logits = _forward(folder, 0, data[None])[0]
    expected = torch.sigmoid(logits) if regions else torch.softmax(logits, 0)
    got = Predictor(folder, use_mirroring=False).predict_probabilities(data.numpy())
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    # with mirroring: the mean of the logits over all 8 flips, flipped back
    flipped = [torch.flip(_forward(folder, 0, torch.flip(data[None], [2 + a for a in axes])), [2 + a for a in axes])
               for n in range(4) for axes in itertools.combinations((0, 1, 2), n)]
    mean = torch.stack(flipped).mean(0)[0]
    expected = torch.sigmoid(mean) if regions else torch.softmax(mean, 0)
    torch.testing.assert_close(Predictor(folder).predict_probabilities(data), expected, rtol=1e-4, atol=1e-5)


def test_two_folds_average_their_probabilities(tmp_path: Path) -> None:
    folder = _model(tmp_path, folds=(0, 1), patch_size=[32, 32, 32])
    data = torch.randn(1, 40, 48, 36)  # several windows per axis
    both = Predictor(folder, step_size=0.5).predict_probabilities(data)
    each = [Predictor(folder, folds=[f]).predict_probabilities(data) for f in (0, 1)]
    assert not torch.allclose(each[0], each[1], atol=1e-3)  # the folds differ
    torch.testing.assert_close(both, (each[0] + each[1]) / 2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(both.sum(0), torch.ones(40, 48, 36), rtol=1e-5, atol=1e-5)


def test_postprocessing_json_is_applied(tmp_path: Path) -> None:
    folder = _model(tmp_path)
    image = np.random.default_rng(3).normal(0, 1, (1, 24, 24, 24)).astype(np.float32)
    props = {"spacing": [1.0, 1.0, 1.0], "origin": [0.0, 0.0, 0.0], "direction": [1, 0, 0, 0, 1, 0, 0, 0, 1]}
    plain, _ = Predictor(folder, use_mirroring=False).predict_array(image, props)
    pp = {"keep_largest_foreground": True, "keep_largest_per_class": ["1"]}
    write_json(pp, folder / "crossval" / "postprocessing.json")
    predictor = Predictor(folder, use_mirroring=False)
    processed, probs = predictor.predict_array(image, props, return_probabilities=True)
    assert probs.shape == (3, 24, 24, 24)
    # the reference, brute force with scipy: largest 26-connected foreground component, then label 1's largest
    full = np.ones((3, 3, 3), dtype=bool)
    components, count = ndimage.label(plain != 0, structure=full)
    assert count > 1, "the random network must leave stray components for this test to mean something"
    sizes = np.bincount(components.ravel())[1:]
    assert (sizes == sizes.max()).sum() == 1  # no tie for the largest
    expected = np.where(components == np.argmax(sizes) + 1, plain, 0)
    ones, count = ndimage.label(expected == 1, structure=full)
    if count > 1:
        expected[(expected == 1) & (ones != np.argmax(np.bincount(ones.ravel())[1:]) + 1)] = 0
    assert not np.array_equal(expected, plain)
    np.testing.assert_array_equal(processed, expected)


def test_model_folder_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="plans.json missing"):
        Predictor(tmp_path / "nowhere")
    folder = _model(tmp_path, folds=(0,))
    with pytest.raises(InputError, match=r"fold_3: fold 3 not found \(folds found: 0\)"):
        Predictor(folder, folds=[3])
    with pytest.raises(InputError, match="checkpoint_best.pth: checkpoint not found"):
        Predictor(folder, checkpoint="best")
    (folder / "fold_0" / "checkpoint_final.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="checkpoint_final.pth: not a readable checkpoint"):
        Predictor(folder)
    other = _model(tmp_path / "o", network={"embed_dims": [8, 16, 24, 48], "num_heads": [1, 1, 1, 1],
                                            "depths": [1, 1, 1, 1], "sr_ratios": [2, 1, 1, 1],
                                            "decoder_head_embedding_dim": 16})
    torch.save({"network_weights": _model(tmp_path / "p").joinpath("fold_0").exists() and
                torch.load(tmp_path / "p" / "model" / "fold_0" / "checkpoint_final.pth")["network_weights"],
                "epoch": 1}, other / "fold_0" / "checkpoint_final.pth")
    with pytest.raises(InputError, match="weights do not fit the planned network"):
        Predictor(other)
    with pytest.raises(ValueError, match="step_size"):
        Predictor(_model(tmp_path / "q"), step_size=0)
