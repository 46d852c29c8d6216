"""``report.html``: one self-contained page per prediction or evaluation run (images inline, no network).

The prediction page lists the flagged cases first with their reasons, then every case with three slices (image,
image with the prediction, and the entropy map where it was saved), its predicted volumes per class against the
training range, and the fold disagreement. The evaluation page (beside ``summary.json``) lists Dice and HD95 per
case and class, worst case first, with reference and prediction side by side for the worst cases.
Pictures are PNGs drawn with numpy (``report_pictures.py``) and embedded as base64 ``data:`` URIs.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segformer3d_auto.atomic import atomic_path, read_json
from segformer3d_auto.evaluation.overlays import slices_with_most_foreground
from segformer3d_auto.inference.report_pictures import grey, heat, mosaic, png_data_uri, with_labels

STYLE = """body{font-family:sans-serif;margin:1.5em;color:#222}h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;margin:.4em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}
th{background:#f0f0f0}td.l,th.l{text-align:left}.flag{background:#fde2e2}.ok{background:#e6f4e6}
.case{border:1px solid #ddd;padding:.6em;margin:.8em 0}.case.flagged{border:2px solid #c33}
ul.reasons{color:#a00;margin:.3em 0}img{max-width:100%;image-rendering:pixelated}figure{margin:.4em 0}
figcaption{font-size:.85em;color:#555}"""
MAX_EVALUATION_PICTURES = 6


def overlay_picture(image: np.ndarray, seg: np.ndarray, entropy: np.ndarray | None,
                    second: np.ndarray | None = None, names: Sequence[str] = ("image", "prediction")
                    ) -> tuple[np.ndarray, str]:
    """Three slices (most foreground) in rows: image, image + labels, and the entropy map or a second label map.

    Returns the picture (uint8 RGB) and a caption naming its columns and slices.
    """
    slices = slices_with_most_foreground(seg if second is None or seg.any() else second)
    columns = [names[0], names[1]] + (["entropy"] if entropy is not None else []) + \
        (["prediction"] if second is not None else [])
    low, high = np.percentile(image, [1, 99]) if image.size else (0.0, 1.0)
    label_for = {names[1]: seg, **({"prediction": second} if second is not None else {})}
    tiles = []
    for z in slices:
        base = grey(image[z], float(low), float(high) if high > low else float(low) + 1.0)
        row = []
        for col, name in enumerate(columns):
            labels = label_for.get(name) if col > 0 else None
            if name == "entropy":
                row.append(heat(entropy[z]))
            else:
                row.append(with_labels(base, labels[z]) if labels is not None else base)
        tiles.append(row)
    caption = f"{' | '.join(columns)}; slices {', '.join(str(z) for z in slices)} along the first axis"
    return mosaic(tiles), caption


def _figure(alt: str, picture: tuple[np.ndarray, str], title: str = "") -> str:
    rgb, caption = picture
    return (f"<figure><img alt='{_e(alt)}' src='{png_data_uri(rgb)}'><figcaption>"
            f"{_e(title + ': ' if title else '')}{_e(caption)}</figcaption></figure>")


def write_prediction_report(report_file: str | Path) -> Path:
    """Write ``report.html`` beside a prediction's ``report.json``; returns its path."""
    from segformer3d_auto.dataset.image_io import read_images, read_segmentation

    report_file = Path(report_file)
    report = read_json(report_file)
    folder = report_file.parent
    cases = report["cases"]
    flagged = [k for k, c in cases.items() if c["flagged"]]
    reference = report.get("reference") or {}
    parts = [f"<h1>Prediction quality report</h1><p>{len(cases)} case(s), <b>{len(flagged)} flagged</b>. "
             f"Model: {_e(report['model_folder'])}. Reference: {_e(reference.get('source', 'none'))} "
             f"({reference.get('cases', 0)} training cases).</p>"]
    if flagged:
        parts.append("<h2>Flagged cases</h2><table><tr><th class=l>case</th><th class=l>reasons</th></tr>" + "".join(
            f"<tr class=flag><td class=l><a href='#{_e(k)}'>{_e(k)}</a></td>"
            f"<td class=l>{'<br>'.join(_e(r) for r in cases[k]['reasons'])}</td></tr>" for k in flagged) + "</table>")
    parts.append(_volume_section(cases, reference.get("volumes_ml", {}),
                                 reference.get("prediction", {}).get("volumes_ml", {})))
    parts.append("<h2>Cases</h2>")
    for key, case in cases.items():
        picture = ""
        label_map = folder / case["label_map"]
        images = [Path(p) for p in case.get("images", [])]
        if label_map.is_file() and images and all(p.is_file() for p in images[:1]):
            image, _ = read_images(images[:1])
            seg, _ = read_segmentation(label_map)
            entropy = None
            if case.get("entropy_map") and (folder / case["entropy_map"]).is_file():
                entropy = read_images([folder / case["entropy_map"]])[0][0]
            picture = _figure(f"{key} slices", overlay_picture(image[0], seg, entropy))
        dice = case["prediction"].get("fold_dice", {})
        dice_table = ("<table><tr><th class=l>fold agreement</th>" + "".join(f"<th>{_e(n)}</th>" for n in dice) +
                      "</tr><tr><td class=l>mean pairwise Dice</td>" + "".join(
                          f"<td>{_num(v, 3)}</td>" for v in dice.values()) + "</tr></table>") if dice else \
            "<p>one fold: no fold agreement measured</p>"
        reasons = "".join(f"<li>{_e(r)}</li>" for r in case["reasons"])
        parts.append(f"<div class='case{' flagged' if case['flagged'] else ''}' id='{_e(key)}'>"
                     f"<h3>{_e(key)} {'(flagged)' if case['flagged'] else ''}</h3>"
                     f"{f'<ul class=reasons>{reasons}</ul>' if reasons else ''}"
                     f"<p>input: {'<br>'.join(_e(p) for p in case['input_files'])}<br>mean entropy in the predicted "
                     f"foreground: {_num(case['prediction'].get('mean_entropy_foreground'), 3)}</p>"
                     f"{dice_table}{picture}</div>")
    return _write_page("Prediction quality report", parts, report_file.with_suffix(".html"))


def write_evaluation_report(summary_file: str | Path, names: Mapping[str, str] | None = None) -> Path:
    """Write ``report.html`` beside an evaluation's ``summary.json``: Dice/HD95 per case, worst first."""
    from segformer3d_auto.dataset.image_io import read_segmentation

    summary_file = Path(summary_file)
    summary = read_json(summary_file)
    names = dict(names or {})
    per_case = summary["metric_per_case"]
    keys = list(summary["mean"])

    def score(entry: Mapping[str, Any]) -> float:
        values = [entry["metrics"][k]["Dice"] for k in keys if _finite(entry["metrics"][k]["Dice"])]
        return float(np.mean(values)) if values else math.inf

    ordered = sorted(per_case, key=score)
    head = "".join(f"<th>{_e(names.get(k, k))} Dice</th><th>HD95 mm</th>" for k in keys)
    rows = []
    for entry in ordered:
        cells = "".join(f"<td>{_num(entry['metrics'][k]['Dice'], 4)}</td><td>{_num(entry['metrics'][k]['HD95'], 2)}"
                        "</td>" for k in keys)
        rows.append(f"<tr><td class=l>{_e(Path(entry['prediction_file']).name)}</td><td>{_num(score(entry), 4)}"
                    f"</td>{cells}</tr>")
    means = "".join(f"<td>{_num(summary['mean'][k]['Dice'], 4)}</td><td>{_num(summary['mean'][k]['HD95'], 2)}</td>"
                    for k in keys)
    parts = [f"<h1>Evaluation</h1><p>{len(per_case)} case(s); mean foreground Dice "
             f"{_num(summary['foreground_mean'].get('Dice'), 4)}. Worst cases first.</p>",
             f"<table><tr><th class=l>case</th><th>mean Dice</th>{head}</tr>{''.join(rows)}"
             f"<tr><th class=l>mean</th><td></td>{means}</tr></table>", "<h2>Worst cases</h2>"]
    for entry in ordered[:MAX_EVALUATION_PICTURES]:
        reference_file, prediction_file = Path(entry["reference_file"]), Path(entry["prediction_file"])
        if reference_file.is_file() and prediction_file.is_file():
            reference, _ = read_segmentation(reference_file)
            prediction, _ = read_segmentation(prediction_file)
            title = f"{prediction_file.name}: mean Dice {_num(score(entry), 3)}"
            picture = overlay_picture(reference.astype(np.float32), reference, None, second=prediction,
                                      names=("labels", "reference"))
            parts.append(_figure(prediction_file.name, picture, title))
    return _write_page("Evaluation report", parts, summary_file.with_name("report.html"))


def _volume_section(cases: Mapping[str, Any], labels: Mapping[str, Any], predicted: Mapping[str, Any]) -> str:
    """Predicted volumes per case and class; red where outside the range the volume check allows."""
    from segformer3d_auto.inference.quality_report import VOLUME_FACTOR

    names = list(next(iter(cases.values()))["prediction"]["volumes_ml"]) if cases else []
    if not names:
        return ""
    compared = predicted or labels
    head = "".join(f"<th>{_e(n)} ml</th>" for n in names)
    rows = []
    for title, source in (("training labels", labels), ("model on training cases", predicted)):
        if source:
            rows.append(f"<tr><td class=l><i>{title}</i></td>" + "".join(
                f"<td>{_num(source[n]['min'], 1)} .. {_num(source[n]['max'], 1)}</td>" if n in source
                else "<td>-</td>" for n in names) + "</tr>")
    for key, case in cases.items():
        cells = []
        for n in names:
            volume = case["prediction"]["volumes_ml"][n]
            inside = n not in compared or \
                compared[n]["min"] / VOLUME_FACTOR <= volume <= compared[n]["max"] * VOLUME_FACTOR
            cells.append(f"<td class={'ok' if inside else 'flag'}>{_num(volume, 1)}</td>")
        rows.append(f"<tr><td class=l>{_e(key)}</td>{''.join(cells)}</tr>")
    basis = "the model's volumes on its training cases" if predicted else "the training labels' volumes"
    return (f"<h2>Predicted volumes</h2><p>Red: outside [min / {VOLUME_FACTOR:g}, max x {VOLUME_FACTOR:g}] of "
            f"{basis}.</p><table><tr><th class=l>case</th>{head}</tr>{''.join(rows)}</table>")


def _write_page(title: str, parts: Sequence[str], path: Path) -> Path:
    page = (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{_e(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n")
    with atomic_path(path, suffix=".html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _num(value: Any, digits: int) -> str:
    return f"{value:.{digits}f}" if _finite(value) else "n/a"
