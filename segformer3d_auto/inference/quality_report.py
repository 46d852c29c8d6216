"""The quality report written at every prediction: ``OUT/report.json`` and one warning line per flagged case.

A case is flagged, with the measured number and the threshold that flagged it, when:

- an input measure (``quality_measures``) lies outside the training range widened by a margin of
  ``RANGE_MARGIN`` times the range plus ``RELATIVE_MARGIN`` times the larger bound's magnitude (spacing, extent,
  intensity percentiles: catches factors of 2 and more) or plus ``SHAPE_MARGIN`` (the bounded
  ``histogram_shape``); the input's orientation code was never seen in training (only with a recorded reference);
- folds disagree: the mean pairwise Dice of the folds' decisions for a class (on the network grid), where any
  fold predicts it, is below the calibrated minimum minus ``RANGE_MARGIN`` times the calibrated range minus
  ``SCORE_MARGIN``, or below ``FOLD_DICE_MIN`` without calibration (needs two folds or more);
- the mean normalized entropy (0 certain, 1 uniform) of the ensemble inside the predicted foreground exceeds the
  calibrated maximum plus the same margins, or ``ENTROPY_MAX`` without calibration;
- a class's predicted volume is outside ``[min / VOLUME_FACTOR, max * VOLUME_FACTOR]`` of the volumes the model
  predicted on the training cases (calibration), else of the training labels' volumes.

The reference is ``crossval/quality_reference.json``, written by ``sf3d_crossval`` (input measures and label
volumes of every training case; with ``--calibrate-quality`` also the prediction measures of the fold ensemble
on the training cases), else one derived from ``dataset_fingerprint.json``; "unusual" then means unusual for
this model and the data it was trained on. ``--save-uncertainty`` writes ``{case}_entropy.nii.gz`` (float32, the input's
geometry) beside each label map.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segformer3d_auto.atomic import read_json, write_json
from segformer3d_auto.inference import quality_measures as qm

RANGE_MARGIN = 0.5
RELATIVE_MARGIN = 0.5
SHAPE_MARGIN = 0.05
SCORE_MARGIN = 0.1
FOLD_DICE_MIN = 0.5
ENTROPY_MAX = 0.5
VOLUME_FACTOR = 3.0
MIN_ABSOLUTE_MARGIN = 1e-6
REFERENCE_FILE = Path("crossval") / "quality_reference.json"


def thresholds() -> dict[str, float]:
    """The thresholds in force, as written into report.json."""
    return {"range_margin": RANGE_MARGIN, "relative_margin": RELATIVE_MARGIN, "shape_margin": SHAPE_MARGIN,
            "score_margin": SCORE_MARGIN, "fold_dice_min": FOLD_DICE_MIN, "entropy_max": ENTROPY_MAX,
            "volume_factor": VOLUME_FACTOR}


def allowed_range(stats: Mapping[str, float], key: str = "") -> tuple[float, float]:
    """The training range of measure ``key`` widened by the margins."""
    low, high = float(stats["min"]), float(stats["max"])
    extra = SHAPE_MARGIN if key.endswith("histogram_shape") else RELATIVE_MARGIN * max(abs(low), abs(high))
    margin = RANGE_MARGIN * (high - low) + extra + MIN_ABSOLUTE_MARGIN
    return low - margin, high + margin


def input_flags(measures: Mapping[str, Any], reference: Mapping[str, Any] | None,
                channel_names: Mapping[str, str]) -> list[str]:
    """One reason per input measure outside its allowed range (empty without a reference)."""
    if not reference:
        return []
    reasons = []
    for key, stats in reference.get("measures", {}).items():
        if key not in measures or key == "obliquity_degrees":
            continue
        value = float(measures[key])
        low, high = allowed_range(stats, key)
        if not low <= value <= high:
            label = _channel_label(key, channel_names)
            extra = f", {value / stats['median']:.3g}x the training median" \
                if key.startswith("spacing") and stats["median"] else ""
            reasons.append(f"{label} {value:.4g} outside [{low:.4g}, {high:.4g}] (training "
                           f"{stats['min']:.4g}..{stats['max']:.4g}{extra})")
    seen = reference.get("orientations") or []
    if seen and measures.get("orientation") not in seen:
        reasons.append(f"orientation {measures.get('orientation')} not seen in training ({', '.join(seen)})")
    return reasons


def prediction_flags(prediction: Mapping[str, Any], reference: Mapping[str, Any] | None) -> list[str]:
    """Reasons from the prediction measures: fold disagreement, entropy, volumes."""
    reasons = []
    calibrated = (reference or {}).get("prediction", {})
    for name, dice in prediction.get("fold_dice", {}).items():
        limit = FOLD_DICE_MIN
        if name in calibrated.get("fold_dice", {}):
            stats = calibrated["fold_dice"][name]
            limit = stats["min"] - RANGE_MARGIN * (stats["max"] - stats["min"]) - SCORE_MARGIN
        if dice is not None and not math.isnan(dice) and dice < limit:
            reasons.append(f"folds disagree on {name}: mean pairwise Dice {dice:.3f} < {limit:.3f}")
    entropy = prediction.get("mean_entropy_foreground", float("nan"))
    limit = ENTROPY_MAX
    if "mean_entropy_foreground" in calibrated:
        stats = calibrated["mean_entropy_foreground"]
        limit = stats["max"] + RANGE_MARGIN * (stats["max"] - stats["min"]) + SCORE_MARGIN
    if entropy is not None and not math.isnan(entropy) and entropy > limit:
        reasons.append(f"uncertain: mean entropy in the predicted foreground {entropy:.3f} > {limit:.3f}")
    training = calibrated.get("volumes_ml") or (reference or {}).get("volumes_ml", {})
    basis = "model on training cases" if calibrated.get("volumes_ml") else "training labels"
    for name, volume in prediction.get("volumes_ml", {}).items():
        if name in training:
            low, high = training[name]["min"] / VOLUME_FACTOR, training[name]["max"] * VOLUME_FACTOR
            if not low <= volume <= high:
                reasons.append(f"{name} volume {volume:.4g} ml outside [{low:.4g}, {high:.4g}] ({basis} "
                               f"{training[name]['min']:.4g}..{training[name]['max']:.4g} ml)")
    return reasons


def load_reference(model_folder: str | Path) -> dict[str, Any] | None:
    """The model's recorded reference, else one from its fingerprint, else None."""
    model_folder = Path(model_folder)
    if (model_folder / REFERENCE_FILE).is_file():
        return read_json(model_folder / REFERENCE_FILE)
    if (model_folder / "dataset_fingerprint.json").is_file():
        return qm.reference_from_fingerprint(read_json(model_folder / "dataset_fingerprint.json"))
    return None


def build_reference(cases: Sequence[Any], label_manager: Any,
                    channel_names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A reference from training cases (``CaseFiles`` with images and label): input measures and volumes."""
    from segformer3d_auto.dataset.image_io import read_images, read_segmentation

    measures, volumes = [], []
    for case in cases:
        image, props = read_images(case.images)
        measures.append(qm.input_measures(image, props, channel_names))
        if case.label is not None:
            seg, _ = read_segmentation(case.label)
            volumes.append(qm.class_volumes_ml(seg, props["spacing"], label_manager))
    return qm.reference_from_cases(measures, volumes, source="training images")


def record_reference(model_folder: str | Path, raw_dataset_folder: str | Path, calibrate_cases: int = 0,
                     device: str | None = None) -> Path:
    """Write ``crossval/quality_reference.json`` from the raw training cases; returns its path.

    Args:
        model_folder: the trained model folder.
        raw_dataset_folder: the raw dataset (its ``dataset.json`` and training cases).
        calibrate_cases: also predict up to this many training cases with the fold ensemble (no mirroring) and
            record the distribution of the prediction measures, so that their thresholds follow this model.
            The folds have seen most of these cases, so the calibrated disagreement is on the low side.
        device: where calibration predicts (default: CUDA when available).
    """
    from segformer3d_auto.dataset.dataset_json import list_training_cases, load_dataset_json
    from segformer3d_auto.dataset.labels import LabelManager

    if calibrate_cases < 0:
        raise ValueError(f"calibrate_cases must be >= 0, got {calibrate_cases}")
    dataset_json = load_dataset_json(Path(raw_dataset_folder) / "dataset.json")
    cases = list_training_cases(raw_dataset_folder, dataset_json)
    reference = build_reference(cases, LabelManager.from_dataset_json(dataset_json),
                                {str(k): str(v) for k, v in dataset_json["channel_names"].items()})
    if calibrate_cases:
        reference["prediction"] = _calibrate(model_folder, cases[:calibrate_cases], device)
    path = Path(model_folder) / REFERENCE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(_finite(reference), path)
    return path


def _calibrate(model_folder: str | Path, cases: Sequence[Any], device: str | None) -> dict[str, Any]:
    """Distribution of the prediction measures of the fold ensemble over ``cases``."""
    import tempfile

    from segformer3d_auto.inference.predict_folder import predict_folder
    from segformer3d_auto.inference.predictor import Predictor

    predictor = Predictor(model_folder, use_mirroring=False, device=device)
    with tempfile.TemporaryDirectory(prefix=".calibration.", dir=model_folder) as scratch:
        inputs = Path(scratch) / "images"
        inputs.mkdir()
        for case in cases:
            for c, image in enumerate(case.images):
                from segformer3d_auto.dataset.naming import channel_file_name

                (inputs / channel_file_name(case.identifier, c, predictor.file_ending)).symlink_to(
                    Path(image).resolve())
        recorder = QualityRecorder(predictor, Path(scratch) / "out", quiet=True)
        predict_folder(predictor, inputs, Path(scratch) / "out", progress=False, quality=recorder)
    measured = [c["prediction"] for c in recorder.cases.values()]
    names = list(measured[0]["volumes_ml"])
    result: dict[str, Any] = {"cases": len(measured),
                              "volumes_ml": {n: qm.summarize(m["volumes_ml"][n] for m in measured) for n in names}}
    entropies = [m["mean_entropy_foreground"] for m in measured if not math.isnan(m["mean_entropy_foreground"])]
    if entropies:
        result["mean_entropy_foreground"] = qm.summarize(entropies)
    dice = {n: [m["fold_dice"][n] for m in measured if n in m["fold_dice"] and not math.isnan(m["fold_dice"][n])]
            for n in names}
    result["fold_dice"] = {n: qm.summarize(v) for n, v in dice.items() if v}
    return result


class QualityRecorder:
    """Measures each case as ``predict_folder`` predicts it and writes the report at the end.

    Args:
        predictor: the ``Predictor`` (its ``fold_observer`` hook is used during each case).
        output_folder: where report.json (and entropy maps) go.
        save_uncertainty: write ``{case}_entropy{file_ending}`` in the input's geometry.
        quiet: no warning lines on stderr (calibration).
        name: the report's file name without ``.json`` (shards write one each).
    """

    def __init__(self, predictor: Any, output_folder: str | Path, save_uncertainty: bool = False,
                 quiet: bool = False, name: str = "report") -> None:
        self.predictor = predictor
        self.name = name
        self.quiet = quiet
        self.output_folder = Path(output_folder)
        self.save_uncertainty = save_uncertainty
        self.reference = load_reference(predictor.model_folder)
        self.channel_names = {str(k): str(v) for k, v in predictor.dataset_json["channel_names"].items()}
        self.cases: dict[str, dict[str, Any]] = {}
        self.sources: dict[str, list[str]] = {}
        """Case -> where its images came from (the DICOM series), reported instead of the staged files."""

    def predict_case(self, case: Any, output: Path, data: np.ndarray, properties: dict,
                     save_probabilities: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Predict one preprocessed case like ``Predictor.predict_preprocessed`` and measure it."""
        from segformer3d_auto.dataset.image_io import read_images

        image, raw_props = read_images(case.images)
        measures = qm.input_measures(image, raw_props, self.channel_names)
        del image
        regions = self.predictor.label_manager.has_regions
        fold_maps: list[np.ndarray] = []
        total: list[np.ndarray] = []

        def observe(index: int, probabilities: Any) -> None:
            if index == 0:  # a new pass (the predictor redoes all folds after running out of GPU memory)
                fold_maps.clear()
                total.clear()
            array = np.asarray(probabilities, dtype=np.float32) if isinstance(probabilities, np.ndarray) \
                else probabilities.cpu().float().numpy()  # numpy from the ONNX backends, torch otherwise
            fold_maps.append(qm.fold_label_maps(array, regions))
            if total:
                total[0] += array
            elif len(self.predictor.folds) == 1:
                total.append(array)  # nothing changes a lone fold's probabilities later: no copy (1 GB on a CT)
            else:
                total.append(array.copy())  # the predictor sums the later folds into the first one's array

        self.predictor.fold_observer = observe
        try:
            seg, probabilities = self.predictor.predict_preprocessed(data, properties,
                                                                     save_probabilities or self.save_uncertainty)
        finally:
            self.predictor.fold_observer = None
        mean = total[0]
        if len(fold_maps) > 1:
            mean /= len(fold_maps)  # our own copy (see observe)
        entropy, foreground = qm.foreground_entropy(mean, regions)
        del mean
        total.clear()
        prediction = {
            "folds": len(fold_maps),
            "fold_dice": qm.pairwise_fold_dice(fold_maps, self.predictor.label_manager) if len(fold_maps) > 1
            else {},
            "mean_entropy_foreground": entropy,
            "foreground_fraction": foreground,
            "volumes_ml": qm.class_volumes_ml(seg, raw_props["spacing"], self.predictor.label_manager),
        }
        entry: dict[str, Any] = {"input_files": self.sources.get(case.identifier, [str(p) for p in case.images]),
                                 "images": [str(p) for p in case.images], "label_map": output.name,
                                 "input": measures, "prediction": prediction}
        if self.save_uncertainty:
            entry["entropy_map"] = self._write_entropy(probabilities, properties, output, regions).name
            if not save_probabilities:
                probabilities = None
        reasons = input_flags(measures, self.reference, self.channel_names) + prediction_flags(prediction,
                                                                                               self.reference)
        entry["flagged"], entry["reasons"] = bool(reasons), reasons
        self.cases[case.identifier] = entry
        if reasons and not self.quiet:
            print(f"warning: {case.identifier}: {'; '.join(reasons)}", file=sys.stderr)
        return seg, probabilities

    def write(self) -> Path:
        """Write ``report.json`` (merged with the entries of an earlier run for cases not redone)."""
        path = self.output_folder / f"{self.name}.json"
        cases = {}
        if path.is_file():
            try:
                cases = dict(read_json(path).get("cases", {}))
            except (OSError, ValueError):
                cases = {}
        cases.update(self.cases)
        ordered = dict(sorted(cases.items(), key=lambda kv: (not kv[1]["flagged"], kv[0])))
        report = {"model_folder": str(self.predictor.model_folder),
                  "reference": None if self.reference is None else {
                      "source": self.reference.get("source"), "cases": self.reference.get("cases"),
                      "measures": self.reference.get("measures", {}),
                      "orientations": self.reference.get("orientations", []),
                      "volumes_ml": self.reference.get("volumes_ml", {}),
                      "prediction": self.reference.get("prediction", {})},
                  "thresholds": thresholds(), "channel_names": self.channel_names,
                  "num_cases": len(ordered), "num_flagged": sum(c["flagged"] for c in ordered.values()),
                  "cases": ordered}
        write_json(_finite(report), path)
        return path

    def _write_entropy(self, probabilities: np.ndarray, properties: dict, output: Path, regions: bool) -> Path:
        from segformer3d_auto.dataset.image_io import write_image

        ending = self.predictor.file_ending
        target = output.with_name(output.name[: -len(ending)] + "_entropy" + ending)
        write_image(qm.normalized_entropy(probabilities, regions), _export_geometry(properties), target)
        return target


def _export_geometry(properties: Mapping[str, Any]) -> dict[str, Any]:
    """The input geometry recorded by preprocessing (what export writes label maps with)."""
    return {"spacing": properties["spacing"], "origin": properties["origin"], "direction": properties["direction"]}


def _channel_label(key: str, channel_names: Mapping[str, str]) -> str:
    if key.startswith("channel_"):
        _, channel, stat = key.split("_", 2)
        return f"channel {channel} ({channel_names.get(channel, '?')}) {stat}"
    return key


def _finite(value: Any) -> Any:
    """NaN and inf as None, so report.json is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
