from __future__ import annotations

from pathlib import Path

import pytest

from segformer3d_auto import paths
from segformer3d_auto.errors import InputError


def test_roots_follow_their_variables_at_call_time(sf3d_roots):
    assert paths.raw_root() == sf3d_roots.raw
    assert paths.preprocessed_root() == sf3d_roots.preprocessed
    assert paths.results_root() == sf3d_roots.results


def test_unset_roots_fall_back_to_sf3d_home(tmp_path, monkeypatch):
    for var in ("SF3D_RAW", "SF3D_PREPROCESSED", "SF3D_RESULTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SF3D_HOME", str(tmp_path / "h"))
    assert paths.raw_root() == tmp_path / "h" / "raw"
    assert paths.preprocessed_root() == tmp_path / "h" / "preprocessed"
    monkeypatch.setenv("SF3D_RESULTS", str(tmp_path / "elsewhere"))
    assert paths.results_root() == tmp_path / "elsewhere"
    monkeypatch.delenv("SF3D_HOME")
    assert paths.raw_root() == Path("~/sf3d_data/raw").expanduser()


@pytest.mark.parametrize("given", [501, "501", " 501", "Dataset501_Foo"])
def test_resolve_by_id_or_name(sf3d_roots, given):
    (sf3d_roots.raw / "Dataset501_Foo").mkdir()
    (sf3d_roots.raw / "Dataset502_Bar").mkdir()
    assert paths.resolve_dataset_name(given) == "Dataset501_Foo"


def test_resolve_finds_dataset_in_any_root(sf3d_roots):
    (sf3d_roots.results / "Dataset007_Only").mkdir()
    assert paths.resolve_dataset_name(7) == "Dataset007_Only"
    assert paths.dataset_folder(sf3d_roots.raw, 7) == sf3d_roots.raw / "Dataset007_Only"


def test_unknown_id_lists_existing_datasets(sf3d_roots):
    (sf3d_roots.raw / "Dataset502_Bar").mkdir()
    with pytest.raises(InputError, match=r"dataset 501: no Dataset501_\*.*Dataset502_Bar"):
        paths.resolve_dataset_name(501)


def test_ambiguous_id(sf3d_roots):
    (sf3d_roots.raw / "Dataset501_Foo").mkdir()
    (sf3d_roots.preprocessed / "Dataset501_Other").mkdir()
    with pytest.raises(InputError, match="ambiguous.*Dataset501_Foo.*Dataset501_Other"):
        paths.resolve_dataset_name("501")


def test_same_name_in_several_roots_is_not_ambiguous(sf3d_roots):
    (sf3d_roots.raw / "Dataset501_Foo").mkdir()
    (sf3d_roots.preprocessed / "Dataset501_Foo").mkdir()
    assert paths.resolve_dataset_name(501) == "Dataset501_Foo"


@pytest.mark.parametrize("bad", ["abc", "Dataset501", "DatasetX_Foo", -3, True, 5.0])
def test_malformed_names(sf3d_roots, bad):
    with pytest.raises(InputError):
        paths.resolve_dataset_name(bad)


def test_dataset_folder_prefers_the_given_root(sf3d_roots, tmp_path):
    other = tmp_path / "other"
    (other / "Dataset003_Here").mkdir(parents=True)
    (sf3d_roots.raw / "Dataset003_There").mkdir()
    assert paths.dataset_folder(other, 3) == other / "Dataset003_Here"
    assert paths.dataset_folder(other, "Dataset009_New") == other / "Dataset009_New"


def test_dataset_name_round_trip():
    assert paths.dataset_name(5, "Prostate") == "Dataset005_Prostate"
    assert paths.parse_dataset_name("Dataset1234_A_B") == (1234, "A_B")
    with pytest.raises(ValueError):
        paths.dataset_name(5, "a/b")
    with pytest.raises(ValueError):
        paths.parse_dataset_name("Task05_Prostate")
