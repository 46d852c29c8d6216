"""Predicting a folder of images (``imagesTs`` layout) into a folder of label maps, resumably and in shards.

Inputs are checked before any prediction starts (naming, channel count, readable headers, channel geometry,
writable output folder), so bad input fails in a second with one line naming the file rather than after an hour.
Each output appears atomically; ``continue_prediction`` skips cases whose label map exists, so a killed run
resumes where it stopped. ``num_parts``/``part_id`` split the sorted cases round-robin between processes or
machines writing into the same output folder.
"""

from __future__ import annotations

import os
import tempfile
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from segformer3d_auto.atomic import read_json, write_json
from segformer3d_auto.dataset.dataset_json import CaseFiles, list_image_cases
from segformer3d_auto.dataset.image_io import geometry_difference, read_image_header
from segformer3d_auto.errors import InputError
from segformer3d_auto.inference.export import probability_file, write_prediction
from segformer3d_auto.inference.predictor import Predictor


def predict_folder(
    predictor: Predictor,
    input_folder: str | Path,
    output_folder: str | Path,
    save_probabilities: bool = False,
    continue_prediction: bool = False,
    num_parts: int = 1,
    part_id: int = 0,
    read_ahead: int = 1,
    progress: bool = True,
) -> list[Path]:
    """Predict every case of ``input_folder`` with a ``Predictor`` into ``output_folder``.

    Args:
        predictor: a ``segformer3d_auto.inference.predictor.Predictor``.
        input_folder: images named ``{case}_{XXXX}{file_ending}``, one file per channel.
        output_folder: receives ``{case}{file_ending}`` (and ``{case}.npz`` with ``save_probabilities``),
            plus copies of the model's ``plans.json`` and ``dataset.json``.
        save_probabilities: also write the probabilities in the input's geometry.
        continue_prediction: skip cases whose outputs already exist.
        num_parts: number of shards the cases are split into.
        part_id: which shard this call predicts, ``0 <= part_id < num_parts``.
        read_ahead: cases read and preprocessed ahead in background threads while the network runs
            (0: one case at a time, the least memory).
        progress: show a progress bar over the cases (and per case over the windows).

    Returns:
        The label maps written by this call (skipped cases are not listed).

    Raises:
        InputError: an input is missing, misnamed, unreadable or has the wrong channels, or the output
            folder cannot be written.
    """
    if num_parts < 1 or not 0 <= part_id < num_parts:
        raise ValueError(f"need num_parts >= 1 and 0 <= part_id < num_parts, got {num_parts} and {part_id}")
    if read_ahead < 0:
        raise ValueError(f"read_ahead must be >= 0, got {read_ahead}")
    cases = check_inputs(input_folder, predictor.file_ending, predictor.num_input_channels)
    output_folder = Path(output_folder)
    check_output_folder(output_folder)
    _copy_model_files(predictor.model_folder, output_folder)
    todo = []
    for case in cases[part_id::num_parts]:
        output = output_folder / f"{case.identifier}{predictor.file_ending}"
        if continue_prediction and _finished(output, save_probabilities):
            continue
        _remove_stale_temporaries(output)
        todo.append((case, output))
    written = []
    bar = tqdm(total=len(todo), desc="cases", unit="case", disable=not progress)
    in_flight = read_ahead + 1  # the case being predicted plus those preprocessed ahead
    with ThreadPoolExecutor(max_workers=max(1, read_ahead)) as pool:
        ahead: deque[tuple[Path, Future]] = deque()
        queue = iter(todo)
        while True:
            while len(ahead) < in_flight and (nxt := next(queue, None)) is not None:
                case, output = nxt
                ahead.append((output, pool.submit(predictor.preprocess_files, case.images)))
            if not ahead:
                break
            output, future = ahead.popleft()
            try:
                data, properties = future.result()
            except BaseException:
                for _, pending in ahead:
                    pending.cancel()
                raise
            bar.set_postfix_str(output.name)
            seg, probabilities = predictor.predict_preprocessed(data, properties, save_probabilities)
            del data
            write_prediction(seg, properties, output, probabilities)
            del seg, probabilities
            written.append(output)
            bar.update(1)
    bar.close()
    return written


def check_inputs(input_folder: str | Path, file_ending: str, num_channels: int) -> list[CaseFiles]:
    """The cases of ``input_folder``, after checking every file's name, header and channel geometry.

    Raises:
        InputError: naming the file: empty or missing folder, misnamed file, a channel beyond the model's or
            missing, an unreadable header, a non-3D image, or channels whose geometry differs.
    """

    cases = list_image_cases(input_folder, file_ending, num_channels)
    for case in cases:
        first = None
        for path in case.images:
            header = read_image_header(path)
            if header["dimension"] != 3:
                raise InputError(f"{path}: {header['dimension']}D image, expected a 3D image")
            if first is None:
                first = header
            elif (diff := geometry_difference(header, first)) is not None:
                raise InputError(f"{path}: geometry differs from the first channel {case.images[0]}: {diff}")
    return cases


def check_output_folder(output_folder: str | Path) -> None:
    """Create ``output_folder`` if needed and make sure files can be written into it.

    Raises:
        InputError: it cannot be created or written to.
    """
    output_folder = Path(output_folder)
    try:
        output_folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write_test.", dir=output_folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise InputError(f"{output_folder}: output folder is not writable ({e.strerror or e})") from None


def _finished(output: Path, save_probabilities: bool) -> bool:
    return output.is_file() and (not save_probabilities or probability_file(output).is_file())


def _remove_stale_temporaries(output: Path) -> None:
    """Delete temporary files a killed run left for this output (``.{name}.XXXX`` beside it)."""
    for target in (output, probability_file(output)):
        for stale in target.parent.glob(f".{target.name}.*"):
            stale.unlink(missing_ok=True)


def _copy_model_files(model_folder: Path, output_folder: Path) -> None:
    """Copy plans.json and dataset.json beside the predictions, so the folder says what made it."""
    for name in ("plans.json", "dataset.json"):
        source = Path(model_folder) / name
        if source.is_file():
            write_json(read_json(source), output_folder / name)
