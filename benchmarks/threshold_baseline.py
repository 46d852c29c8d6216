"""How much the thin-structure image tells: Dice of the best intensity threshold per class, no network.

The generated thin-structure cases (``segformer3d_auto.dataset.phantoms.thin_case``: a bright folded ribbon and
dark 1-3 voxel vessels in a head of tissue, blurred and noisy) are scored by a window on the intensity relative to
the case's median tissue intensity, inside the head; the window's bound is chosen per class over a grid, on the
same cases it is scored on (an optimistic baseline that no training has to earn). Where a network trained for a
few minutes stays far below it, the image is not what limits the score:

    python benchmarks/threshold_baseline.py [--cases 8] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segformer3d_auto.dataset.phantoms import thin_case  # noqa: E402
from segformer3d_auto.evaluation.metrics import confusion_counts, dice_iou  # noqa: E402

WINDOWS = {  # class: (name, lower bounds, upper bounds) of image / median tissue intensity
    1: ("ribbon", np.arange(1.2, 1.8, 0.05), [np.inf]),
    2: ("vessel", [0.0], np.arange(0.4, 0.9, 0.05)),
}


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice of ``pred`` against ``ref`` (boolean masks), as ``sf3d_evaluate`` computes it."""
    counts = confusion_counts(ref, pred)
    return dice_iou(counts["TP"], counts["FP"], counts["FN"])[0]


def best_windows(cases: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, tuple[float, float, float]]:
    """Per class: (mean Dice over ``cases``, lower, upper) of the best intensity window."""
    relative = []
    for image, seg in cases:
        head = image > 0
        relative.append((image / np.median(image[head & (seg == 0)]), head, seg))
    best = {}
    for label, (name, lows, highs) in WINDOWS.items():
        scores = []
        for low in lows:
            for high in highs:
                mean = float(np.mean([dice((r > low) & (r < high) & head, seg == label) for r, head, seg in relative]))
                scores.append((mean, float(low), float(high)))
        best[name] = max(scores)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=8, help="generated cases (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    parser.add_argument("--size", type=int, default=48, help="edge of the cubic case, voxels (default 48)")
    args = parser.parse_args(argv)
    if args.cases < 1 or args.size < 16:
        parser.error("--cases must be positive and --size at least 16")
    rng = np.random.default_rng(args.seed)
    cases = []
    for _ in range(args.cases):
        image, seg = thin_case(rng, (args.size,) * 3)
        cases.append((image[0], seg))
    best = best_windows(cases)
    for name, (score, low, high) in best.items():
        window = f"> {low:.2f}" if high == np.inf else f"< {high:.2f}"
        print(f"{name}: Dice {score:.3f} with intensity {window} x median tissue")
    print(f"mean: {np.mean([b[0] for b in best.values()]):.3f} over {args.cases} cases of {args.size}^3")
    return 0


if __name__ == "__main__":
    sys.exit(main())
