from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from segformer3d_auto.dataset import image_io
from segformer3d_auto.dataset.image_io import (
    read_image_header,
    read_images,
    read_segmentation,
    write_image,
    write_segmentation,
)
from segformer3d_auto.errors import InputError

OBLIQUE = np.array([[0.8, -0.6, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]]) @ np.array(
    [[1.0, 0.0, 0.0], [0.0, np.cos(0.3), -np.sin(0.3)], [0.0, np.sin(0.3), np.cos(0.3)]])
GEOMETRY = {"spacing": [3.0, 0.7, 1.25], "origin": [-12.5, 40.25, 7.0], "direction": OBLIQUE.ravel().tolist()}


def _write(path, array, spacing_xyz=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None):
    image = sitk.GetImageFromArray(array, isVector=False)
    image.SetSpacing(spacing_xyz)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    sitk.WriteImage(image, str(path))
    return path


def test_read_images_stacks_channels_as_float32_with_reversed_spacing(tmp_path):
    a = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    paths = [_write(tmp_path / f"c_{i:04d}.nii.gz", a + i, (0.5, 0.75, 2.0), (1.0, 2.0, 3.0)) for i in range(2)]
    data, props = read_images(paths)
    assert data.dtype == np.float32 and data.shape == (2, 4, 5, 6)
    np.testing.assert_array_equal(data[1], a + 1)
    assert props["spacing"] == [2.0, 0.75, 0.5]
    assert props["origin"] == [1.0, 2.0, 3.0]
    assert props["shape"] == [4, 5, 6]
    assert props["direction"] == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]


@pytest.mark.parametrize("ending", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_segmentation_geometry_round_trip(tmp_path, ending):
    seg = np.zeros((6, 7, 8), dtype=np.int64)
    seg[1:4, 2:5, 3:7] = 2
    seg[0, 0, 0] = 1
    props = {**GEOMETRY, "shape": [6, 7, 8]}
    path = tmp_path / f"seg{ending}"
    write_segmentation(seg, props, path)
    image = sitk.ReadImage(str(path))
    assert image.GetPixelID() == sitk.sitkUInt8
    assert image.GetSize() == (8, 7, 6)
    np.testing.assert_allclose(image.GetSpacing(), [1.25, 0.7, 3.0], rtol=1e-6)
    np.testing.assert_allclose(image.GetOrigin(), GEOMETRY["origin"], atol=1e-5)
    np.testing.assert_allclose(image.GetDirection(), GEOMETRY["direction"], atol=1e-5)
    back, back_props = read_segmentation(path)
    np.testing.assert_array_equal(back, seg)
    assert back.dtype == np.uint8
    assert image_io.geometry_difference(back_props, props) is None
    assert not list(tmp_path.glob(".*")), "no temporary file left behind"


def test_write_segmentation_widens_dtype_when_needed(tmp_path):
    seg = np.zeros((3, 3, 3), dtype=np.int32)
    seg[0, 0, 0] = 300
    write_segmentation(seg, {**GEOMETRY, "shape": [3, 3, 3]}, tmp_path / "s.nii.gz")
    assert sitk.ReadImage(str(tmp_path / "s.nii.gz")).GetPixelID() == sitk.sitkUInt16
    assert read_segmentation(tmp_path / "s.nii.gz")[0].dtype == np.uint16


def test_write_segmentation_argument_checks(tmp_path):
    props = {**GEOMETRY, "shape": [3, 3, 3]}
    with pytest.raises(ValueError, match="shape"):
        write_segmentation(np.zeros((3, 3, 4), np.uint8), props, tmp_path / "s.nii.gz")
    with pytest.raises(ValueError, match="integers"):
        write_segmentation(np.zeros((3, 3, 3), np.float32), props, tmp_path / "s.nii.gz")
    with pytest.raises(InputError, match="unsupported file ending"):
        write_segmentation(np.zeros((3, 3, 3), np.uint8), props, tmp_path / "s.png")
    assert not list(tmp_path.iterdir())


def test_write_image_keeps_thin_arrays_3d(tmp_path):
    # a last axis of size <= 4 must not be taken for vector components
    array = np.random.default_rng(0).normal(size=(5, 6, 3)).astype(np.float32)
    write_image(array, {"spacing": [1, 1, 1], "origin": [0, 0, 0], "direction": np.eye(3).ravel()},
                tmp_path / "thin.nii.gz")
    data, props = read_images([tmp_path / "thin.nii.gz"])
    assert props["shape"] == [5, 6, 3]
    np.testing.assert_array_equal(data[0], array)


def test_read_segmentation_smallest_dtype_and_float_labels(tmp_path):
    _write(tmp_path / "f.nii.gz", np.array([[[0.0, 1.0], [2.0, 3.0]]], dtype=np.float32))
    seg, _ = read_segmentation(tmp_path / "f.nii.gz")
    assert seg.dtype == np.uint8 and seg.tolist() == [[[0, 1], [2, 3]]]
    _write(tmp_path / "neg.nii.gz", np.array([[[-1, 1]]], dtype=np.int32))
    assert read_segmentation(tmp_path / "neg.nii.gz")[0].dtype == np.int8
    _write(tmp_path / "frac.nii.gz", np.array([[[0.0, 0.5]]], dtype=np.float32))
    with pytest.raises(InputError, match="frac.nii.gz: label map holds non-integer values"):
        read_segmentation(tmp_path / "frac.nii.gz")


def test_read_images_rejects_nan_and_inf(tmp_path):
    a = np.zeros((3, 3, 3), np.float32)
    a[1, 1, 1] = np.inf
    path = _write(tmp_path / "bad_0000.nii.gz", a)
    with pytest.raises(InputError, match=r"bad_0000.nii.gz: contains NaN or inf"):
        read_images([path])


@pytest.mark.parametrize("shape,expected", [((4, 5), "2D image"), ((2, 3, 4, 5), "4D image")])
def test_read_rejects_non_3d(tmp_path, shape, expected):
    path = _write(tmp_path / "x.nii.gz", np.zeros(shape, np.float32), (1.0,) * len(shape), (0.0,) * len(shape))
    with pytest.raises(InputError, match=expected):
        read_images([path])
    with pytest.raises(InputError, match=expected):
        read_segmentation(path)
    assert read_image_header(path)["dimension"] == len(shape)


@pytest.mark.parametrize("what", ["shape", "spacing", "origin", "direction"])
def test_channels_must_share_geometry(tmp_path, what):
    first = _write(tmp_path / "c_0000.nii.gz", np.zeros((3, 4, 5), np.float32))
    kwargs = {"spacing_xyz": (1.0, 1.0, 1.0), "origin": (0.0, 0.0, 0.0), "direction": None}
    array = np.zeros((3, 4, 5), np.float32)
    if what == "shape":
        array = np.zeros((3, 4, 6), np.float32)
    elif what == "spacing":
        kwargs["spacing_xyz"] = (1.0, 1.0, 1.1)
    elif what == "origin":
        kwargs["origin"] = (0.0, 0.5, 0.0)
    else:
        kwargs["direction"] = (-1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)
    second = _write(tmp_path / "c_0001.nii.gz", array, **kwargs)
    with pytest.raises(InputError, match=f"c_0001.nii.gz: geometry differs from the first channel.*{what}"):
        read_images([first, second])


def test_tiny_origin_rounding_is_tolerated(tmp_path):
    first = _write(tmp_path / "c_0000.nii.gz", np.ones((3, 4, 5), np.float32), origin=(10.0, 0.0, 0.0))
    second = _write(tmp_path / "c_0001.nii.gz", np.ones((3, 4, 5), np.float32), origin=(10.00001, 0.0, 0.0))
    assert read_images([first, second])[0].shape == (2, 3, 4, 5)


def test_truncated_and_garbage_files(tmp_path):
    path = _write(tmp_path / "t.nii.gz", np.random.default_rng(0).random((16, 16, 16)).astype(np.float32))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert read_image_header(path)["shape"] == [16, 16, 16], "the header alone looks fine"
    with pytest.raises(InputError, match="t.nii.gz: truncated"):
        read_images([path])
    garbage = tmp_path / "g.nii.gz"
    garbage.write_bytes(b"not an image")
    with pytest.raises(InputError, match="g.nii.gz: "):
        read_image_header(garbage)
    with pytest.raises(InputError, match="g.nii.gz: "):
        read_segmentation(garbage)
    with pytest.raises(InputError, match="missing.nii.gz: file not found"):
        read_images([tmp_path / "missing.nii.gz"])


def test_read_image_header_is_in_array_order(tmp_path):
    path = _write(tmp_path / "h.nrrd", np.zeros((3, 4, 5), np.int16), (0.5, 0.6, 2.0), (1.0, 2.0, 3.0))
    header = read_image_header(path)
    assert header["dimension"] == 3 and header["components"] == 1
    assert header["shape"] == [3, 4, 5]
    assert header["spacing"] == pytest.approx([2.0, 0.6, 0.5])
    assert header["origin"] == [1.0, 2.0, 3.0]
    assert len(header["direction"]) == 9


def test_file_ending_and_smallest_int_dtype():
    assert image_io.file_ending("a/b.NII.GZ") == ".nii.gz"
    assert image_io.file_ending("b.nii") == ".nii"
    assert image_io.file_ending("b.png") is None
    assert image_io.smallest_int_dtype(0, 255) == np.uint8
    assert image_io.smallest_int_dtype(0, 256) == np.uint16
    assert image_io.smallest_int_dtype(-1, 127) == np.int8
    assert image_io.smallest_int_dtype(-1, 40000) == np.int32
