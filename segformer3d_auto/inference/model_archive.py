"""One-file trained models: a zip with what prediction needs, checked member by member before anything is used.

Layout of the zip (paths relative to the model folder ``DatasetXXX_Name/SegFormer3D__3d_fullres``)::

    manifest.json                       format, dataset name, folds, checkpoint, versions, sha256 of every member
    plans.json  dataset.json  dataset_fingerprint.json
    crossval/postprocessing.json  crossval/summary.json          when the model folder has them
    fold_N/checkpoint_{final|best}.pth  network weights only (no optimizer state), read with weights_only
    fold_N/checkpoint_{final|best}.onnx the same network at the planned patch size (left out with --no-onnx)

Reading a zip (:func:`read_manifest`, :func:`extract_model`, :func:`install_model`) refuses, with an
``InputError`` naming the zip, anything that is not exactly this: a broken or truncated zip, a member that is not
listed in the manifest or not of the layout above (so no path can climb out of the target folder), a listed
member that is missing, or a member whose sha256 differs from the manifest's. Files are written to a temporary
folder beside the target and moved into place only when every member checked out, so a refused zip installs
nothing. The checksums catch corruption and edited members; they are not a signature.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from segformer3d_auto.atomic import atomic_path
from segformer3d_auto.errors import InputError
from segformer3d_auto.model_folder import model_folder_for

MANIFEST = "manifest.json"
FORMAT = 1
MODEL_FILES = ("plans.json", "dataset.json", "dataset_fingerprint.json", "crossval/postprocessing.json",
               "crossval/summary.json")
"""Model-folder files that go into the zip when present (plans.json and dataset.json are required)."""
_MEMBER = re.compile(r"^(plans\.json|dataset\.json|dataset_fingerprint\.json|crossval/(postprocessing|summary)"
                     r"\.json|fold_\d{1,3}/checkpoint_(final|best)\.(pth|onnx))$")
DATASET_NAME = re.compile(r"^Dataset\d{3,}_[A-Za-z0-9_\-]+$")
_CHUNK = 1 << 20
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError)
"""What a damaged zip raises while being read: bad headers, CRC errors, truncated or corrupt deflate data."""


def is_model_archive(path: str | Path) -> bool:
    """True when ``path`` names a file ending in ``.zip`` (a model folder is a directory)."""
    path = Path(path)
    return path.suffix.lower() == ".zip" and not path.is_dir()


def write_archive(output_zip: str | Path, members: dict[str, bytes], manifest: dict[str, Any]) -> Path:
    """Write ``members`` and a manifest with their sizes and sha256 to ``output_zip`` atomically.

    Args:
        output_zip: the zip to write (replaced if it exists).
        members: member name (layout of the module docstring) to content.
        manifest: everything but ``files``, which is filled in here.

    Returns:
        ``output_zip``.
    """
    bad = [name for name in members if not _MEMBER.match(name)]
    if bad:
        raise ValueError(f"not members of a model zip: {bad}")
    files = {name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
             for name, data in sorted(members.items())}
    manifest = {**manifest, "format": FORMAT, "files": files}
    output_zip = Path(output_zip)
    output_zip.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output_zip, suffix=".zip") as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
            archive.writestr(MANIFEST, json.dumps(manifest, indent=2))
            for name in sorted(members):
                archive.writestr(name, members[name])
    return output_zip


def read_manifest(archive_path: str | Path, verify: bool = True) -> dict[str, Any]:
    """The manifest of a model zip, after checking the zip's members against it.

    Args:
        archive_path: the zip.
        verify: also read every member and compare its sha256 and size with the manifest.

    Raises:
        InputError: the zip is unreadable, truncated or corrupt, lacks a valid manifest, has a member the
            manifest does not list or that is not part of a model zip, misses a listed member, or a member's
            checksum differs.
    """
    archive_path = Path(archive_path)
    with _open_zip(archive_path) as archive:
        manifest = _load_manifest(archive, archive_path)
        _check_members(archive, manifest, archive_path, verify)
    return manifest


def extract_model(archive_path: str | Path, target: str | Path) -> dict[str, Any]:
    """Check a model zip and extract it into the folder ``target``, which must not exist yet.

    The members go to a temporary folder beside ``target`` first, which is renamed to ``target`` only once
    everything checked out. Returns the manifest.

    Raises:
        InputError: see :func:`read_manifest`; also when ``target`` exists.
    """
    archive_path, target = Path(archive_path), Path(target)
    if target.exists():
        raise InputError(f"{target}: already exists")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with _open_zip(archive_path) as archive:
            manifest = _load_manifest(archive, archive_path)
            _check_members(archive, manifest, archive_path, verify=False)
            for name, expected in manifest["files"].items():
                destination = staging.joinpath(*name.split("/"))
                destination.parent.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha256()
                with _read_member(archive, archive_path, name) as source, open(destination, "wb") as sink:
                    while chunk := _read_chunk(source, archive_path, name):
                        digest.update(chunk)
                        sink.write(chunk)
                _compare(archive_path, name, digest.hexdigest(), destination.stat().st_size, expected)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def install_model(archive_path: str | Path, results: str | Path | None = None, force: bool = False
                  ) -> tuple[Path, bool]:
    """Install a model zip as ``results/DatasetXXX_Name/SegFormer3D__3d_fullres``.

    Args:
        archive_path: the zip written by ``sf3d_export_model``.
        results: the results root; None takes ``$SF3D_RESULTS`` (see ``segformer3d_auto.paths``).
        force: replace a different model that is installed there.

    Returns:
        ``(model folder, changed)``; ``changed`` is False when the very same model was installed already.

    Raises:
        InputError: the zip is refused (see :func:`read_manifest`), or a different model is installed there and
            ``force`` is False.
    """
    archive_path = Path(archive_path)
    manifest = read_manifest(archive_path)
    target = model_folder_for(manifest["dataset"], root=results)
    if target.exists():
        if same_model(target, manifest):
            return target, False
        if not force:
            raise InputError(f"{target}: a different model is installed here; pass --force to replace it with "
                             f"{archive_path}")
    staging = target.with_name(f".{target.name}.installing")
    shutil.rmtree(staging, ignore_errors=True)
    extract_model(archive_path, staging)
    if target.exists():
        old = target.with_name(f".{target.name}.replaced")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(target)
    return target, True


def same_model(folder: str | Path, manifest: dict[str, Any]) -> bool:
    """True when ``folder`` holds every file of ``manifest`` with the same checksum."""
    folder = Path(folder)
    for name, expected in manifest["files"].items():
        path = folder.joinpath(*name.split("/"))
        if not path.is_file() or path.stat().st_size != expected["size"] or _sha256_file(path) != expected["sha256"]:
            return False
    return True


@contextmanager
def opened_model(path: str | Path) -> Iterator[Path]:
    """A model folder for ``path``: the folder itself, or a model zip checked and extracted to a temporary folder."""
    path = Path(path)
    if not is_model_archive(path):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="sf3d_model.") as tmp:
        folder = Path(tmp) / "model"
        extract_model(path, folder)
        yield folder


def _open_zip(archive_path: Path) -> zipfile.ZipFile:
    if not archive_path.is_file():
        raise InputError(f"{archive_path}: no such model zip")
    try:
        return zipfile.ZipFile(archive_path)
    except _ZIP_ERRORS as e:
        raise InputError(f"{archive_path}: not a readable zip, truncated or corrupt ({e})") from None


def _load_manifest(archive: zipfile.ZipFile, archive_path: Path) -> dict[str, Any]:
    try:
        with _read_member(archive, archive_path, MANIFEST) as handle:
            manifest = json.loads(handle.read(1 << 24).decode("utf-8"))
    except KeyError:
        raise InputError(f"{archive_path}: not a model zip ({MANIFEST} missing)") from None
    except _ZIP_ERRORS as e:
        raise InputError(f"{archive_path}: {MANIFEST} is unreadable ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{archive_path}: {MANIFEST} is not a model manifest of format {FORMAT}")
    files, dataset = manifest.get("files"), manifest.get("dataset")
    if not isinstance(dataset, str) or not DATASET_NAME.match(dataset):
        raise InputError(f"{archive_path}: {MANIFEST} names no valid dataset (got {dataset!r})")
    if not isinstance(files, dict) or not all(isinstance(v, dict) and isinstance(v.get("sha256"), str)
                                              and isinstance(v.get("size"), int) for v in files.values()):
        raise InputError(f"{archive_path}: {MANIFEST} lacks the files' checksums")
    for name in files:
        if not _MEMBER.match(name):
            raise InputError(f"{archive_path}: unexpected member {name!r} in {MANIFEST}")
    for required in ("plans.json", "dataset.json"):
        if required not in files:
            raise InputError(f"{archive_path}: {required} missing")
    return manifest


def _check_members(archive: zipfile.ZipFile, manifest: dict[str, Any], archive_path: Path, verify: bool) -> None:
    names = [info.filename for info in archive.infolist()]
    listed = manifest["files"]
    for name in names:
        if name != MANIFEST and name not in listed:
            raise InputError(f"{archive_path}: unexpected member {name!r} (not in {MANIFEST})")
    if len(names) != len(set(names)):
        raise InputError(f"{archive_path}: duplicate members")
    for name, expected in listed.items():
        if name not in names:
            raise InputError(f"{archive_path}: member {name} missing")
        if verify:
            digest, size = hashlib.sha256(), 0
            with _read_member(archive, archive_path, name) as handle:
                while chunk := _read_chunk(handle, archive_path, name):
                    digest.update(chunk)
                    size += len(chunk)
            _compare(archive_path, name, digest.hexdigest(), size, expected)


def _read_member(archive: zipfile.ZipFile, archive_path: Path, name: str) -> Any:
    try:
        return archive.open(name)
    except KeyError:
        raise
    except (*_ZIP_ERRORS, NotImplementedError) as e:
        raise InputError(f"{archive_path}: member {name} is unreadable ({e})") from None


def _read_chunk(handle: io.BufferedIOBase, archive_path: Path, name: str) -> bytes:
    try:
        return handle.read(_CHUNK)
    except _ZIP_ERRORS as e:  # CRC errors, truncated data, bad deflate
        raise InputError(f"{archive_path}: member {name} is corrupt ({e})") from None


def _compare(archive_path: Path, name: str, digest: str, size: int, expected: dict[str, Any]) -> None:
    if digest != expected["sha256"] or size != expected["size"]:
        raise InputError(f"{archive_path}: checksum mismatch for {name} (the zip was altered or damaged)")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()

