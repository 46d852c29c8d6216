from __future__ import annotations

import json

import numpy as np
import pytest

from segformer3d_auto.dataset.labels import LabelManager
from segformer3d_auto.errors import InputError
from segformer3d_auto.inference.postprocessing import (
    apply_postprocessing,
    check_postprocessing,
    keep_largest_component,
    load_postprocessing,
)

LABELS = LabelManager({"background": 0, "liver": 1, "tumour": 2})
BRATS = LabelManager({"background": 0, "whole": [1, 2, 3], "core": [2, 3], "enhancing": [3]}, [1, 2, 3])


def test_keep_largest_component_26_connected():
    mask = np.zeros((6, 8, 8), dtype=bool)
    mask[0:3, 0:3, 0:3] = True  # 27 voxels
    mask[3, 3, 3] = True  # touches the cube only at a corner: same component
    mask[5, 6:8, 6:8] = True  # 4 separate voxels
    kept = keep_largest_component(mask)
    assert kept.sum() == 28 and kept[3, 3, 3] and not kept[5].any()
    assert mask.sum() == 32  # input untouched
    assert not keep_largest_component(np.zeros((3, 3, 3), dtype=bool)).any()
    with pytest.raises(ValueError, match="boolean"):
        keep_largest_component(mask.astype(np.uint8))


def _labels_seg():
    seg = np.zeros((8, 16, 16), dtype=np.uint8)
    seg[1:6, 1:8, 1:8] = 1  # liver
    seg[2:4, 3:5, 8:10] = 2  # tumour touching the liver
    seg[6:8, 13:16, 13:16] = 1  # stray liver blob
    seg[0, 14:16, 0:2] = 2  # stray tumour voxels
    return seg


def test_foreground_and_per_label_rules():
    seg = _labels_seg()
    fg = apply_postprocessing(seg, {"keep_largest_foreground": True, "keep_largest_per_class": []}, LABELS)
    assert fg[6:8, 13:16, 13:16].max() == 0 and fg[0, 14:16, 0:2].max() == 0
    assert (fg[2:4, 3:5, 8:10] == 2).all() and (fg[1:6, 1:8, 1:8] == 1).all()
    liver = apply_postprocessing(seg, {"keep_largest_foreground": False, "keep_largest_per_class": ["1"]}, LABELS)
    assert liver[6:8, 13:16, 13:16].max() == 0 and (liver[0, 14:16, 0:2] == 2).all()
    assert (seg == _labels_seg()).all()  # the input is not modified
    nothing = apply_postprocessing(seg, {}, LABELS)
    assert (nothing == seg).all()


def test_region_rule_moves_voxels_to_the_enclosing_region():
    seg = np.zeros((8, 16, 16), dtype=np.uint8)
    seg[1:7, 1:15, 1:15] = 1  # edema (whole tumour)
    seg[2:6, 2:7, 2:7] = 2  # big core ...
    seg[3:5, 3:5, 3:5] = 3  # ... with enhancing inside
    seg[3, 10:12, 10:12] = 3  # a second, smaller enhancing-only core
    core = apply_postprocessing(seg, {"keep_largest_per_class": ["(2, 3)"]}, BRATS)
    assert (core[3, 10:12, 10:12] == 1).all()  # left the core, still whole tumour
    assert (core[3:5, 3:5, 3:5] == 3).all() and (core[2:6, 2:7, 2:7] >= 2).all()
    enhancing = apply_postprocessing(seg, {"keep_largest_per_class": ["3"]}, BRATS)
    assert (enhancing[3, 10:12, 10:12] == 2).all()  # left enhancing, still core
    assert (enhancing[3:5, 3:5, 3:5] == 3).all()
    whole = np.zeros((8, 16, 16), dtype=np.uint8)
    whole[0:4, 0:4, 0:4] = 1
    whole[7, 15, 15] = 2
    assert apply_postprocessing(whole, {"keep_largest_per_class": ["(1, 2, 3)"]}, BRATS)[7, 15, 15] == 0
    overlapping = LabelManager({"background": 0, "a": [1, 2], "b": [2, 3]}, [1, 3])
    two = np.zeros((4, 8, 8), dtype=np.uint8)
    two[0:2, 0:4, 0:4] = 3
    two[3, 6:8, 6:8] = 2
    out = apply_postprocessing(two, {"keep_largest_per_class": ["(2, 3)"]}, overlapping)
    assert out[3, 6:8, 6:8].max() == 0  # no region encloses (2, 3): background


def test_checks_and_loading(tmp_path):
    with pytest.raises(InputError, match="unknown keys"):
        check_postprocessing({"keep_largest_foregroud": True}, LABELS)
    with pytest.raises(InputError, match="among"):
        check_postprocessing({"keep_largest_per_class": ["7"]}, LABELS)
    with pytest.raises(InputError, match="true or false"):
        check_postprocessing({"keep_largest_foreground": "yes"}, LABELS)
    bad = tmp_path / "postprocessing.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="postprocessing.json: not valid JSON"):
        load_postprocessing(bad, LABELS)
    bad.write_text(json.dumps({"keep_largest_per_class": ["(2, 3)"]}))
    assert load_postprocessing(bad, BRATS) == {"keep_largest_foreground": False,
                                               "keep_largest_per_class": ["(2, 3)"]}
