"""The helpers that let the xdist workers of one test run build the shared data once between them."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.shared_data import built_once, exclusive


def _writer(calls: list[str], name: str):
    def build(folder: Path) -> None:
        calls.append(name)
        (folder / "data.txt").write_text(name)

    return build


def test_the_second_caller_reuses_what_the_first_built(tmp_path: Path) -> None:
    calls: list[str] = []
    folder = built_once(tmp_path / "shared", _writer(calls, "first"))
    assert built_once(tmp_path / "shared", _writer(calls, "second")) == folder
    assert calls == ["first"] and (folder / "data.txt").read_text() == "first"


def test_a_failed_build_is_started_again_from_an_empty_folder(tmp_path: Path) -> None:
    def fail(folder: Path) -> None:
        (folder / "half.txt").write_text("half written")
        raise RuntimeError("build failed")

    with pytest.raises(RuntimeError, match="build failed"):
        built_once(tmp_path / "shared", fail)
    calls: list[str] = []
    folder = built_once(tmp_path / "shared", _writer(calls, "retry"))
    assert calls == ["retry"] and sorted(p.name for p in folder.iterdir()) == ["data.txt"]


def test_a_caller_waits_for_the_lock_holder_and_then_reuses_its_build(tmp_path: Path) -> None:
    """Another thread (another open file, as another worker's process would have) blocks until the build is done."""
    calls: list[str] = []
    about_to_ask = threading.Event()

    def other_worker() -> None:
        about_to_ask.set()
        built_once(tmp_path / "shared", _writer(calls, "other"))

    thread = threading.Thread(target=other_worker)
    with exclusive(tmp_path, "shared"):
        thread.start()
        assert about_to_ask.wait(timeout=60)
        # without the lock it would build and return at once; with it, it is still waiting a second later (a
        # loaded machine can only make a broken lock pass, never a working one fail)
        thread.join(timeout=1.0)
        assert thread.is_alive() and not calls
        (tmp_path / "shared").mkdir()
        _writer(calls, "holder")(tmp_path / "shared")
        (tmp_path / ".shared.done").touch()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert calls == ["holder"]
