"""DICOM SEG output: a predicted label map as a DICOM Segmentation that references its source series.

Written with highdicom (optional extra: ``pip install -e ".[dicom]"``). One segment per class (labels) or region
(region datasets), labelled with its name from ``dataset.json``; the SEG shares the source's frame of reference
and study and lists the source instances, so viewers (OHIF, 3D Slicer) overlay it on the series.

The label map must be in the source series' geometry (``stage_dicom_cases`` + prediction guarantee it): its
z axis runs along the slice normal in the order of ``DicomSeries.files``, y along the rows, x along the columns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segformer3d_auto.atomic import atomic_path
from segformer3d_auto.dataset.dicom_series import DicomSeries
from segformer3d_auto.errors import InputError

MANUFACTURER = "segformer3d_auto"


def require_highdicom() -> None:
    """Raise a one-line InputError when highdicom (the ``dicom`` extra) is not installed."""
    try:
        import highdicom  # noqa: F401
    except ImportError:
        raise InputError('--output-format dicom-seg: highdicom is not installed (pip install -e ".[dicom]" or '
                         'pip install highdicom)') from None


def segment_masks(seg: np.ndarray, label_manager: object) -> tuple[np.ndarray, list[str]]:
    """Binary masks (z, y, x, segments) and their names: one per class, or per region for region datasets."""
    masks, names = [], []
    for value, name in zip(label_manager.classes_or_regions, label_manager.names):
        members = value if isinstance(value, (list, tuple)) else [value]
        masks.append(np.isin(seg, members))
        names.append(name)
    return np.stack(masks, axis=-1).astype(np.uint8), names


def write_dicom_seg(seg: np.ndarray, series: DicomSeries, label_manager: object, output: str | Path,
                    series_number: int = 900, algorithm_version: str = "") -> Path:
    """Write ``seg`` (z, y, x, in the series' geometry) as a DICOM SEG file ``output`` (atomically).

    Raises:
        InputError: the label map does not have the series' shape, or a source file cannot be read.
    """
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    require_highdicom()
    if list(seg.shape) != list(series.properties["shape"]):
        raise InputError(f"{output}: label map {list(seg.shape)} does not fit series {series.series_uid} "
                         f"{series.properties['shape']}")
    try:
        sources = [pydicom.dcmread(str(f)) for f in series.files]
    except Exception as e:  # pydicom raises several types for bad files
        raise InputError(f"{series.files[0]}: unreadable DICOM file for the SEG's references ({e})") from None
    masks, names = segment_masks(seg, label_manager)
    algorithm = hd.AlgorithmIdentificationSequence(name=MANUFACTURER, family=codes.cid7162.ArtificialIntelligence,
                                                   version=algorithm_version or _version())
    descriptions = [hd.seg.SegmentDescription(
        segment_number=i + 1, segment_label=name[:64], segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=codes.SCT.Tissue, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm) for i, name in enumerate(names)]
    document = hd.seg.Segmentation(
        source_images=sources, pixel_array=masks, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=series_number,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER,
        manufacturer_model_name="SegFormer3D", software_versions=_version(), device_serial_number="0",
        series_description=f"{MANUFACTURER} segmentation", omit_empty_frames=False)
    output = Path(output)
    with atomic_path(output, suffix=".dcm") as tmp:
        document.save_as(str(tmp))
    return output


def read_dicom_seg_masks(path: str | Path, series: DicomSeries) -> tuple[np.ndarray, list[str]]:
    """Read a DICOM SEG back as masks (z, y, x, segments) in the order of ``series.files``, with segment labels."""
    import highdicom as hd

    document = hd.seg.segread(str(path))
    uids = [_sop_uid(f) for f in series.files]
    numbers = list(document.segment_numbers)
    masks = document.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=numbers,
                                                   ignore_spatial_locations=False)
    labels = [document.get_segment_description(n).segment_label for n in numbers]
    return np.asarray(masks).astype(np.uint8), labels


def _sop_uid(path: Path) -> str:
    import pydicom

    return str(pydicom.dcmread(str(path), stop_before_pixels=True).SOPInstanceUID)


def _version() -> str:
    from segformer3d_auto import __version__

    return str(__version__)
