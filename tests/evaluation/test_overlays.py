"""Overlay pictures: a real PNG of the chosen slices."""

from __future__ import annotations

import numpy as np
import pytest

from segformer3d_auto.evaluation.overlays import save_overlay, slices_with_most_foreground


def test_slices_with_most_foreground() -> None:
    seg = np.zeros((10, 8, 8), dtype=np.uint8)
    seg[2, :4] = 1
    seg[7] = 2
    seg[5, :1] = 1
    assert slices_with_most_foreground(seg, 2) == [2, 7]
    assert slices_with_most_foreground(np.zeros((10, 4, 4)), 3) == [0, 4, 9]


def test_save_overlay_writes_a_png(tmp_path) -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(size=(6, 32, 32)).astype(np.float32)
    ref = np.zeros((6, 32, 32), dtype=np.uint8)
    ref[2:4, 8:20, 8:20] = 1
    pred = np.roll(ref, 2, axis=2)
    path = save_overlay(image, ref, pred, tmp_path / "sub" / "case.png", title="case")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["case.png"]
    with pytest.raises(ValueError, match="same shape"):
        save_overlay(image, ref[:3], pred, tmp_path / "x.png")
