"""Preprocess every training case of a dataset into ``3d_fullres/``, resumably.

A case is three files: ``{case}.npy`` (image), ``{case}_seg.npy`` (labels) and ``{case}.json`` (properties, written
last). Each is written atomically and a case counts as done only when its properties exist, so a killed run leaves
no half-written case and a re-run completes the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segformer3d_auto.atomic import save_npy, write_json
from segformer3d_auto.dataset.dataset_json import CaseFiles
from segformer3d_auto.dataset.image_io import read_images, read_segmentation
from segformer3d_auto.dataset.labels import LabelManager
from segformer3d_auto.preprocessing.case_preprocessor import preprocess_case, sample_foreground_locations

SEED = 1234


def case_is_done(output_folder: Path, identifier: str) -> bool:
    """Whether all three files of a case exist (the properties are written last)."""
    return all((output_folder / f"{identifier}{suffix}").exists() for suffix in (".npy", "_seg.npy", ".json"))


def preprocess_training_case(
    case: CaseFiles, plans: dict[str, Any], dataset_json: dict[str, Any], output_folder: Path
) -> str:
    """Read, preprocess and write one training case; returns its identifier."""
    data, properties = read_images(case.images)
    seg, _ = read_segmentation(case.label)
    data, seg, properties = preprocess_case(data, seg.astype(np.int16, copy=False), properties, plans)
    labels = LabelManager.from_dataset_json(dataset_json)
    properties["class_locations"] = sample_foreground_locations(seg, labels.classes_or_regions, seed=SEED)
    save_npy(np.ascontiguousarray(data, dtype=np.float32), output_folder / f"{case.identifier}.npy")
    save_npy(np.ascontiguousarray(seg), output_folder / f"{case.identifier}_seg.npy")
    write_json(properties, output_folder / f"{case.identifier}.json")
    return case.identifier


def preprocess_dataset(
    cases: Sequence[CaseFiles],
    plans: dict[str, Any],
    dataset_json: dict[str, Any],
    output_folder: Path,
    map_fn: Callable[[Callable[..., Any], Iterable[Any]], Iterable[Any]] | None = None,
) -> list[str]:
    """Preprocess the cases that are not done yet; returns the identifiers processed now.

    Only the temporaries of ``cases`` are cleaned up, so that parts of one dataset (``--num-parts``) can run at
    the same time into the same folder.
    """
    output_folder = Path(output_folder)
    output_folder.mkdir(parents=True, exist_ok=True)
    for case in cases:  # temporary files of a killed run: atomic writes go to ".{name}.XXXX" beside the file
        for suffix in (".npy", "_seg.npy", ".json"):
            for stale in output_folder.glob(f".{case.identifier}{suffix}.*"):
                stale.unlink(missing_ok=True)
    todo = [c for c in cases if not case_is_done(output_folder, c.identifier)]
    jobs = [(c, plans, dataset_json, output_folder) for c in todo]
    return list((map_fn or map)(_preprocess_star, jobs))


def _preprocess_star(args: tuple) -> str:
    return preprocess_training_case(*args)
