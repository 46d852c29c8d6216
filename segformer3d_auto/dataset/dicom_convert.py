"""DICOM studies plus label files into a raw dataset (``sf3d_convert_dicom``), for those who annotate on DICOM.

Every image series (or, with several channels, every study with one series per channel, chosen by
SeriesDescription as in ``sf3d_predict``) becomes a case ``{PatientID}_s{SeriesNumber}_{UID end}``. Its label map
is the file in the labels folder whose name, without the ending, is the case name, the SeriesInstanceUID of
channel 0 or, when it is unique among the cases, the PatientID; it must have the series' geometry (a label
map exported from a viewer on that series has it). Cases with a label go to ``imagesTr``/``labelsTr``, the
others to ``imagesTs``. Images are written as float32 NIfTI with the rescale applied (CT in HU).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import SimpleITK as sitk

from segformer3d_auto.atomic import atomic_path, write_json
from segformer3d_auto.dataset.dicom_cases import group_cases, parse_channel_map
from segformer3d_auto.dataset.dicom_series import DicomSeries, find_series, read_series_as_image
from segformer3d_auto.dataset.image_io import (
    file_ending,
    geometry_difference,
    read_image_header,
    read_segmentation,
    write_segmentation,
)
from segformer3d_auto.dataset.labels import check_labels
from segformer3d_auto.dataset.naming import channel_file_name
from segformer3d_auto.errors import InputError
from segformer3d_auto.paths import dataset_name


def convert_dicom(dicom_folder: str | Path, labels_folder: str | Path, raw_root: str | Path, dataset_id: int,
                  name: str, channel_names: Mapping[str, str], labels: Mapping[str, int],
                  channel_spec: str | None = None, strict: bool = False) -> Path:
    """Write ``raw_root/Dataset{ID}_{name}`` from DICOM series and label files; returns the dataset folder.

    Raises:
        InputError: no series, a refused series (``strict``), a study missing a channel, a label file matching
            several cases, a label whose geometry differs from its series, labels that are inconsistent, or no
            labelled case at all.
    """
    problem = check_labels(labels)
    if problem is not None:
        raise InputError(f"--labels: {problem}")
    scan = find_series(dicom_folder, strict=strict)
    for line in scan.skipped:
        print(f"warning: {line}", file=sys.stderr)
    cases = group_cases(scan.series, parse_channel_map(channel_spec, channel_names))
    label_files = _match_labels(Path(labels_folder), cases)
    if not label_files:
        raise InputError(f"{labels_folder}: no label file matches a case (name it {next(iter(cases))}.nii.gz, by "
                         "the SeriesInstanceUID, or by the PatientID)")
    for case, label_file in label_files.items():  # every check before the first file is written
        difference = geometry_difference(read_image_header(label_file), cases[case][0].properties)
        if difference is not None:
            raise InputError(f"{label_file}: geometry differs from series {cases[case][0].series_uid}: "
                             f"{difference}")
    folder = Path(raw_root) / dataset_name(dataset_id, name)
    for case, members in cases.items():
        split = "Tr" if case in label_files else "Ts"
        for channel, member in enumerate(members):
            target = folder / f"images{split}" / channel_file_name(case, channel, ".nii.gz")
            image = read_series_as_image(member)
            with atomic_path(target, suffix=".nii.gz") as tmp:
                sitk.WriteImage(image, str(tmp), useCompression=True)
        if case in label_files:
            seg, _ = read_segmentation(label_files[case])
            write_segmentation(seg, members[0].properties, folder / "labelsTr" / f"{case}.nii.gz")
    write_json({"channel_names": dict(channel_names), "labels": dict(labels), "numTraining": len(label_files),
                "file_ending": ".nii.gz", "name": name,
                "description": "Converted from DICOM with sf3d_convert_dicom"}, folder / "dataset.json")
    return folder


def _match_labels(labels_folder: Path, cases: Mapping[str, list[DicomSeries]]) -> dict[str, Path]:
    """case -> its label file, by case name, SeriesInstanceUID or unique PatientID."""
    if not labels_folder.is_dir():
        raise InputError(f"{labels_folder}: labels folder not found")
    patients: dict[str, list[str]] = {}
    for case, members in cases.items():
        patients.setdefault(members[0].patient_id, []).append(case)
    keys = {case: case for case in cases}
    keys.update({members[0].series_uid: case for case, members in cases.items()})
    keys.update({patient: found[0] for patient, found in patients.items() if len(found) == 1 and patient})
    matched: dict[str, Path] = {}
    for path in sorted(labels_folder.iterdir()):
        ending = file_ending(path)
        if ending is None or path.name.startswith("."):
            continue
        case = keys.get(path.name[: -len(ending)])
        if case is None:
            print(f"warning: {path}: matches no DICOM case, ignored", file=sys.stderr)
            continue
        if case in matched:
            raise InputError(f"{path}: second label file for case {case} (first: {matched[case].name})")
        matched[case] = path
    return matched

