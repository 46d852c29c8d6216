"""DICOM folders as prediction input: each series (or each study, for multi-channel models) becomes a case.

``stage_dicom_cases`` reads the checked series of a folder (``dataset.dicom_series``) and writes them as
``{case}_{XXXX}{file_ending}`` images into a staging folder, so that the ordinary folder prediction runs on them
unchanged and the label maps come back in each series' own geometry. It also returns, per case, the series of
channel 0, which a DICOM SEG output references.

Channels: a one-channel model takes every image series as a case. A multi-channel model groups the series of
one study and picks one series per channel by its SeriesDescription (case-insensitive) or SeriesInstanceUID:
from a mapping ``{"0": "FLAIR", "1": "T1", ...}`` (a JSON file or a comma-separated list in channel order), or by
default from the model's channel names in ``dataset.json``. A study missing a channel is an error that names
the study, the channel and the series it has.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import SimpleITK as sitk

from segformer3d_auto.atomic import atomic_path
from segformer3d_auto.dataset.dicom_cases import group_cases, parse_channel_map
from segformer3d_auto.dataset.dicom_series import DicomSeries, find_series, read_series_as_image
from segformer3d_auto.dataset.naming import channel_file_name


def stage_dicom_cases(input_folder: str | Path, staging_folder: str | Path, channel_names: Mapping[str, str],
                      file_ending: str, channel_spec: str | None = None,
                      strict: bool = False) -> dict[str, list[DicomSeries]]:
    """Write every DICOM case of ``input_folder`` as channel images into ``staging_folder``.

    Skipped objects (non-images, localisers, inconsistent series) are printed to stderr, one line each.

    Returns:
        case name -> its series in channel order.

    Raises:
        InputError: no usable series, a refused series with ``strict``, or a study missing a channel.
    """
    scan = find_series(input_folder, strict=strict)
    for line in scan.skipped:
        print(f"warning: {line}", file=sys.stderr)
    cases = group_cases(scan.series, parse_channel_map(channel_spec, channel_names))
    staging = Path(staging_folder)
    staging.mkdir(parents=True, exist_ok=True)
    for case, members in cases.items():
        for channel, member in enumerate(members):
            target = staging / channel_file_name(case, channel, file_ending)
            if target.is_file():
                continue
            image = read_series_as_image(member)
            with atomic_path(target, suffix=file_ending) as tmp:
                sitk.WriteImage(image, str(tmp), useCompression=True)
    return cases
