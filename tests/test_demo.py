"""``python -m segformer3d_auto.demo`` (what ``make demo`` runs), shortened: every stage, the table, the artifacts."""

from __future__ import annotations


def test_demo_runs_every_stage_and_writes_its_artifacts(demo_run: dict) -> None:
    out, result = demo_run["out"], demo_run["result"]
    assert result.returncode == 0, result.stderr[-3000:]
    table = result.stdout[result.stdout.index("segformer3d_auto demo:"):]
    for line in ("whole tumor", "tumor core", "enhancing tumor", "mean (foreground)", "sf3d_plan_and_preprocess",
                 "sf3d_train (fold 0)", "sf3d_predict", "sf3d_evaluate", "total", "overlay pictures"):
        assert line in table, line
    fold = out / "results" / "Dataset501_SyntheticBraTS" / "SegFormer3D__3d_fullres" / "fold_0"
    assert (fold / "progress.png").stat().st_size > 0
    assert (fold / "checkpoint_final.pth").is_file()
    predictions = sorted((out / "predictions").glob("*.nii.gz"))
    assert len(predictions) == 4
    overlays = sorted((out / "predictions" / "overlays").glob("*.png"))
    assert [p.name.removesuffix(".png") for p in overlays] == [p.name.removesuffix(".nii.gz") for p in predictions]
    assert (out / "predictions" / "summary.json").is_file()
