"""The whole first stage: integrity check, fingerprint, plan, splits, preprocessing, for one dataset.

Nothing is written under the preprocessed root until the dataset has passed the check and every case has been
read for the fingerprint, so a dataset with problems leaves no trace there. Every file is written atomically and
finished cases are skipped, so a killed run, re-run, completes.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from segformer3d_auto.atomic import atomic_path, read_json, write_json
from segformer3d_auto.dataset.dataset_json import list_training_cases, load_dataset_json
from segformer3d_auto.dataset.integrity import check_dataset
from segformer3d_auto.errors import InputError
from segformer3d_auto.parallel import CaseMap
from segformer3d_auto.paths import preprocessed_root, raw_root, resolve_dataset_name
from segformer3d_auto.planners.fingerprint import extract_fingerprint
from segformer3d_auto.planners.planner import CONFIGURATION, plan_experiment
from segformer3d_auto.planners.splits import load_or_create_splits
from segformer3d_auto.planners.structure_fingerprint import structure_fingerprint
from segformer3d_auto.preprocessing.dataset_preprocessor import preprocess_dataset


def plan_and_preprocess(
    dataset: str | int,
    num_processes: int = 1,
    verify: bool = False,
    gpu_memory_gb: float = 8.0,
    model: str = "segformer3d_b0",
    clean: bool = False,
    preprocess: bool = True,
    num_parts: int = 1,
    part_id: int = 0,
    output_resolution: str = "auto",
) -> str:
    """Run the first stage for ``dataset`` (ID or name); returns a short human-readable report.

    With ``num_parts`` > 1 only the preprocessing of the cases ``part_id::num_parts`` (sorted) runs, with the
    plans an earlier run wrote (``preprocess=False`` makes one: check, fingerprint, plan and splits stay one
    step), so that the parts can run at the same time, e.g. as an array job on a cluster. ``output_resolution``
    overrides the planner's choice of output grid (``"auto"``, ``"paper"``, ``"stride2"``, ``"refine"``).

    Raises:
        InputError: for an unknown dataset or any problem of the raw data (all problems, one line each), or a
            part whose dataset has no plans yet.
    """
    if num_parts < 1 or not 0 <= part_id < num_parts:
        raise ValueError(f"need num_parts >= 1 and 0 <= part_id < num_parts, got {num_parts} and {part_id}")
    start = time.perf_counter()
    name = resolve_dataset_name(dataset, roots=[raw_root()])
    if num_parts > 1:
        return _preprocess_part(name, num_parts, part_id, num_processes, start)
    raw = raw_root() / name
    dataset_json_file = raw / "dataset.json"
    if not dataset_json_file.exists():
        raise InputError(f"{dataset_json_file}: missing")
    dataset_json = load_dataset_json(dataset_json_file)
    problems = check_dataset(raw, dataset_json, verify=verify, num_processes=num_processes)
    if problems:
        raise InputError("\n".join(problems))
    cases = list_training_cases(raw, dataset_json)

    out = preprocessed_root() / name
    if clean:
        for item in ("dataset_fingerprint.json", "plans.json", CONFIGURATION, "gt_segmentations"):
            path = out / item
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    timings = {}
    with CaseMap(num_processes) as pool:
        t = time.perf_counter()
        fingerprint_file = out / "dataset_fingerprint.json"
        if fingerprint_file.exists():
            fingerprint = read_json(fingerprint_file)
        else:
            fingerprint = extract_fingerprint(cases, pool.bind("fingerprint"))
        if "output_grid_ceiling" not in fingerprint:
            fingerprint.update(structure_fingerprint(
                [c.label for c in cases], dataset_json, np.median(fingerprint["spacings"], axis=0),
                np.median(fingerprint["shapes_after_crop"], axis=0), pool.bind("structure")))
        timings["fingerprint"] = time.perf_counter() - t

        t = time.perf_counter()
        plans = plan_experiment(fingerprint, dataset_json, name, gpu_memory_gb=gpu_memory_gb, model=model,
                                output_resolution=output_resolution)
        timings["plan"] = time.perf_counter() - t

        out.mkdir(parents=True, exist_ok=True)
        write_json(dataset_json, out / "dataset.json")
        write_json(fingerprint, fingerprint_file)
        write_json(plans, out / "plans.json")
        splits = load_or_create_splits(out / "splits_final.json", [c.identifier for c in cases])

        done = []
        if preprocess:
            t = time.perf_counter()
            done = preprocess_dataset(cases, plans, dataset_json, out / CONFIGURATION, pool.bind("preprocess"))
            _copy_ground_truth(cases, out / "gt_segmentations", dataset_json["file_ending"])
            timings["preprocess"] = time.perf_counter() - t

    config = plans["configurations"][CONFIGURATION]
    network = config["network"]
    lines = [
        f"{name}: {len(cases)} cases, {len(splits)} folds -> {out}",
        f"  spacing {_fmt(config['spacing'])} mm (transpose {plans['transpose_forward']}), "
        f"median shape {_fmt(config['median_image_size_in_voxels'])}",
        f"  {network['name']}: patch {_fmt(config['patch_size'])}, batch {config['batch_size']}, "
        f"first stride {_fmt(network['kwargs']['patch_stride'][0])}"
        + (f" + refinement head ({network['kwargs']['refine_channels']} channels)"
           if network["kwargs"].get("refine_channels") else "") + ", "
        f"memory {config['memory']['estimated_gb']:.2f} of {config['memory']['target_gb']:.1f} GB",
        f"  normalization {', '.join(config['normalization_schemes'])}",
        *structure_lines(fingerprint),
        f"  output resolution: {config['output_resolution']['chosen']} ({config['output_resolution']['reason']})",
    ]
    if preprocess:
        lines.append(f"  preprocessed {len(done)} cases now ({len(cases) - len(done)} were done already)")
    lines.append("  time: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
                 + f", total {time.perf_counter() - start:.1f} s")
    return "\n".join(lines)


def _preprocess_part(name: str, num_parts: int, part_id: int, num_processes: int, start: float) -> str:
    """Preprocess one part of the cases of a planned dataset (see :func:`plan_and_preprocess`)."""
    out = preprocessed_root() / name
    for required in ("plans.json", "dataset.json", "dataset_fingerprint.json"):
        if not (out / required).is_file():
            raise InputError(f"{out / required}: missing; plan the dataset once before its parts "
                             f"(sf3d_plan_and_preprocess -d {name} --no-preprocess)")
    plans, dataset_json = read_json(out / "plans.json"), read_json(out / "dataset.json")
    cases = list_training_cases(raw_root() / name, dataset_json)
    part = sorted(cases, key=lambda c: c.identifier)[part_id::num_parts]
    with CaseMap(num_processes) as pool:
        done = preprocess_dataset(part, plans, dataset_json, out / CONFIGURATION, pool.bind("preprocess"))
    _copy_ground_truth(part, out / "gt_segmentations", dataset_json["file_ending"])
    return (f"{name}: part {part_id} of {num_parts}: {len(part)} of {len(cases)} cases -> {out}\n"
            f"  preprocessed {len(done)} cases now ({len(part) - len(done)} were done already), "
            f"{time.perf_counter() - start:.1f} s")


def structure_lines(fingerprint: dict) -> list[str]:
    """The fingerprint's structure thickness and output-grid ceilings, a few lines for the report."""
    thickness = fingerprint.get("structure_thickness_mm", {})
    ceilings = fingerprint.get("output_grid_ceiling", {})
    lines = []
    if thickness:
        lines.append("  thickness (mm, p5/p50): " + ", ".join(
            f"{name} {v['p05_mm']:g}/{v['p50_mm']:g}" for name, v in thickness.items()))
    for entry in ceilings.values():
        lines.append(f"  output grid stride {_fmt(entry['stride'])}: ceiling mean {entry['mean']:.3f} ("
                     + ", ".join(f"{name} {v:.3f}" for name, v in entry["per_class"].items()) + ")")
    return lines


def _copy_ground_truth(cases, folder: Path, file_ending: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for case in cases:
        target = folder / f"{case.identifier}{file_ending}"
        if not target.exists():
            with atomic_path(target, suffix=file_ending) as tmp:
                shutil.copyfile(case.label, tmp)


def _fmt(values) -> str:
    return "x".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)
