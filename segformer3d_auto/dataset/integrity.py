"""The dataset integrity check: everything that would otherwise fail late, deep inside a long run.

Cheap checks read headers only (missing or extra files, dimensionality, shape and geometry agreement between
channels and label, ``numTraining``). ``verify=True`` also reads every voxel: undeclared label values, NaN or
inf, and truncated pixel data, which a header cannot reveal. Each problem is one string
``"<file path>: <problem>"``, so the command-line tools can print them as they are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segformer3d_auto.dataset.dataset_json import CaseFiles, list_training_cases, num_channels
from segformer3d_auto.dataset.image_io import (
    geometry_difference,
    read_image_header,
    read_images,
    read_segmentation,
)
from segformer3d_auto.dataset.labels import LabelManager
from segformer3d_auto.dataset.naming import parse_channel_file_name, visible_files
from segformer3d_auto.errors import InputError
from segformer3d_auto.parallel import CaseMap


def check_dataset(raw_dataset_folder: str | Path, dataset_json: dict, verify: bool = False,
                  num_processes: int = 1) -> list[str]:
    """Find everything wrong with a raw dataset; an empty list means it is usable.

    Args:
        raw_dataset_folder: ``$SF3D_RAW/DatasetXXX_Name``.
        dataset_json: its loaded, validated ``dataset.json`` (``load_dataset_json``).
        verify: also read every voxel of every case (slow; parallel over cases, with a progress bar).
        num_processes: worker processes for ``verify``.

    Returns:
        One ``"<file path>: <problem>"`` string per problem.
    """
    if num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    folder = Path(raw_dataset_folder)
    try:
        cases = list_training_cases(folder, dataset_json)
    except InputError as e:
        return [str(e)]
    problems: list[str] = []
    if "dataset" not in dataset_json:
        problems += _unexpected_files(folder, dataset_json, {c.identifier for c in cases})
    if not cases:
        ending = dataset_json["file_ending"]
        problems.append(f"{folder / 'imagesTr'}: empty dataset, no training cases found "
                        f"(expected files named like case_001_0000{ending})")
    elif dataset_json["numTraining"] != len(cases):
        problems.append(f"{folder / 'dataset.json'}: numTraining is {dataset_json['numTraining']} but "
                        f"{len(cases)} training cases were found")
    clean = []
    for case in cases:
        case_problems = _check_case_headers(case, folder, dataset_json["file_ending"])
        problems += case_problems
        if not case_problems:
            clean.append(case)
    if verify and clean:
        problems += _verify_cases(clean, LabelManager.from_dataset_json(dataset_json).all_labels, num_processes)
    return problems


def _unexpected_files(folder: Path, dataset_json: dict, identifiers: set[str]) -> list[str]:
    ending = dataset_json["file_ending"]
    n = num_channels(dataset_json)
    problems = []
    for path in visible_files(folder / "imagesTr"):
        parsed = parse_channel_file_name(path.name, ending)
        if not path.is_file() or parsed is None:
            problems.append(f"{path}: unexpected file in imagesTr (expected {{case}}_{{XXXX}}{ending})")
        elif parsed[1] >= n:
            problems.append(f"{path}: channel {parsed[1]:04d} but dataset.json declares {n} channel(s)")
    labels_dir = folder / "labelsTr"
    if labels_dir.is_dir():
        for path in visible_files(labels_dir):
            if not path.is_file() or not path.name.endswith(ending):
                problems.append(f"{path}: unexpected file in labelsTr (expected {{case}}{ending})")
            elif path.name[: -len(ending)] not in identifiers:
                problems.append(f"{path}: label without images in imagesTr")
    return problems


def _check_case_headers(case: CaseFiles, folder: Path, ending: str) -> list[str]:
    problems = []
    headers: list[tuple[Path, dict]] = []
    for channel, path in enumerate(case.images):
        if not path.is_file():
            problems.append(f"{path}: missing channel file (channel {channel:04d} of case {case.identifier!r})")
            continue
        header = _header_or_problem(path, problems)
        if header is not None:
            headers.append((path, header))
    if case.label is None:
        problems.append(f"{folder / 'labelsTr' / (case.identifier + ending)}: missing label of case "
                        f"{case.identifier!r}")
    elif not case.label.is_file():
        problems.append(f"{case.label}: missing label of case {case.identifier!r}")
    else:
        header = _header_or_problem(case.label, problems)
        if header is not None:
            headers.append((case.label, header))
    if headers:
        reference_path, reference = headers[0]
        for path, header in headers[1:]:
            diff = geometry_difference(header, reference)
            if diff is not None:
                problems.append(f"{path}: {diff.split(' ')[0]} mismatch with {reference_path.name}: {diff}")
    return problems


def _header_or_problem(path: Path, problems: list[str]) -> dict | None:
    try:
        header = read_image_header(path)
    except InputError as e:
        problems.append(str(e))
        return None
    if header["dimension"] != 3:
        problems.append(f"{path}: {header['dimension']}D image, expected 3D "
                        "(one 3D file per channel; MSD 4D files need sf3d_convert_msd)")
        return None
    if header["components"] != 1:
        problems.append(f"{path}: {header['components']} components per voxel, expected a scalar image")
        return None
    return header


def _verify_cases(cases: list[CaseFiles], declared: list[int], num_processes: int) -> list[str]:
    jobs = [(case, declared) for case in cases]
    with CaseMap(num_processes, progress=None) as pool:
        return [problem for result in pool.map(_verify_case, jobs, "verifying cases") for problem in result]


def _verify_case(job: tuple[CaseFiles, list[int]]) -> list[str]:
    """Read all voxels of one case; returns its problems."""
    case, declared = job
    problems = []
    try:
        read_images(case.images)
    except InputError as e:
        problems.append(str(e))
    try:
        seg, _ = read_segmentation(case.label)
    except InputError as e:
        problems.append(str(e))
        return problems
    present = np.unique(seg)
    undeclared = sorted(int(v) for v in np.setdiff1d(present, np.asarray(declared)))
    if undeclared:
        problems.append(f"{case.label}: label value(s) {undeclared} not declared in dataset.json "
                        f"(declared: {declared})")
    return problems
