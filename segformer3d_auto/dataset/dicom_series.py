"""DICOM series in: find the image series of a folder (any nesting) and read each into a 3D volume.

Files are recognised by the ``DICM`` marker, grouped by SeriesInstanceUID, and their headers read with
SimpleITK (GDCM). A series is read only after its geometry is checked, so nothing is ever half-read:

- every slice has the same orientation (ImageOrientationPatient) and the same rows and columns;
- slices are sorted by their position along the slice normal (not by instance number or file name);
- the step between neighbouring slices is parallel to the normal (else: gantry tilt, refused);
- the steps are equal (else: missing slices, duplicated positions or inconsistent spacing, refused).

The slice spacing is the median step between positions, not the header's SliceThickness; the rescale slope and
intercept are applied (GDCM does it while reading), so CT comes out in Hounsfield units. Series that are not
images (SEG, RTSTRUCT, SR, ...), localisers (ImageType LOCALIZER) and single-slice series are reported, one line
each, and skipped, or refused when ``strict`` is set.

The result has the same ``properties`` as ``image_io.read_images`` (array order z, y, x; origin and direction in
SimpleITK order), so a DICOM series is predicted and written back exactly like a NIfTI image.
"""

from __future__ import annotations

import contextlib
import locale
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from segformer3d_auto.errors import InputError

NON_IMAGE_MODALITIES = {"SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "SR", "PR", "KO", "REG", "DOC",
                        "ECG", "AU", "PLAN", "FID"}
"""Modalities whose objects are not images to segment."""

POSITION_TOLERANCE_MM = 0.01
"""Absolute tolerance (mm) for slice steps: a step differing from the median by more is inconsistent."""
RELATIVE_STEP_TOLERANCE = 1e-3
"""Relative tolerance for slice steps (of the median step), added to the absolute one."""
TILT_TOLERANCE_DEGREES = 0.01
"""A step between slices more oblique to the slice normal than this is a gantry tilt (refused)."""

_TAGS = {"series": "0020|000e", "study": "0020|000d", "position": "0020|0032", "orientation": "0020|0037",
         "modality": "0008|0060", "image_type": "0008|0008", "description": "0008|103e",
         "series_number": "0020|0011", "patient": "0010|0020", "sop_instance": "0008|0018",
         "frame_of_reference": "0020|0052", "frames": "0028|0008"}


@dataclass
class DicomSeries:
    """One image series, its slices sorted along the slice normal and its geometry checked.

    Attributes:
        series_uid: SeriesInstanceUID.
        study_uid: StudyInstanceUID.
        files: slice files in position order (the array's z order).
        description: SeriesDescription ('' when absent).
        modality: Modality ('' when absent).
        series_number: SeriesNumber ('' when absent).
        patient_id: PatientID ('' when absent).
        frame_of_reference_uid: FrameOfReferenceUID ('' when absent).
        properties: ``spacing`` (z, y, x), ``origin``, ``direction``, ``shape`` as in ``image_io``.
    """

    series_uid: str
    study_uid: str
    files: list[Path]
    description: str
    modality: str
    series_number: str
    patient_id: str
    frame_of_reference_uid: str
    properties: dict = field(default_factory=dict)

    @property
    def case_name(self) -> str:
        """A file-name-safe case identifier: patient, series number and the end of the series UID."""
        parts = [self.patient_id or "dicom", f"s{self.series_number}" if self.series_number else "",
                 self.series_uid.replace(".", "")[-8:]]
        return "_".join(_safe(p) for p in parts if p)


@dataclass
class SeriesScan:
    """What ``find_series`` found: the readable image series and one line per skipped object."""

    series: list[DicomSeries]
    skipped: list[str]


@contextlib.contextmanager
def keep_locale() -> Iterator[None]:
    """Restore the process locale after GDCM calls: GDCM's DICOM writer sets it to "C", after which Python
    decodes subprocess output and files as ASCII."""
    saved = locale.setlocale(locale.LC_ALL, None)
    try:
        yield
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def is_dicom_file(path: str | Path) -> bool:
    """True when ``path`` carries the DICOM Part 10 marker ``DICM`` at byte 128."""
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def contains_dicom(folder: str | Path) -> bool:
    """True when ``folder`` (any nesting) holds at least one DICOM file; stops at the first."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and is_dicom_file(Path(root) / name):
                return True
    return False


def find_series(folder: str | Path, strict: bool = False) -> SeriesScan:
    """The image series under ``folder`` (any nesting), sorted by patient, study and series number.

    Args:
        folder: a folder of DICOM files; other files are ignored.
        strict: refuse (raise) on the first series that is skipped, instead of reporting it.

    Raises:
        InputError: the folder is missing or holds no DICOM image series; with ``strict``, a non-image
            object, a localiser or a series with inconsistent slices (naming a file and the problem).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: folder not found")
    groups: dict[str, list[tuple[Path, dict]]] = {}
    skipped: list[str] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root) / name
            if name.startswith(".") or not is_dicom_file(path):
                continue
            header = _read_header(path)
            if header is None:
                skipped.append(f"{path}: DICOM object without image data, skipped")
                continue
            groups.setdefault(header["series"], []).append((path, header))
    series = []
    for uid, slices in groups.items():
        problem = _series_problem(slices)
        if problem is not None:
            skipped.append(f"{slices[0][0]}: series {uid} ({len(slices)} files): {problem}, skipped")
            continue
        try:
            series.append(_make_series(uid, slices))
        except InputError as e:
            skipped.append(f"{e}, skipped")
    if strict and skipped:
        raise InputError(skipped[0].removesuffix(", skipped") + " (refused: strict DICOM reading)")
    if not series:
        detail = f"; {len(skipped)} object(s) skipped, first: {skipped[0]}" if skipped else ""
        raise InputError(f"{folder}: no DICOM image series found{detail}")
    series.sort(key=lambda s: (s.patient_id, s.study_uid, _number(s.series_number), s.series_uid))
    return SeriesScan(series, skipped)


def read_series(series: DicomSeries) -> tuple[np.ndarray, dict]:
    """Read a checked series into a float32 array (z, y, x) in stored-value-times-slope-plus-intercept units.

    Returns:
        ``(array, properties)`` with the geometry computed from the slice positions.

    Raises:
        InputError: a file cannot be read, or GDCM's volume does not have the checked shape.
    """
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in series.files])
    reader.SetOutputPixelType(sitk.sitkFloat32)
    try:
        with keep_locale():
            image = reader.Execute()
    except RuntimeError as e:
        raise InputError(f"{series.files[0]}: series {series.series_uid} unreadable ({_last_line(e)})") from None
    array = sitk.GetArrayFromImage(image).astype(np.float32, copy=False)
    if list(array.shape) != list(series.properties["shape"]):
        raise InputError(f"{series.files[0]}: series {series.series_uid} read as {list(array.shape)}, "
                         f"expected {series.properties['shape']}")
    if not np.isfinite(array).all():
        raise InputError(f"{series.files[0]}: series {series.series_uid} contains NaN or inf values")
    return array, dict(series.properties)


def read_series_as_image(series: DicomSeries) -> sitk.Image:
    """The series as a SimpleITK image with the checked geometry (for writing it out as NIfTI)."""
    array, props = read_series(series)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing([float(s) for s in reversed(props["spacing"])])
    image.SetOrigin([float(o) for o in props["origin"]])
    image.SetDirection([float(d) for d in props["direction"]])
    return image


def _read_header(path: Path) -> dict | None:
    """The tags this module uses, or None for an object SimpleITK cannot read as an image."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.SetImageIO("GDCMImageIO")
    try:
        with keep_locale():
            reader.ReadImageInformation()
    except RuntimeError:
        return None
    header = {key: reader.GetMetaData(tag).strip() if reader.HasMetaDataKey(tag) else ""
              for key, tag in _TAGS.items()}
    header["size"] = list(reader.GetSize())
    header["spacing"] = list(reader.GetSpacing())
    header["dimension"] = reader.GetDimension()
    return header


def _series_problem(slices: Sequence[tuple[Path, dict]]) -> str | None:
    """Why a series is not an image volume to segment, or None."""
    first = slices[0][1]
    modality = first["modality"].upper()
    if modality in NON_IMAGE_MODALITIES:
        return f"{modality} object, not an image"
    if "LOCALIZER" in first["image_type"].upper().replace("\\", " ").split():
        return "localizer (ImageType LOCALIZER)"
    frames = _number(first["frames"])
    if len(slices) == 1 and frames <= 1:
        return "a single slice, not a volume"
    if len(slices) > 1 and any(_number(h["frames"]) > 1 for _, h in slices):
        return "several multi-frame files in one series (not supported)"
    if len(slices) == 1:
        return "a multi-frame (enhanced) file, not supported yet: export it as single-frame slices"
    return None


def _make_series(uid: str, slices: list[tuple[Path, dict]]) -> DicomSeries:
    """Sort the slices along the normal and check orientation, size, tilt and spacing."""
    path0, first = slices[0]
    orientation = _floats(first["orientation"], 6, path0, "ImageOrientationPatient")
    for path, header in slices[1:]:
        other = _floats(header["orientation"], 6, path, "ImageOrientationPatient")
        if not np.allclose(other, orientation, atol=1e-4):
            raise InputError(f"{path}: series {uid}: slice orientation {_fmt(other)} differs from "
                             f"{_fmt(orientation)} of {path0}")
        if header["size"][:2] != first["size"][:2]:
            raise InputError(f"{path}: series {uid}: {header['size'][:2]} pixels differ from "
                             f"{first['size'][:2]} of {path0}")
    row, column = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    normal = np.cross(row, column)
    positions = np.array([_floats(h["position"], 3, p, "ImagePositionPatient") for p, h in slices])
    order = np.argsort(positions @ normal, kind="stable")
    positions = positions[order]
    files = [slices[i][0] for i in order]
    steps = np.diff(positions, axis=0)
    along = steps @ normal
    if np.any(along <= POSITION_TOLERANCE_MM):
        i = int(np.argmax(along <= POSITION_TOLERANCE_MM))
        raise InputError(f"{files[i + 1]}: series {uid}: two slices at the same position {_fmt(positions[i])}")
    across = np.linalg.norm(steps - along[:, None] * normal, axis=1)
    tilt = np.degrees(np.arctan2(across, along))
    if np.max(np.abs(tilt)) > TILT_TOLERANCE_DEGREES:
        raise InputError(f"{files[0]}: series {uid}: gantry tilt of {float(np.max(np.abs(tilt))):.3g} degrees "
                         "(slice positions not along the slice normal); resample it to a regular grid first")
    spacing_z = float(np.median(along))
    tolerance = POSITION_TOLERANCE_MM + RELATIVE_STEP_TOLERANCE * spacing_z
    bad = np.flatnonzero(np.abs(along - spacing_z) > tolerance)
    if bad.size:
        i = int(bad[0])
        ratio = along[i] / spacing_z
        what = (f"{int(round(ratio)) - 1} missing slice(s)" if ratio > 1.5 and abs(ratio - round(ratio)) < 0.1
                else "inconsistent slice spacing")
        raise InputError(f"{files[i + 1]}: series {uid}: {what}: step {along[i]:.4g} mm between this slice and "
                         f"{files[i].name}, the others are {spacing_z:.4g} mm")
    columns, rows = int(first["size"][0]), int(first["size"][1])
    direction = np.stack([row, column, normal], axis=1)  # columns: the x, y, z axes in patient space
    return DicomSeries(
        series_uid=uid, study_uid=first["study"], files=files, description=first["description"],
        modality=first["modality"], series_number=first["series_number"], patient_id=first["patient"],
        frame_of_reference_uid=first["frame_of_reference"],
        properties={"spacing": [spacing_z, float(first["spacing"][1]), float(first["spacing"][0])],
                    "origin": [float(v) for v in positions[0]],
                    "direction": [float(v) for v in direction.ravel()],
                    "shape": [len(files), rows, columns]})


def _floats(text: str, count: int, path: Path, name: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split("\\") if v != ""]
    except ValueError:
        values = []
    if len(values) != count:
        raise InputError(f"{path}: {name} {text!r} is not {count} numbers")
    return values


def _number(text: str) -> int:
    try:
        return int(float(text))
    except ValueError:
        return 0


def _safe(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-" else "-" for c in text.strip())
    return cleaned.strip("-") or "x"


def _fmt(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{float(v):.6g}" for v in values) + "]"


def _last_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
