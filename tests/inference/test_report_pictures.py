"""The report page's pictures: PNG bytes that an independent decoder reads back, and hand-computed colours."""

from __future__ import annotations

import io

import matplotlib.image
import numpy as np
import pytest

from segformer3d_auto.inference.report_pictures import encode_png, grey, heat, mosaic, png_data_uri, with_labels


def test_png_reads_back_exactly_with_another_decoder() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, size=(7, 13, 3), dtype=np.uint8)
    decoded = matplotlib.image.imread(io.BytesIO(encode_png(rgb)), format="png")  # Pillow's decoder
    assert decoded.shape == (7, 13, 3)
    np.testing.assert_array_equal(np.rint(decoded * 255).astype(np.uint8), rgb)
    assert png_data_uri(rgb).startswith("data:image/png;base64,iVBORw0KGgo")  # the PNG signature, base64


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32),
                                 np.zeros((0, 4, 3), np.uint8), np.zeros((4, 4, 4), np.uint8)])
def test_png_refuses_what_is_not_rgb_bytes(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="uint8"):
        encode_png(bad)


def test_grey_labels_and_heat_colours() -> None:
    image = np.array([[-10.0, 0.0], [50.0, 200.0]])
    np.testing.assert_allclose(grey(image, 0.0, 100.0)[..., 0], [[0.0, 0.0], [127.5, 255.0]])
    labelled = with_labels(grey(image, 0.0, 100.0), np.array([[0, 1], [2, 11]]))
    np.testing.assert_allclose(labelled[0, 0], [0.0, 0.0, 0.0])  # label 0: unchanged
    np.testing.assert_allclose(labelled[1, 0], [(127.5 + 255) / 2, (127.5 + 127) / 2, (127.5 + 14) / 2])  # orange
    np.testing.assert_allclose(labelled[1, 1], [(255 + 31) / 2, (255 + 119) / 2, (255 + 180) / 2])  # 11 wraps to 1
    np.testing.assert_allclose(heat(np.array([-1.0, 0.0, 0.125, 1.0, 2.0])),
                               [[0, 0, 4], [0, 0, 4], [40.5, 9, 64], [252, 253, 191], [252, 253, 191]])


def test_mosaic_scales_tiles_by_a_whole_factor_with_white_gaps() -> None:
    tiles = [[np.full((10, 20, 3), 10.0 * (3 * r + c)) for c in range(3)] for r in range(2)]
    picture = mosaic(tiles)
    up = 160 // 20  # the longer side towards 160 pixels
    assert picture.dtype == np.uint8 and picture.shape == (2 * 10 * up + 2, 3 * 20 * up + 2 * 2, 3)
    assert (picture[10 * up: 10 * up + 2] == 255).all() and (picture[:, 20 * up: 20 * up + 2] == 255).all()
    assert (picture[10 * up + 2:, 2 * (20 * up + 2):] == 50).all()  # row 1, column 2
    big = mosaic([[np.zeros((640, 320, 3))]])
    assert big.shape == (320, 160, 3)  # every second pixel of a large slice
