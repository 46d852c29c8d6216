"""Cross-validation splits: seeded, disjoint, complete, reused when present."""

from __future__ import annotations

import pytest

from segformer3d_auto.atomic import write_json
from segformer3d_auto.errors import InputError
from segformer3d_auto.planners.splits import load_or_create_splits, make_splits


def test_five_disjoint_folds_cover_every_case() -> None:
    ids = [f"case_{i:02d}" for i in range(12)]
    splits = make_splits(ids)
    assert len(splits) == 5
    vals = [c for s in splits for c in s["val"]]
    assert sorted(vals) == ids
    for s in splits:
        assert set(s["train"]) | set(s["val"]) == set(ids) and not set(s["train"]) & set(s["val"])
    assert make_splits(ids) == splits


def test_fewer_cases_than_folds() -> None:
    assert len(make_splits(["a", "b", "c"])) == 3
    with pytest.raises(ValueError, match="at least 2 cases"):
        make_splits(["a"])


def test_existing_splits_are_kept_and_checked(tmp_path) -> None:
    path = tmp_path / "splits_final.json"
    mine = [{"train": ["a"], "val": ["b"]}, {"train": ["b"], "val": ["a"]}]
    write_json(mine, path)
    assert load_or_create_splits(path, ["a", "b"]) == mine
    write_json([{"train": ["a"], "val": ["zz"]}], path)
    with pytest.raises(InputError, match="zz"):
        load_or_create_splits(path, ["a", "b"])
