"""Where datasets live: the three roots (raw, preprocessed, results) and dataset-name resolution.

Each root comes from its own environment variable (``SF3D_RAW``, ``SF3D_PREPROCESSED``, ``SF3D_RESULTS``); an
unset one falls back to ``$SF3D_HOME/raw|preprocessed|results``, with ``SF3D_HOME`` defaulting to
``~/sf3d_data``, so nothing has to be set to start. The environment is read at call time, not at import, so
tests and long-lived processes see changes.

A dataset is named by its ID (``501``, ``"501"``) or its full folder name (``"Dataset501_Name"``) everywhere.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from segformer3d_auto.errors import InputError

DEFAULT_HOME = "~/sf3d_data"
_FULL_NAME = re.compile(r"^Dataset(\d{3,})_(.+)$")


def _root(variable: str, sub: str) -> Path:
    value = os.environ.get(variable)
    if value:
        return Path(value).expanduser()
    home = os.environ.get("SF3D_HOME") or DEFAULT_HOME
    return Path(home).expanduser() / sub


def raw_root() -> Path:
    """Root of the raw datasets (nnU-Net v2 layout): ``$SF3D_RAW`` or ``$SF3D_HOME/raw``."""
    return _root("SF3D_RAW", "raw")


def preprocessed_root() -> Path:
    """Root of the preprocessed datasets: ``$SF3D_PREPROCESSED`` or ``$SF3D_HOME/preprocessed``."""
    return _root("SF3D_PREPROCESSED", "preprocessed")


def results_root() -> Path:
    """Root of the trained models: ``$SF3D_RESULTS`` or ``$SF3D_HOME/results``."""
    return _root("SF3D_RESULTS", "results")


def all_roots() -> list[Path]:
    """The three roots in pipeline order (raw, preprocessed, results)."""
    return [raw_root(), preprocessed_root(), results_root()]


def dataset_name(dataset_id: int, name: str) -> str:
    """The folder name of a dataset: ``Dataset{ID:03d}_{name}``.

    Raises:
        ValueError: a negative ID, or a name that is empty or contains a path separator.
    """
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, int) or dataset_id < 0:
        raise ValueError(f"dataset ID must be a non-negative int, got {dataset_id!r}")
    if not name or "/" in name or "\\" in name or name.strip() != name:
        raise ValueError(f"dataset name must be a non-empty word without slashes or edge spaces, got {name!r}")
    return f"Dataset{dataset_id:03d}_{name}"


def parse_dataset_name(name: str) -> tuple[int, str]:
    """Split ``"Dataset501_Name"`` into ``(501, "Name")``; ValueError when it is not of that form."""
    match = _FULL_NAME.match(name)
    if match is None:
        raise ValueError(f"not a dataset folder name of the form Dataset<ID>_<Name>: {name!r}")
    return int(match.group(1)), match.group(2)


def list_datasets(roots: list[Path] | None = None) -> list[str]:
    """Names of all ``Dataset*_*`` folders found under the given roots (default: the three roots), sorted."""
    found: set[str] = set()
    for root in all_roots() if roots is None else roots:
        if root.is_dir():
            found.update(p.name for p in root.iterdir() if p.is_dir() and _FULL_NAME.match(p.name))
    return sorted(found)


def resolve_dataset_name(dataset: str | int, roots: list[Path] | None = None) -> str:
    """Turn an ID (``501``, ``"501"``) or a full name (``"Dataset501_Name"``) into the full folder name.

    A full name is returned as it is (it may name a dataset still to be made). An ID is looked up among the
    ``Dataset{ID:03d}_*`` folders of ``roots`` (default: raw, preprocessed and results roots).

    Raises:
        InputError: the ID matches no dataset (the message lists those that exist), or matches folders with
            different names, or the argument is neither an ID nor a full name.
    """
    if isinstance(dataset, bool):
        raise InputError(f"dataset {dataset!r}: expected an ID like 501 or a name like Dataset501_Name")
    if isinstance(dataset, str):
        text = dataset.strip()
        if text.startswith("Dataset"):
            if not _FULL_NAME.match(text):
                raise InputError(f"dataset {dataset!r}: expected a name like Dataset501_Name")
            return text
        if not text.isdigit():
            raise InputError(f"dataset {dataset!r}: expected an ID like 501 or a name like Dataset501_Name")
        dataset_id = int(text)
    elif isinstance(dataset, int):
        dataset_id = dataset
    else:
        raise InputError(f"dataset {dataset!r}: expected an ID like 501 or a name like Dataset501_Name")
    if dataset_id < 0:
        raise InputError(f"dataset {dataset!r}: a dataset ID is a non-negative integer")
    search = all_roots() if roots is None else roots
    existing = list_datasets(search)
    matches = [name for name in existing if parse_dataset_name(name)[0] == dataset_id]
    if not matches:
        where = ", ".join(str(r) for r in search)
        listing = ", ".join(existing) if existing else "none"
        raise InputError(f"dataset {dataset_id}: no Dataset{dataset_id:03d}_* folder in {where} "
                         f"(datasets found: {listing})")
    if len(matches) > 1:
        raise InputError(f"dataset {dataset_id}: ambiguous, several folders have this ID: {', '.join(matches)}; "
                         "use the full name")
    return matches[0]


def dataset_folder(root: Path, dataset: str | int) -> Path:
    """The folder of ``dataset`` under ``root``; an ID is looked up under ``root`` first, then the three roots."""
    root = Path(root)
    dataset_id = _parse_id(dataset)
    if dataset_id is not None and any(parse_dataset_name(n)[0] == dataset_id for n in list_datasets([root])):
        return root / resolve_dataset_name(dataset, [root])
    return root / resolve_dataset_name(dataset)


def _parse_id(dataset: str | int) -> int | None:
    if isinstance(dataset, int) and not isinstance(dataset, bool):
        return dataset
    if isinstance(dataset, str) and dataset.strip().isdigit():
        return int(dataset.strip())
    return None
