"""nnU-Net v2's ``dataset.json``: loading and validating it, and finding the files of each case.

Required keys: ``channel_names`` (``{"0": "CT"}``; the older ``modality`` is accepted), ``labels``,
``numTraining`` and ``file_ending``. Optional: ``regions_class_order`` (with regions), an ``"ignore"`` label and
a ``dataset`` case map ``{case: {"images": [...], "label": "..."}}`` whose paths are relative to the dataset
folder (``~`` and ``$VARS`` expanded) and which replaces the ``imagesTr``/``labelsTr`` folder scan.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from segformer3d_auto.atomic import read_user_json
from segformer3d_auto.dataset.image_io import SUPPORTED_ENDINGS
from segformer3d_auto.dataset.labels import check_labels
from segformer3d_auto.dataset.naming import channel_file_name, parse_channel_file_name, visible_files
from segformer3d_auto.errors import InputError

REQUIRED_KEYS = ("channel_names", "labels", "numTraining", "file_ending")


@dataclass
class CaseFiles:
    """The files of one case: channel images in channel order, and the label map if there is one."""

    identifier: str
    images: list[Path]
    label: Path | None = None


def load_dataset_json(path: str | Path) -> dict:
    """Read and validate a ``dataset.json``; returns it with ``channel_names`` filled in from ``modality``.

    Raises:
        InputError: naming the file, when it is missing or not JSON, lacks a required key, or has unusable
            labels (no background 0, values not unique consecutive ints, regions without a matching
            ``regions_class_order``, ignore label not the highest), channel names or ``file_ending``.
    """
    path = Path(path)
    data = read_user_json(path)
    problem = dataset_json_problem(data)
    if problem is not None:
        raise InputError(f"{path}: {problem}")
    data = dict(data)
    if "channel_names" not in data:
        data = {"channel_names": data.pop("modality"), **data}
    return data


def dataset_json_problem(data: object) -> str | None:
    """What is wrong with a parsed ``dataset.json``, or None."""
    if not isinstance(data, dict):
        return "must hold a JSON object"
    missing = [k for k in REQUIRED_KEYS if k not in data and not (k == "channel_names" and "modality" in data)]
    if missing:
        return f"missing required key(s) {', '.join(missing)}"
    channels = data.get("channel_names", data.get("modality"))
    if not isinstance(channels, dict) or not channels:
        return "'channel_names' must be a non-empty dict like {\"0\": \"CT\"}"
    if sorted(channels) != sorted(str(i) for i in range(len(channels))):
        return f"'channel_names' keys must be \"0\", \"1\", ... without gaps, got {sorted(channels)}"
    problem = check_labels(data["labels"], data.get("regions_class_order"))
    if problem is not None:
        return problem
    n = data["numTraining"]
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        return f"'numTraining' must be a non-negative int, got {n!r}"
    if data["file_ending"] not in SUPPORTED_ENDINGS:
        return f"unsupported file_ending {data['file_ending']!r} (supported: {', '.join(SUPPORTED_ENDINGS)})"
    if "dataset" in data:
        return _case_map_problem(data["dataset"], len(channels))
    return None


def num_channels(dataset_json: dict) -> int:
    """Number of input channels."""
    return len(dataset_json.get("channel_names", dataset_json.get("modality", {})))


def list_training_cases(raw_dataset_folder: str | Path, dataset_json: dict) -> list[CaseFiles]:
    """The training cases of a raw dataset, sorted by identifier.

    From the ``dataset`` case map when there is one, else from ``imagesTr``: every case that has at least one
    ``{case}_{XXXX}{ending}`` file. ``images`` always lists the expected path of every channel (a missing one
    is reported by the integrity check, not here); ``label`` is ``labelsTr/{case}{ending}`` when it exists.

    Raises:
        InputError: ``imagesTr`` does not exist (and there is no case map).
    """
    folder = Path(raw_dataset_folder)
    ending = dataset_json["file_ending"]
    n = num_channels(dataset_json)
    if "dataset" in dataset_json:
        cases = []
        for identifier, entry in dataset_json["dataset"].items():
            images = [_resolve(folder, p) for p in entry["images"]]
            label = _resolve(folder, entry["label"]) if entry.get("label") else None
            cases.append(CaseFiles(identifier, images, label))
        return sorted(cases, key=lambda c: c.identifier)
    images_dir = folder / "imagesTr"
    if not images_dir.is_dir():
        raise InputError(f"{images_dir}: folder not found")
    identifiers = set()
    for path in visible_files(images_dir):
        parsed = parse_channel_file_name(path.name, ending)
        if parsed is not None and parsed[1] < n:
            identifiers.add(parsed[0])
    labels_dir = folder / "labelsTr"
    cases = []
    for identifier in sorted(identifiers):
        images = [images_dir / channel_file_name(identifier, c, ending) for c in range(n)]
        label = labels_dir / f"{identifier}{ending}"
        cases.append(CaseFiles(identifier, images, label if label.is_file() else None))
    return cases


def list_image_cases(folder: str | Path, file_ending: str, num_channels: int) -> list[CaseFiles]:
    """Group a folder of images to predict (named like ``imagesTr``) into cases, sorted by identifier.

    Raises:
        InputError: the folder is missing or holds no ``file_ending`` files, a file does not follow the
            ``{case}_{XXXX}{ending}`` naming, a channel index is beyond ``num_channels``, or a case lacks
            a channel.
    """
    if num_channels < 1:
        raise ValueError(f"num_channels must be >= 1, got {num_channels}")
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: folder not found")
    found: dict[str, dict[int, Path]] = {}
    for path in visible_files(folder):
        if not path.name.endswith(file_ending) or not path.is_file():
            continue
        parsed = parse_channel_file_name(path.name, file_ending)
        if parsed is None:
            raise InputError(f"{path}: name does not follow {{case}}_{{XXXX}}{file_ending} "
                             f"(e.g. case_001_0000{file_ending})")
        case, channel = parsed
        if channel >= num_channels:
            raise InputError(f"{path}: case {case!r} has channel {channel:04d} but the model takes "
                             f"{num_channels} channel(s) (0000..{num_channels - 1:04d})")
        found.setdefault(case, {})[channel] = path
    if not found:
        raise InputError(f"{folder}: no {file_ending} images to read (expected names like "
                         f"case_001_0000{file_ending})")
    cases = []
    for case in sorted(found):
        missing = [c for c in range(num_channels) if c not in found[case]]
        if missing:
            expected = folder / channel_file_name(case, missing[0], file_ending)
            raise InputError(f"{expected}: missing channel {missing[0]:04d} of case {case!r}")
        cases.append(CaseFiles(case, [found[case][c] for c in range(num_channels)], None))
    return cases


def _resolve(folder: Path, relative: str) -> Path:
    path = Path(os.path.expandvars(os.path.expanduser(str(relative))))
    return path if path.is_absolute() else folder / path


def _case_map_problem(case_map: object, n_channels: int) -> str | None:
    if not isinstance(case_map, dict) or not case_map:
        return "'dataset' must be a non-empty dict of case -> {\"images\": [...], \"label\": ...}"
    for case, entry in case_map.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("images"), list):
            return f"'dataset' entry {case!r} must be a dict with an 'images' list"
        if len(entry["images"]) != n_channels or not all(isinstance(p, str) for p in entry["images"]):
            return f"'dataset' entry {case!r} must list {n_channels} image path(s), one per channel"
        if "label" in entry and entry["label"] is not None and not isinstance(entry["label"], str):
            return f"'dataset' entry {case!r} has a label that is not a path string"
    return None
