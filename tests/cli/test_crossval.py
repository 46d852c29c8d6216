"""sf3d_crossval on a trained fold of the small generated region dataset."""

from __future__ import annotations

import sys

from segformer3d_auto.atomic import read_json
from tests.shared_data import shared_folder
from tests.training.data import run, trained_fold0


def test_crossval_merges_folds_and_determines_postprocessing(tmp_path_factory):
    env, model_folder = trained_fold0(shared_folder(tmp_path_factory, "training_data"))
    result = run([sys.executable, "-m", "segformer3d_auto.cli.crossval", "501", "--folds", "0", "-np", "2",
                  "--calibrate-quality", "2"], env)
    crossval = model_folder / "crossval"
    validation_cases = sorted(p.name for p in (model_folder / "fold_0" / "validation").glob("*.nii.gz"))
    assert sorted(p.name for p in (crossval / "predictions").glob("*.nii.gz")) == validation_cases
    summary = read_json(crossval / "summary.json")
    assert len(summary["metric_per_case"]) == len(validation_cases)
    pp = read_json(crossval / "postprocessing.json")
    assert "trials" in pp and pp["trials"][0]["try"] == "foreground"
    assert "cross-validation mean foreground Dice" in result.stdout
    reference = read_json(crossval / "quality_reference.json")
    assert reference["source"] == "training images" and reference["prediction"]["cases"] == 2
    assert reference["cases"] == read_json(model_folder / "dataset.json")["numTraining"]
    assert set(reference["measures"]) >= {"spacing_z", "channel_3_histogram_shape"}


def test_crossval_refuses_folds_without_validation(tmp_path_factory):
    env, _ = trained_fold0(shared_folder(tmp_path_factory, "training_data"))
    result = run([sys.executable, "-m", "segformer3d_auto.cli.crossval", "501", "--folds", "0", "3"], env,
                 check=False)
    assert result.returncode == 2 and "fold 3 has no finished validation" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
