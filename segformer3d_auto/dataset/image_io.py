"""Reading and writing 3D medical images with SimpleITK, as numpy arrays in (c, z, y, x) order.

Every reader returns a ``properties`` dict that is enough to write a prediction back in the input's own
geometry::

    {"spacing": [sz, sy, sx],          # array axis order (reversed from SimpleITK)
     "origin": [ox, oy, oz],           # SimpleITK (physical x, y, z) order
     "direction": [d0, ..., d8],       # SimpleITK order, row-major 3x3
     "shape": [z, y, x]}

Bad files raise ``InputError`` with a one-line message ``"<file>: <problem>"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from segformer3d_auto.atomic import atomic_path
from segformer3d_auto.dataset.nifti_check import has_nonfinite_voxels, nifti_problem
from segformer3d_auto.errors import InputError

SUPPORTED_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha")

# Tolerances for "the same geometry" (channels of one case, image vs. label). np.allclose-style, as nnU-Net
# compares spacings; origins get a slightly larger absolute tolerance (mm) because writers round them.
SPACING_TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}
ORIGIN_TOLERANCE = {"rtol": 1e-5, "atol": 1e-4}
DIRECTION_TOLERANCE = {"rtol": 0.0, "atol": 1e-5}


def file_ending(path: str | Path) -> str | None:
    """The supported ending of ``path`` (``".nii.gz"`` before ``".nii"``), or None."""
    name = Path(path).name.lower()
    for ending in SUPPORTED_ENDINGS:
        if name.endswith(ending):
            return ending
    return None


def read_image_header(path: str | Path) -> dict:
    """Read only the header of an image: cheap, for integrity checks over many files.

    Returns:
        ``{"dimension", "shape", "spacing", "origin", "direction", "components"}``; shape and spacing are in
        array axis order (reversed from SimpleITK), origin and direction in SimpleITK order.

    Raises:
        InputError: the file is missing or its header cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as e:
        raise InputError(f"{path}: unreadable image header ({_first_line(e)})") from None
    return {
        "dimension": int(reader.GetDimension()),
        "shape": [int(s) for s in reversed(reader.GetSize())],
        "spacing": [float(s) for s in reversed(reader.GetSpacing())],
        "origin": [float(o) for o in reader.GetOrigin()],
        "direction": [float(d) for d in reader.GetDirection()],
        "components": int(reader.GetNumberOfComponents()),
    }


def geometry_difference(a: dict, b: dict, check_shape: bool = True) -> str | None:
    """Describe how the geometry of two properties/header dicts differs, or None when it agrees.

    Compares shape (exactly, unless ``check_shape`` is False), spacing, origin and direction with the module's
    tolerances.
    """
    if check_shape and list(a["shape"]) != list(b["shape"]):
        return f"shape {list(a['shape'])} != {list(b['shape'])}"
    for key, tol in (("spacing", SPACING_TOLERANCE), ("origin", ORIGIN_TOLERANCE),
                     ("direction", DIRECTION_TOLERANCE)):
        va, vb = np.asarray(a[key], dtype=float), np.asarray(b[key], dtype=float)
        if va.shape != vb.shape or not np.allclose(va, vb, **tol):
            return f"{key} {_fmt(a[key])} != {_fmt(b[key])}"
    return None


def read_images(paths: Sequence[str | Path]) -> tuple[np.ndarray, dict]:
    """Read the channel files of one case into a float32 array (c, z, y, x) plus its properties.

    Raises:
        InputError: naming the file, when it is unreadable or truncated, not 3D, not scalar, contains NaN or
            inf, or its geometry (shape, spacing, origin, direction) differs from the first channel's.
    """
    if isinstance(paths, (str, Path)) or len(paths) == 0:
        raise ValueError(f"read_images needs a non-empty list of channel files, got {paths!r}")
    arrays: list[np.ndarray] = []
    first: dict | None = None
    for path in paths:
        image = _read(Path(path))
        props = _properties(image)
        array = sitk.GetArrayFromImage(image).astype(np.float32, copy=False)
        if not np.isfinite(array).all() or has_nonfinite_voxels(path):
            raise InputError(f"{path}: contains NaN or inf values")
        if first is None:
            first = props
        else:
            diff = geometry_difference(props, first)
            if diff is not None:
                raise InputError(f"{path}: geometry differs from the first channel {paths[0]}: {diff}")
        arrays.append(array)
    return np.stack(arrays), first


def read_segmentation(path: str | Path) -> tuple[np.ndarray, dict]:
    """Read a label map into an integer array (z, y, x) of the smallest fitting dtype, plus its properties.

    Raises:
        InputError: the file is unreadable or truncated, not 3D, or holds non-integer, NaN or inf values.
    """
    path = Path(path)
    image = _read(path)
    props = _properties(image)
    array = sitk.GetArrayFromImage(image)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or has_nonfinite_voxels(path):
            raise InputError(f"{path}: contains NaN or inf values")
        rounded = np.rint(array)
        if not np.array_equal(rounded, array):
            raise InputError(f"{path}: label map holds non-integer values")
        array = rounded.astype(np.int64)
    if array.size == 0:
        return array.astype(np.uint8), props
    return array.astype(smallest_int_dtype(int(array.min()), int(array.max())), copy=False), props


def smallest_int_dtype(low: int, high: int) -> np.dtype:
    """The smallest integer dtype holding ``low..high`` (unsigned when ``low >= 0``)."""
    candidates = (np.uint8, np.uint16, np.uint32, np.uint64) if low >= 0 else (np.int8, np.int16, np.int32,
                                                                              np.int64)
    for dtype in candidates:
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return np.dtype(dtype)
    raise ValueError(f"no integer dtype holds {low}..{high}")


def write_segmentation(seg: np.ndarray, properties: dict, path: str | Path) -> None:
    """Write a label map (z, y, x) atomically with exactly the geometry in ``properties``.

    The format follows the file ending; values are stored as uint8 when they fit (else the smallest integer
    type that holds them).

    Raises:
        ValueError: ``seg`` is not 3D integer data of ``properties["shape"]``.
        InputError: the file ending is not supported.
    """
    seg = np.asarray(seg)
    if seg.ndim != 3:
        raise ValueError(f"segmentation must be 3D (z, y, x), got shape {seg.shape}")
    if list(seg.shape) != [int(s) for s in properties["shape"]]:
        raise ValueError(f"segmentation shape {list(seg.shape)} != properties shape {list(properties['shape'])}")
    if not (np.issubdtype(seg.dtype, np.integer) or seg.dtype == bool):
        raise ValueError(f"segmentation must hold integers, got dtype {seg.dtype}")
    low, high = (int(seg.min()), int(seg.max())) if seg.size else (0, 0)
    write_image(seg.astype(smallest_int_dtype(low, high), copy=False), properties, path)


def write_image(array: np.ndarray, properties: dict, path: str | Path) -> None:
    """Write a 3D array (z, y, x) atomically with the geometry in ``properties`` (spacing, origin, direction).

    The array's dtype is kept; the format follows the file ending. Also used for synthetic data.

    Raises:
        InputError: the file ending is not supported.
    """
    path = Path(path)
    ending = file_ending(path)
    if ending is None:
        raise InputError(f"{path}: unsupported file ending (supported: {', '.join(SUPPORTED_ENDINGS)})")
    array = np.asarray(array)
    if array.ndim != 3:
        raise ValueError(f"image must be 3D (z, y, x), got shape {array.shape}")
    image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=False)
    image.SetSpacing([float(s) for s in reversed(properties["spacing"])])
    image.SetOrigin([float(o) for o in properties["origin"]])
    image.SetDirection([float(d) for d in properties["direction"]])
    with atomic_path(path, suffix=ending) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=ending != ".nii")


def _read(path: Path) -> sitk.Image:
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    problem = nifti_problem(path)
    if problem is not None:
        raise InputError(f"{path}: {problem}")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise InputError(f"{path}: unreadable or truncated image ({_first_line(e)})") from None
    dim = image.GetDimension()
    if dim != 3:
        raise InputError(f"{path}: {dim}D image, expected a 3D image")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{path}: {image.GetNumberOfComponentsPerPixel()} components per voxel, "
                         "expected a scalar image (one file per channel)")
    return image


def _properties(image: sitk.Image) -> dict:
    return {
        "spacing": [float(s) for s in reversed(image.GetSpacing())],
        "origin": [float(o) for o in image.GetOrigin()],
        "direction": [float(d) for d in image.GetDirection()],
        "shape": [int(s) for s in reversed(image.GetSize())],
    }


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # ITK messages start with a source-location line; the useful text is usually last.
    return lines[-1] if lines else type(error).__name__


def _fmt(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{float(v):.6g}" for v in values) + "]"
