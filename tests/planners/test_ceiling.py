from __future__ import annotations

import numpy as np
import pytest

from segformer3d_auto.planners.ceiling import average_proxy, coarse_grid_ceiling, crop_around_foreground


def _sheet(stride_offset: int = 5) -> np.ndarray:
    mask = np.zeros((16, 8, 8), dtype=bool)
    mask[stride_offset] = True  # a sheet one voxel thick across the whole crop
    return mask


@pytest.mark.parametrize("stride", [2, 4])
def test_thin_sheet_is_reachable_but_the_cell_average_proxy_misses_it(stride):
    # Along z, a one-voxel sheet is exactly representable through trilinear upsampling: one positive coarse logit
    # flanked by negative ones of unequal size puts the zero crossings on either side of that voxel (worked out by
    # hand for strides 2 and 4). The cell average is 1/stride there and never reaches 0.5.
    mask = _sheet()
    assert coarse_grid_ceiling(mask, (stride, 1, 1)) >= 0.98
    assert average_proxy(mask, (stride, 1, 1)) == 0.0


def test_a_comb_finer_than_the_grid_is_capped():
    # Every other voxel on: between two coarse cell centres the upsampled logits are linear and change sign at
    # most once, so at stride 4 at most about half of the alternations can be drawn.
    mask = np.zeros((16, 4, 4), dtype=bool)
    mask[::2] = True
    assert coarse_grid_ceiling(mask, (4, 1, 1)) < 0.8
    assert coarse_grid_ceiling(mask, (1, 1, 1)) == 1.0


def test_empty_mask_and_bad_shapes():
    assert coarse_grid_ceiling(np.zeros((8, 8, 8), bool), (4, 4, 4)) == 1.0
    with pytest.raises(ValueError, match="multiple of the stride"):
        coarse_grid_ceiling(np.ones((6, 8, 8), bool), (4, 4, 4))


def test_crop_is_a_multiple_of_the_stride_around_the_foreground():
    mask = np.zeros((100, 30, 9), dtype=bool)
    mask[80:90, 10:12, 2:5] = True
    crop = crop_around_foreground(mask, (4, 4, 2), max_size=64)
    sizes = [s.stop - s.start for s in crop]
    assert sizes == [64, 28, 8]
    assert mask[crop].sum() == mask.sum()
