"""Which DICOM series make up a case: one series per case for one-channel models, one study with a series per
channel (matched by SeriesDescription or SeriesInstanceUID) for multi-channel ones. Shared by ``sf3d_predict``
and ``sf3d_convert_dicom``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from segformer3d_auto.atomic import read_user_json
from segformer3d_auto.dataset.dicom_series import DicomSeries
from segformer3d_auto.errors import InputError


def parse_channel_map(spec: str | None, channel_names: Mapping[str, str]) -> list[str]:
    """Series selectors in channel order, from a JSON file, a comma-separated list, or the channel names.

    Raises:
        InputError: the JSON is unreadable or its channels do not match the model's.
    """
    count = len(channel_names)
    if spec is None:
        return [str(channel_names[str(c)]) for c in range(count)]
    if spec.endswith(".json") or Path(spec).is_file():
        data = read_user_json(Path(spec))
        if not isinstance(data, dict) or sorted(data) != sorted(str(c) for c in range(count)):
            raise InputError(f"{spec}: needs one entry per channel, keys {[str(c) for c in range(count)]} "
                             f"(model channels {dict(channel_names)}), got {data!r}")
        return [str(data[str(c)]) for c in range(count)]
    selectors = [s.strip() for s in spec.split(",")]
    if len(selectors) != count or not all(selectors):
        raise InputError(f"--dicom-channels {spec!r}: needs {count} comma-separated series descriptions "
                         f"(model channels {dict(channel_names)})")
    return selectors


def group_cases(series: Sequence[DicomSeries], selectors: Sequence[str]) -> dict[str, list[DicomSeries]]:
    """Cases (name -> series in channel order); one series per case for a one-channel model.

    Raises:
        InputError: a study lacks a channel's series, or has two series that match it.
    """
    if len(selectors) == 1:
        return _unique({s.case_name: [s] for s in series}, series)
    studies: dict[str, list[DicomSeries]] = {}
    for s in series:
        studies.setdefault(s.study_uid, []).append(s)
    cases = {}
    for study_uid, members in studies.items():
        chosen = []
        for channel, selector in enumerate(selectors):
            matches = [s for s in members if selector.lower() in (s.description.lower(), s.series_uid.lower())]
            have = ", ".join(repr(s.description or s.series_uid) for s in members)
            if not matches:
                raise InputError(f"{members[0].files[0].parent}: study {study_uid} (patient {members[0].patient_id})"
                                 f" has no series for channel {channel} ({selector!r}); its series: {have}")
            if len(matches) > 1:
                raise InputError(f"{matches[1].files[0]}: study {study_uid}: {len(matches)} series match channel "
                                 f"{channel} ({selector!r}); name one by SeriesInstanceUID in --dicom-channels")
            chosen.append(matches[0])
        cases[chosen[0].case_name] = chosen
    return cases


def _unique(cases: dict[str, list[DicomSeries]], series: Sequence[DicomSeries]) -> dict[str, list[DicomSeries]]:
    if len(cases) != len(series):
        names = [s.case_name for s in series]
        duplicate = next(n for n in names if names.count(n) > 1)
        raise InputError(f"{input_hint(series)}: two series give the case name {duplicate!r}")
    return cases


def input_hint(series: Sequence[DicomSeries]) -> Path:
    """The folder of the first series' first file (for error messages)."""
    return series[0].files[0].parent
