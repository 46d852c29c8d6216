from __future__ import annotations

import numpy as np

from segformer3d_auto.dataset.dataset_json import list_training_cases, load_dataset_json
from segformer3d_auto.dataset.synthetic import make_ct_dataset, make_thin_dataset
from segformer3d_auto.planners.structure_fingerprint import candidate_strides, structure_fingerprint


def test_candidate_strides_follow_the_topology():
    assert candidate_strides([1.0, 1.0, 1.0], [48, 48, 48]) == {"4": [4, 4, 4], "2": [2, 2, 2], "1": [1, 1, 1]}
    # thick slices are not strided by the first embedding
    assert candidate_strides([5.0, 0.8, 0.8], [18, 70, 70])["4"] == [1, 4, 4]


def test_thin_structures_are_capped_at_stride_4_and_not_at_stride_2(tmp_path):
    folder = make_thin_dataset(tmp_path, num_cases=1, shape=(24, 24, 24), num_test_cases=0)
    dj = load_dataset_json(folder / "dataset.json")
    labels = [c.label for c in list_training_cases(folder, dj)]
    out = structure_fingerprint(labels, dj, [1.0, 1.0, 1.0], [24, 24, 24])
    ceilings = out["output_grid_ceiling"]
    assert set(ceilings) == {"4", "2", "1"} and out["structure_sample_cases"] == 1
    assert ceilings["4"]["mean"] < 0.9 < ceilings["2"]["mean"] and ceilings["1"]["mean"] == 1.0
    assert set(ceilings["4"]["per_class"]) == {"ribbon", "vessel"}
    assert out["structure_thickness_mm"]["vessel"]["p50_mm"] <= 3.0


def test_large_organs_are_not_capped(tmp_path):
    folder = make_ct_dataset(tmp_path, num_cases=1, shape=(8, 32, 32), num_test_cases=0)
    dj = load_dataset_json(folder / "dataset.json")
    labels = [c.label for c in list_training_cases(folder, dj)]
    out = structure_fingerprint(labels, dj, [5.0, 0.8, 0.8], [8, 32, 32])
    assert out["output_grid_ceiling"]["4"]["stride"] == [1, 4, 4]
    assert np.mean(list(out["output_grid_ceiling"]["4"]["per_class"].values())) > 0.95
    assert out["structure_thickness_mm"]["liver"]["p50_mm"] > 5.0
