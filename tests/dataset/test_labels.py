from __future__ import annotations

import numpy as np
import pytest

from segformer3d_auto.dataset.labels import LabelManager, check_labels

BRATS = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]}


def test_plain_labels():
    lm = LabelManager({"background": 0, "liver": 1, "kidney": 2})
    assert not lm.has_regions and not lm.has_ignore_label and lm.ignore_label is None
    assert lm.foreground_labels == [1, 2]
    assert lm.classes_or_regions == [1, 2]
    assert lm.names == ["liver", "kidney"]
    assert lm.num_segmentation_heads == 3
    assert lm.all_labels == [0, 1, 2]
    assert lm.foreground_regions == []


def test_regions():
    lm = LabelManager(BRATS, regions_class_order=[1, 2, 3])
    assert lm.has_regions
    assert lm.foreground_regions == [(1, 2, 3), (2, 3), (3,)]
    assert lm.classes_or_regions == [(1, 2, 3), (2, 3), (3,)]
    assert lm.names == ["whole tumor", "tumor core", "enhancing tumor"]
    assert lm.foreground_labels == [1, 2, 3]
    assert lm.num_segmentation_heads == 3
    assert lm.all_labels == [0, 1, 2, 3]


def test_from_dataset_json_with_ignore_label():
    lm = LabelManager.from_dataset_json({"labels": {"background": 0, "a": 1, "ignore": 2}})
    assert lm.has_ignore_label and lm.ignore_label == 2
    assert lm.foreground_labels == [1]
    assert lm.num_segmentation_heads == 2
    assert lm.all_labels == [0, 1, 2]
    onehot = lm.to_onehot(np.array([0, 1, 2]))
    assert onehot.tolist() == [[True, False, False], [False, True, False]]  # ignore: no channel set


def test_onehot_labels_and_regions():
    seg = np.array([[0, 1], [2, 3]])
    lm = LabelManager({"background": 0, "a": 1, "b": 2, "c": 3})
    onehot = lm.to_onehot(seg)
    assert onehot.dtype == bool and onehot.shape == (4, 2, 2)
    assert (onehot.sum(0) == 1).all() and onehot[3, 1, 1] and onehot[0, 0, 0]
    regions = LabelManager(BRATS, [1, 2, 3]).to_onehot(seg)
    assert regions.shape == (3, 2, 2)
    assert regions[0].tolist() == [[False, True], [True, True]]
    assert regions[1].tolist() == [[False, False], [True, True]]
    assert regions[2].tolist() == [[False, False], [False, True]]


def test_single_value_lists_are_plain_labels():
    lm = LabelManager({"background": 0, "a": [1], "b": 2})
    assert not lm.has_regions and lm.foreground_labels == [1, 2] and lm.names == ["a", "b"]


@pytest.mark.parametrize("labels,rco,message", [
    ({"a": 1, "b": 2}, None, "no background"),
    ({"background": 0, "a": 1, "b": 1}, None, "unique"),
    ({"background": 0, "a": 1, "b": 3}, None, "consecutive"),
    ({"background": 0, "a": "1"}, None, "must be an int"),
    ({"background": 0, "a": 1.0}, None, "must be an int"),
    ({"background": 0, "a": True}, None, "must be an int"),
    ({"background": 0, "a": -1}, None, "negative"),
    ({"background": 0, "r": [1, 2]}, None, "regions_class_order' is missing"),
    ({"background": 0, "r": [1, 2], "s": [2]}, [1], "has 1 entries but there are 2 regions"),
    ({"background": 0, "r": [0, 1]}, [1], "background value 0"),
    ({"background": 0, "a": 1, "ignore": 1}, None, "ignore label 1 must be higher"),
    ({"background": 0, "a": 1, "ignore": [2, 3]}, None, "'ignore' must be an int"),
    ({}, None, "non-empty"),
])
def test_bad_labels(labels, rco, message):
    assert message in check_labels(labels, rco)
    with pytest.raises(ValueError, match=message.replace("'", ".")):
        LabelManager(labels, rco)


def test_repr_mentions_kind():
    assert "regions" in repr(LabelManager(BRATS, [1, 2, 3]))
