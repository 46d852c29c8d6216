from __future__ import annotations

import pytest

from segformer3d_auto.dataset.naming import channel_file_name, parse_channel_file_name, visible_files


def test_channel_file_names_round_trip():
    assert channel_file_name("case_01", 3, ".nrrd") == "case_01_0003.nrrd"
    assert parse_channel_file_name("case_01_0003.nrrd", ".nrrd") == ("case_01", 3)
    assert parse_channel_file_name("case_01_003.nrrd", ".nrrd") is None
    assert parse_channel_file_name("case_01_0003.nii.gz", ".nrrd") is None
    assert parse_channel_file_name("_0000.nii.gz", ".nii.gz") is None
    with pytest.raises(ValueError):
        channel_file_name("c", 10000, ".nii")


def test_visible_files_skips_dot_files(tmp_path):
    for name in ("b.nii.gz", "a.nii.gz", "._a.nii.gz", ".tmp"):
        (tmp_path / name).write_text("")
    assert [p.name for p in visible_files(tmp_path)] == ["a.nii.gz", "b.nii.gz"]
