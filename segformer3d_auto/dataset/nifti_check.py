"""Detect what SimpleITK hides in NIfTI files: truncated voxel data (read as zeros) and NaN/inf (read as 0).

A download cut short, or a copy interrupted, leaves a ``.nii.gz`` whose voxel data silently ends early. The
check here is cheap: it compares the size that the header promises with the gzip trailer's record of the
uncompressed size (or with the file size for ``.nii``), and only decompresses the whole stream when the two
disagree (a multi-member gzip file also lands there). NaN and inf can only be seen by scanning the stored
floats, which ``has_nonfinite_voxels`` does for floating-point files.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

_CHUNK = 1 << 22


def nifti_problem(path: str | Path) -> str | None:
    """Why the NIfTI file ``path`` is incomplete, or None when its voxel data is all there (or not NIfTI).

    Files that are not NIfTI by name are not checked. A header that cannot be parsed is left to the image
    reader to report.
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        return _gzip_problem(path)
    if name.endswith(".nii"):
        with open(path, "rb") as f:
            expected = _expected_size(f.read(544))
        if expected is not None and path.stat().st_size < expected:
            return f"truncated: {path.stat().st_size} bytes, the header promises {expected}"
    return None


def _gzip_problem(path: Path) -> str | None:
    try:
        with gzip.open(path, "rb") as f:
            expected = _expected_size(f.read(544))
    except (OSError, EOFError, zlib.error) as e:
        return f"unreadable gzip data ({e})"
    if expected is None:
        return None
    with open(path, "rb") as f:
        f.seek(-4, 2)
        trailer = struct.unpack("<I", f.read(4))[0]
    if trailer == expected % (1 << 32):
        return None
    total = 0
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                total += len(chunk)
    except (OSError, EOFError, zlib.error) as e:
        return f"truncated or corrupt gzip data ({e})"
    if total < expected:
        return f"truncated: {total} bytes of data, the header promises {expected}"
    return None


def has_nonfinite_voxels(path: str | Path) -> bool:
    """Whether a floating-point NIfTI file stores NaN or inf voxels (other files: False).

    SimpleITK's NIfTI reader silently turns NaN and inf into 0, so the values can only be seen in the file's
    own bytes. Streams through the data; integer NIfTI files (most CT) cost nothing.
    """
    path = Path(path)
    name = path.name.lower()
    if not name.endswith((".nii", ".nii.gz")):
        return False
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rb") as f:
        info = _header_info(f.read(544))
        if info is None or info[2] is None:
            return False
        _, offset, dtype = info
        f.seek(offset)
        step = _CHUNK - _CHUNK % dtype.itemsize
        while chunk := f.read(step):
            usable = len(chunk) - len(chunk) % dtype.itemsize
            if not np.isfinite(np.frombuffer(chunk[:usable], dtype=dtype)).all():
                return True
    return False


def _expected_size(header: bytes) -> int | None:
    """vox_offset + voxel bytes from a NIfTI-1 or NIfTI-2 header, or None when it is not one."""
    info = _header_info(header)
    return None if info is None else info[0]


def _header_info(header: bytes) -> tuple[int, int, np.dtype | None] | None:
    """(expected file size, data offset, float dtype or None) of a NIfTI-1/2 header; None if not NIfTI."""
    if len(header) < 348:
        return None
    for endian in "<>":
        size = struct.unpack(endian + "i", header[:4])[0]
        if size == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            datatype, bitpix = struct.unpack(endian + "2h", header[70:74])
            offset = int(struct.unpack(endian + "f", header[108:112])[0])
            break
        if size == 540 and len(header) >= 540:
            datatype, bitpix = struct.unpack(endian + "2h", header[12:16])
            dims = struct.unpack(endian + "8q", header[16:80])
            offset = struct.unpack(endian + "q", header[168:176])[0]
            break
    else:
        return None
    ndim = dims[0]
    if not 1 <= ndim <= 7 or bitpix <= 0:
        return None
    voxels = 1
    for d in dims[1:ndim + 1]:
        voxels *= max(int(d), 1)
    offset = max(offset, size)
    floats = {16: "f4", 64: "f8"}  # NIfTI DT_FLOAT32, DT_FLOAT64
    dtype = np.dtype(endian + floats[datatype]) if datatype in floats else None
    return offset + voxels * bitpix // 8, offset, dtype
