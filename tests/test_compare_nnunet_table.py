"""The table of ``benchmarks/compare_nnunet.py`` from raw numbers (the runs themselves need an nnU-Net environment)."""

from __future__ import annotations

from benchmarks.compare_nnunet import table


def _side(seconds: float, dice: float) -> dict:
    measured = {"seconds": seconds, "peak": 2**30}
    return {
        "preprocess": measured, "patch": [20, 64, 64], "batch": 2, "it_per_s": 10 / seconds,
        "voxels_per_s": 10 / seconds * 2 * 20 * 64 * 64,
        "train": {"epochs": 5, "iterations": 10, "seconds": 300.0},
        "dice": {"1": dice}, "mean_dice": dice,
        "predict_tta": measured, "predict_notta": measured, "parameters": 4_500_000, "flops": 2e9,
    }


def test_table_gives_ratios_and_dice_differences() -> None:
    result = {"dataset": "Dataset603_Prostate", "test_cases": 2, "classes": {"1": "PZ"},
              "ours": _side(2.0, 0.98), "theirs": _side(8.0, 0.99)}
    text = table([result], ("ours", "theirs"))
    lines = text.splitlines()
    assert lines[0] == "| dataset | measure | ours | theirs | comparison |"
    assert "| Dataset603_Prostate | plan+preprocess wall s | 2.0 | 8.0 | ours 4.00x faster |" in lines
    assert "| Dataset603_Prostate | train it/s | 5.000 | 1.250 | ours 4.00x faster |" in lines
    assert "| Dataset603_Prostate | Dice PZ | 0.9800 | 0.9900 | -0.0100 |" in lines
    assert "| Dataset603_Prostate | predict s/case with TTA | 1.00 | 4.00 | ours 4.00x faster |" in lines
    assert all(line.count("|") == 6 for line in lines)
