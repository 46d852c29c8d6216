"""report.html: one self-contained page, flagged cases first, parsed with html.parser."""

from __future__ import annotations

import json
from html.parser import HTMLParser


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
