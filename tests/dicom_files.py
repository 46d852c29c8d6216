"""DICOM series written by the tests themselves with SimpleITK (GDCM): one file per slice, real headers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from segformer3d_auto.dataset.dicom_series import keep_locale

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
_UID_ROOT = "1.2.826.0.1.3680043.8.498."


def uid(*numbers: int) -> str:
    """A deterministic DICOM UID under a test root."""
    return _UID_ROOT + ".".join(str(int(n)) for n in numbers)


def write_series(folder: Path, array: np.ndarray, spacing: Sequence[float], origin: Sequence[float],
                 direction: Sequence[float], series: int = 1, study: int = 1, modality: str = "CT",
                 description: str = "", intercept: float = 0.0, slope: float = 1.0,
                 positions: Sequence[Sequence[float]] | None = None, skip: Sequence[int] = (),
                 image_type: str = "ORIGINAL\\PRIMARY\\AXIAL", shuffle: bool = True,
                 patient: str = "P1") -> list[Path]:
    """Write ``array`` (z, y, x) of stored values as one single-frame DICOM file per slice.

    ``spacing`` is (z, y, x); origin and direction are SimpleITK's. ``positions`` overrides the slice positions
    (e.g. a gantry tilt); slices in ``skip`` are left out (a missing slice). Files are named in a shuffled order
    so that readers must sort by position. The real values are ``stored * slope + intercept``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    volume = sitk.GetImageFromArray(np.ascontiguousarray(array.astype(np.int16)))
    volume.SetSpacing([float(s) for s in reversed(spacing)])
    volume.SetOrigin([float(o) for o in origin])
    volume.SetDirection([float(d) for d in direction])
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    orientation = "\\".join(f"{v:.10g}" for v in (*d[:, 0], *d[:, 1]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    order = np.random.default_rng(series).permutation(array.shape[0]) if shuffle else np.arange(array.shape[0])
    written = []
    for z in range(array.shape[0]):
        if z in skip:
            continue
        image = volume[:, :, z]
        position = positions[z] if positions is not None else volume.TransformIndexToPhysicalPoint((0, 0, z))
        tags = {
            "0008|0016": CT_IMAGE_STORAGE if modality == "CT" else MR_IMAGE_STORAGE,
            "0008|0018": uid(study, series, z + 1),
            "0008|0060": modality, "0008|0008": image_type, "0008|103e": description,
            "0010|0010": "Test^Patient", "0010|0020": patient,
            "0020|000d": uid(study), "0020|000e": uid(study, series), "0020|0052": uid(study, 0),
            "0020|0011": str(series), "0020|0013": str(z + 1),
            "0020|0032": "\\".join(f"{v:.10g}" for v in position), "0020|0037": orientation,
            "0018|0050": f"{spacing[0]:.6g}",
            "0028|1052": f"{intercept:g}", "0028|1053": f"{slope:g}", "0028|1054": "HU",
        }
        for key, value in tags.items():
            image.SetMetaData(key, value)
        path = folder / f"IM{int(order[z]):04d}.dcm"
        writer.SetFileName(str(path))
        with keep_locale():  # GDCM's writer sets the process locale to "C"
            writer.Execute(image)
        written.append(path)
    return written
