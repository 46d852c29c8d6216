"""report.html: one self-contained page, flagged cases first, parsed with html.parser."""

from __future__ import annotations

import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

from segformer3d_auto.dataset.image_io import write_segmentation


class _Page(HTMLParser):
    """Collects image sources, external references, the flagged table rows and case headings in order."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.external: list[str] = []
        self.headings: list[str] = []
        self.flag_rows = 0
        self._in_h3 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img":
            self.images.append(values.get("src") or "")
        for key in ("src", "href"):
            value = values.get(key) or ""
            if value and not value.startswith(("data:", "#")):
                self.external.append(value)
        if tag in ("script", "link"):
            self.external.append(tag)
        if tag == "tr" and values.get("class") == "flag":
            self.flag_rows += 1
        self._in_h3 = tag == "h3"

    def handle_data(self, data: str) -> None:
        if self._in_h3 and data.strip():
            self.headings.append(data.strip())
            self._in_h3 = False


def test_prediction_page_is_self_contained_and_lists_flagged_cases_first(ct_quality_run: dict) -> None:
    out = ct_quality_run["out"]
    report = json.loads((out / "report.json").read_text())
    page = _Page()
    page.feed((out / "report.html").read_text(encoding="utf-8"))
    assert page.external == []
    assert len(page.images) == report["num_cases"]
    assert all(src.startswith("data:image/png;base64,") and len(src) > 1000 for src in page.images)
    assert page.flag_rows == report["num_flagged"] == 3
    flagged = {k for k, c in report["cases"].items() if c["flagged"]}
    order = [h.split()[0] for h in page.headings]
    assert set(order[:3]) == flagged and len(order) == 6
    assert all("(flagged)" in h for h in page.headings[:3]) and not any("(flagged)" in h for h in page.headings[3:])


class _Table(HTMLParser):
    """The text of each table row's first cell, and the images."""

    def __init__(self) -> None:
        super().__init__()
        self.first_cells: list[str] = []
        self.images: list[str] = []
        self._cell = 0
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self._cell = 0
        elif tag in ("td", "th"):
            self._cell += 1
            self._in_cell = self._cell == 1
        elif tag == "img":
            self.images.append(dict(attrs).get("src") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell and data.strip():
            self.first_cells.append(data.strip())


def test_evaluation_page_lists_the_worst_case_first(tmp_path: Path) -> None:
    props = {"spacing": [2.0, 1.0, 1.0], "origin": [0.0, 0.0, 0.0], "direction": [1, 0, 0, 0, 1, 0, 0, 0, 1],
             "shape": [6, 10, 10]}
    reference = np.zeros((6, 10, 10), np.uint8)
    reference[1:5, 2:8, 2:8] = 1
    for name, missing in (("good", 0), ("worst", 3), ("middle", 1)):
        prediction = reference.copy()
        prediction[1:1 + missing] = 0
        write_segmentation(reference, props, tmp_path / "gt" / f"{name}.nii.gz")
        write_segmentation(prediction, props, tmp_path / "pred" / f"{name}.nii.gz")
    (tmp_path / "dataset.json").write_text(json.dumps({"channel_names": {"0": "MRI"}, "labels": {
        "background": 0, "tumour": 1}, "numTraining": 3, "file_ending": ".nii.gz"}))
    result = subprocess.run([sys.executable, "-m", "segformer3d_auto.cli.evaluate", str(tmp_path / "gt"),
                             str(tmp_path / "pred"), "-djfile", str(tmp_path / "dataset.json"), "-np", "1"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    page = _Table()
    page.feed((tmp_path / "pred" / "report.html").read_text(encoding="utf-8"))
    rows = [cell for cell in page.first_cells if cell.endswith(".nii.gz")]
    assert rows == ["worst.nii.gz", "middle.nii.gz", "good.nii.gz"]
    assert len(page.images) == 3 and all(src.startswith("data:image/png;base64,") for src in page.images)
