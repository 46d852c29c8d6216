"""Convert a legacy Medical Segmentation Decathlon task folder into the nnU-Net v2 raw layout.

MSD stores a multi-modal case as one 4D NIfTI (channels on the 4th axis) and its ``dataset.json`` has
``modality`` and int -> name ``labels``. The converted dataset has one 3D file per channel
(``{case}_0000.nii.gz``, ...) carrying the first three axes' spacing, origin and direction, ``channel_names``,
name -> int ``labels`` and ``file_ending``. Labels are copied as they are; MSD's ``._*`` files are skipped.

The conversion writes into a hidden ``.Dataset{ID}_{Name}.partial`` folder beside the target, one atomic file
at a time, skipping files already there, and renames it into place at the end: a killed run leaves no
half-dataset that looks finished, and running the command again completes it.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from segformer3d_auto.atomic import atomic_path, read_json, write_json
from segformer3d_auto.dataset.dataset_json import dataset_json_problem
from segformer3d_auto.dataset.naming import channel_file_name, visible_files
from segformer3d_auto.errors import InputError
from segformer3d_auto.parallel import CaseMap
from segformer3d_auto.paths import all_roots, dataset_name, list_datasets, parse_dataset_name, raw_root

_TASK = re.compile(r"^Task(\d+)_(.+)$")
_ENDING = ".nii.gz"
_DROPPED_KEYS = ("training", "test", "modality", "labels")


def convert_msd(task_folder: str | Path, dataset_id: int | None = None, num_processes: int = 1) -> Path:
    """Convert ``TaskXX_Name`` into ``raw_root()/Dataset{ID:03d}_{Name}``; returns the new dataset folder.

    Args:
        task_folder: the MSD task folder (``imagesTr``, ``labelsTr``, optional ``imagesTs``, ``dataset.json``).
        dataset_id: target ID; by default the task number (``Task05_Prostate`` -> 5).
        num_processes: worker processes for splitting the images.

    Raises:
        InputError: the folder is not an MSD task, a case is inconsistent with ``modality`` or lacks its
            label, or the target exists already (under this or another name for the ID).
    """
    if num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    source = Path(task_folder).expanduser().resolve()
    msd_json = _read_msd_json(source)
    match = _TASK.match(source.name)
    if dataset_id is None and match is None:
        raise InputError(f"{source}: folder name is not TaskXX_Name; pass the target ID with -d")
    target_id = int(match.group(1)) if dataset_id is None else dataset_id
    name = dataset_name(target_id, match.group(2) if match else source.name)
    target = raw_root() / name
    _check_target(target, target_id)
    partial = target.parent / f".{name}.partial"
    converted = _convert_json(msd_json)
    problem = dataset_json_problem(converted)
    if problem is not None:
        raise InputError(f"{source / 'dataset.json'}: cannot convert: {problem}")
    channels = len(msd_json["modality"])
    jobs = _plan_jobs(source, partial, channels)
    with CaseMap(num_processes, progress=None, unit="file") as pool:
        pool.map(_convert_file, jobs, f"converting {source.name}")
    write_json(converted, partial / "dataset.json")
    _remove_stale_temporaries(partial)
    os.replace(partial, target)
    return target


def _remove_stale_temporaries(partial: Path) -> None:
    """Delete the hidden temporary files that a killed earlier run left behind in the partial folder."""
    for sub in partial.iterdir():
        if sub.is_dir():
            for leftover in sub.glob(".*"):
                if leftover.is_file():
                    leftover.unlink()


def _read_msd_json(source: Path) -> dict:
    if not source.is_dir():
        raise InputError(f"{source}: folder not found")
    json_path = source / "dataset.json"
    if not json_path.is_file() or not (source / "imagesTr").is_dir():
        raise InputError(f"{source}: not an MSD task folder (expected dataset.json and imagesTr/)")
    try:
        data = read_json(json_path)
    except ValueError as e:
        raise InputError(f"{json_path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise InputError(f"{json_path}: must hold a JSON object")
    missing = [k for k in ("modality", "labels", "numTraining") if k not in data]
    if missing:
        hint = " (it looks like an nnU-Net v2 dataset already)" if "channel_names" in data else ""
        raise InputError(f"{json_path}: not an MSD dataset.json, missing {', '.join(missing)}{hint}")
    modality = data["modality"]
    if not isinstance(modality, dict) or sorted(modality) != sorted(str(i) for i in range(len(modality))):
        raise InputError(f"{json_path}: 'modality' must be a non-empty dict like {{\"0\": \"CT\"}}")
    if not isinstance(data["labels"], dict) or not all(str(k).isdigit() for k in data["labels"]):
        raise InputError(f"{json_path}: 'labels' must map label values to names, like {{\"0\": \"background\"}}")
    names = list(data["labels"].values())
    if len(set(names)) != len(names):
        raise InputError(f"{json_path}: two labels share a name, cannot invert 'labels' to name -> value")
    return data


def _check_target(target: Path, target_id: int) -> None:
    if target.exists():
        raise InputError(f"{target}: already exists; delete it to convert again")
    clashes = [n for n in list_datasets(all_roots()) if parse_dataset_name(n)[0] == target_id
               and n != target.name]
    if clashes:
        raise InputError(f"{target}: dataset ID {target_id} is taken by {', '.join(clashes)}; "
                         "choose another ID with -d")


def _plan_jobs(source: Path, partial: Path, channels: int) -> list[tuple[str, Path, Path, int]]:
    """(kind, source file, target folder or file, channels) per file; files already converted are skipped."""
    jobs = []
    images = _nifti_files(source / "imagesTr")
    if not images:
        raise InputError(f"{source / 'imagesTr'}: no {_ENDING} images")
    for image in images:
        label = source / "labelsTr" / image.name
        if not label.is_file():
            raise InputError(f"{label}: missing label of training image {image.name}")
        _check_channels(image, channels)
        jobs.append(("image", image, partial / "imagesTr", channels))
        jobs.append(("copy", label, partial / "labelsTr" / image.name, channels))
    for image in _nifti_files(source / "imagesTs"):
        _check_channels(image, channels)
        jobs.append(("image", image, partial / "imagesTs", channels))
    for label in _nifti_files(source / "labelsTs"):
        jobs.append(("copy", label, partial / "labelsTs" / label.name, channels))
    return [job for job in jobs if not _done(job)]


def _check_channels(image: Path, channels: int) -> None:
    """Header-only check that ``image`` is 3D (one channel) or 4D with ``channels`` channels."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(image))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise InputError(f"{image}: unreadable image header") from None
    dim = reader.GetDimension()
    found = reader.GetSize()[3] if dim == 4 else 1
    if dim not in (3, 4) or found != channels:
        raise InputError(f"{image}: {dim}D image with {found} channel(s), but 'modality' declares {channels}")


def _nifti_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [p for p in visible_files(folder) if p.name.endswith(_ENDING) and p.is_file()]


def _channel_targets(job: tuple[str, Path, Path, int]) -> list[Path]:
    kind, source, target, channels = job
    if kind == "copy":
        return [target]
    case = source.name[: -len(_ENDING)]
    return [target / channel_file_name(case, c, _ENDING) for c in range(channels)]


def _done(job: tuple[str, Path, Path, int]) -> bool:
    return all(p.is_file() for p in _channel_targets(job))


def _convert_file(job: tuple[str, Path, Path, int]) -> None:
    """Copy a label, or split one MSD image into per-channel 3D files (each written atomically)."""
    kind, source, _, channels = job
    outputs = _channel_targets(job)
    if kind == "copy":
        with atomic_path(outputs[0], suffix=_ENDING) as tmp:
            shutil.copyfile(source, tmp)
        return
    try:
        image = sitk.ReadImage(str(source))
    except RuntimeError:
        raise InputError(f"{source}: unreadable image") from None
    if image.GetDimension() == 3:
        with atomic_path(outputs[0], suffix=_ENDING) as tmp:
            shutil.copyfile(source, tmp)
        return
    array = sitk.GetArrayFromImage(image)  # (c, z, y, x)
    direction = np.asarray(image.GetDirection()).reshape(4, 4)[:3, :3]
    for c, output in enumerate(outputs):
        channel = sitk.GetImageFromArray(np.ascontiguousarray(array[c]), isVector=False)
        channel.SetSpacing(image.GetSpacing()[:3])
        channel.SetOrigin(image.GetOrigin()[:3])
        channel.SetDirection(direction.ravel().tolist())
        with atomic_path(output, suffix=_ENDING) as tmp:
            sitk.WriteImage(channel, str(tmp), useCompression=True)


def _convert_json(msd: dict) -> dict:
    labels = {str(name): int(value) for value, name in sorted(msd["labels"].items(), key=lambda kv: int(kv[0]))}
    converted = {
        "channel_names": {str(k): v for k, v in sorted(msd["modality"].items(), key=lambda kv: int(kv[0]))},
        "labels": labels,
        "numTraining": msd["numTraining"],
        "file_ending": _ENDING,
    }
    converted.update({k: v for k, v in msd.items() if k not in _DROPPED_KEYS and k not in converted})
    return converted
