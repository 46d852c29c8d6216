from __future__ import annotations

import pytest

from segformer3d_auto.model import create_model
from segformer3d_auto.planners import output_resolution
from segformer3d_auto.planners.memory import estimate_training_memory
from segformer3d_auto.planners.planner import plan_experiment, plan_network

DATASET_JSON = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "a": 1, "b": 2}, "file_ending": ".nii.gz",
                "numTraining": 4}


def _fingerprint(stride4: float, stride2: float, full: float = 1.0) -> dict:
    levels = {"4": ([4, 4, 4], stride4), "2": ([2, 2, 2], stride2), "1": ([1, 1, 1], full)}
    return {
        "spacings": [[1.0, 1.0, 1.0]] * 4,
        "shapes_after_crop": [[40, 40, 40]] * 4,
        "median_relative_size_after_cropping": 1.0,
        "foreground_intensity_properties_per_channel": {"0": {}},
        "output_grid_ceiling": {k: {"stride": s, "mean": m, "per_class": {"a": m, "b": m}}
                                for k, (s, m) in levels.items()},
    }


def _config(fingerprint: dict, gpu_memory_gb: float = 8.0, output_resolution: str = "auto") -> dict:
    plans = plan_experiment(fingerprint, DATASET_JSON, "Dataset999_X", gpu_memory_gb,
                            output_resolution=output_resolution)
    return plans["configurations"]["3d_fullres"]


def test_where_the_paper_grid_draws_the_structures_the_refinement_head_is_added():
    # ceiling 0.99: the grid draws the structures, the head sharpens their boundaries (cheaper than 1.5x)
    config = _config(_fingerprint(0.99, 1.0))
    record = config["output_resolution"]
    assert record["chosen"] == "refine"
    rows = {c["name"]: c for c in record["candidates"]}
    assert rows["refine"]["training_gflops_per_voxel"] <= 1.5 * rows["paper"]["training_gflops_per_voxel"]
    # the paper's network, same patch and batch, with the head on top
    paper = plan_network([1.0, 1.0, 1.0], [40, 40, 40], 1, 3, 4)
    kwargs = dict(config["network"]["kwargs"])
    assert kwargs.pop("refine_channels") > 0
    assert kwargs == paper["network"]["kwargs"]
    assert config["patch_size"] == paper["patch_size"] and config["batch_size"] == paper["batch_size"]


def test_a_grid_that_loses_nothing_keeps_the_paper_network_unchanged():
    config = _config(_fingerprint(0.9996, 1.0))
    assert config["output_resolution"]["chosen"] == "paper"
    paper = plan_network([1.0, 1.0, 1.0], [40, 40, 40], 1, 3, 4)
    assert config["network"] == paper["network"] and config["patch_size"] == paper["patch_size"]
    assert config["batch_size"] == paper["batch_size"]
    assert "refine_channels" not in config["network"]["kwargs"]


def test_a_head_costlier_than_its_bound_keeps_the_paper_network(monkeypatch):
    # the head costs about 1.3x the paper's FLOPs per voxel here; a bound below that refuses it
    monkeypatch.setattr(output_resolution, "REFINE_BOUND", 1.05)
    config = _config(_fingerprint(0.99, 1.0))
    assert config["output_resolution"]["chosen"] == "paper"
    assert "1.05x" in config["output_resolution"]["reason"]
    assert "refine_channels" not in config["network"]["kwargs"]


def test_low_ceiling_chooses_a_finer_output_and_records_every_candidate():
    config = _config(_fingerprint(0.75, 0.99))
    record = config["output_resolution"]
    assert record["chosen"] != "paper"
    names = [c["name"] for c in record["candidates"]]
    assert names == ["paper", "stride2", "refine"]
    for row in record["candidates"]:
        assert {"ceiling_mean", "estimated_gb", "training_gflops_per_voxel", "patch_size", "batch_size"} <= set(row)
    chosen = next(c for c in record["candidates"] if c["name"] == record["chosen"])
    assert chosen["ceiling_mean"] >= 0.98
    kwargs = config["network"]["kwargs"]
    model = create_model(config["network"]["name"], **kwargs)
    # the chosen network really outputs finer than stride 4: a refinement head or a first stride of 2
    assert model.refine is not None or min(model.patch_strides[0]) == 2
    # and the recorded estimate is the counted memory of that network at the planned patch and batch
    estimate = estimate_training_memory(config["network"]["name"], kwargs, config["patch_size"], config["batch_size"])
    assert abs(estimate.total_gb - config["memory"]["estimated_gb"]) < 1e-3


def test_refinement_is_preferred_and_stride2_is_the_fallback():
    # the paper's grid caps the score and both finer candidates reach the tolerance: the head is chosen (it learned
    # more per CPU-second than stride 2 once it had its own learning rate)
    config = _config(_fingerprint(0.75, 0.985))
    assert config["output_resolution"]["chosen"] == "refine"
    assert config["network"]["kwargs"]["refine_channels"] > 0
    assert config["network"]["kwargs"]["patch_stride"][0] == [4, 4, 4]
    # a level-1 ceiling below the tolerance (the rule reads the ceilings, whatever drew them): stride 2 instead
    config = _config(_fingerprint(0.75, 0.985, full=0.95))
    assert config["output_resolution"]["chosen"] == "stride2"
    assert config["network"]["kwargs"]["patch_stride"][0] == [2, 2, 2]
    assert "refine_channels" not in config["network"]["kwargs"]
    # neither reaches it: the highest ceiling, and on a tie the head
    config = _config(_fingerprint(0.75, 0.9, full=0.95))
    assert config["output_resolution"]["chosen"] == "refine"
    config = _config(_fingerprint(0.75, 0.96, full=0.95))
    assert config["output_resolution"]["chosen"] == "stride2"
    config = _config(_fingerprint(0.75, 0.95, full=0.95))
    assert config["output_resolution"]["chosen"] == "refine"


def test_a_named_output_resolution_overrides_the_ceilings():
    # the ceilings would pick a finer output; the user asks for the paper's network
    config = _config(_fingerprint(0.75, 0.985), output_resolution="paper")
    assert config["output_resolution"]["chosen"] == "paper"
    assert config["output_resolution"]["reason"] == "chosen by --output-resolution"
    assert config["network"] == plan_network([1.0, 1.0, 1.0], [40, 40, 40], 1, 3, 4)["network"]
    # a grid that loses nothing would keep the paper's network; the user asks for the refinement head
    config = _config(_fingerprint(0.9996, 1.0), output_resolution="refine")
    assert config["network"]["kwargs"]["refine_channels"] > 0
    with pytest.raises(ValueError, match="output resolution must be one of"):
        _config(_fingerprint(0.99, 1.0), output_resolution="stride8")


def test_never_plans_past_the_memory_target_and_trades_patch_for_resolution():
    config = _config(_fingerprint(0.5, 0.6), gpu_memory_gb=0.15)
    rows = {c["name"]: c for c in config["output_resolution"]["candidates"]}
    assert all(r["estimated_gb"] <= 0.15 for r in rows.values())
    assert config["memory"]["estimated_gb"] <= 0.15
    # the stride-2 network fits the same memory with a smaller patch than the paper's
    assert rows["stride2"]["patch_size"][0] < rows["paper"]["patch_size"][0]


def test_without_ceilings_the_paper_network():
    fingerprint = _fingerprint(0.5, 0.5)
    del fingerprint["output_grid_ceiling"]
    config = _config(fingerprint)
    assert config["output_resolution"]["chosen"] == "paper"
    assert [c["name"] for c in config["output_resolution"]["candidates"]] == ["paper"]
