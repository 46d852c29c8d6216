"""Where a prediction's errors lie: on the reference's label boundaries, or in whole missed or extra regions.

For each case, counts the voxels whose predicted label differs from the reference's, and says what fraction of them
lie on a label boundary of the reference (a voxel with a face neighbour of another label), within one voxel of one,
and in connected error regions larger than ``--min-region`` voxels. Errors that all lie on boundaries, one voxel
deep, are the disagreements of a boundary drawn a voxel off: what image noise and partial volume cause, and what
a coarse output grid would cause one scale up; errors in large regions are structures missed or invented:

    python benchmarks/error_location.py LABELS_FOLDER PREDICTIONS_FOLDER [--min-region 20]

Both folders hold label maps of the same names (``.nii.gz``, ``.nii``, ``.nrrd`` or ``.mha``), as ``sf3d_evaluate``
takes them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def label_boundary(seg: np.ndarray) -> np.ndarray:
    """Voxels of ``seg`` that have a face neighbour with another label (the array's own edge is no boundary)."""
    boundary = np.zeros(seg.shape, dtype=bool)
    for axis in range(seg.ndim):
        before = [slice(None)] * seg.ndim
        after = [slice(None)] * seg.ndim
        before[axis], after[axis] = slice(None, -1), slice(1, None)
        differs = seg[tuple(before)] != seg[tuple(after)]
        boundary[tuple(before)] |= differs
        boundary[tuple(after)] |= differs
    return boundary


def error_location(reference: np.ndarray, prediction: np.ndarray, min_region: int = 20) -> dict[str, float]:
    """Counts of the voxels where ``prediction`` differs from ``reference``, by where they lie.

    Returns:
        ``errors`` (voxels), ``on_boundary`` (of them, on a reference label boundary), ``near_boundary`` (within one
        voxel of one, by the face-neighbour distance), ``in_large_regions`` (in a face-connected error region of more
        than ``min_region`` voxels), ``regions`` (the number of such error regions, of any size) and
        ``boundary`` (the reference's boundary voxels, right or wrong).

    Raises:
        ValueError: for arrays of different shapes or a ``min_region`` below 1.
    """
    if reference.shape != prediction.shape:
        raise ValueError(f"reference shape {reference.shape} and prediction shape {prediction.shape} differ")
    if min_region < 1:
        raise ValueError(f"min_region must be at least 1, got {min_region}")
    errors = reference != prediction
    boundary = label_boundary(reference)
    near = ndimage.binary_dilation(boundary)  # the face-neighbour cross: within one voxel along an axis
    regions, count = ndimage.label(errors)
    sizes = np.bincount(regions.ravel())[1:]
    return {"errors": int(errors.sum()), "on_boundary": int((errors & boundary).sum()),
            "near_boundary": int((errors & near).sum()), "in_large_regions": int(sizes[sizes > min_region].sum()),
            "regions": int(count), "boundary": int(boundary.sum())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("labels", type=Path, help="folder of reference label maps")
    parser.add_argument("predictions", type=Path, help="folder of predicted label maps, same file names")
    parser.add_argument("--min-region", type=int, default=20,
                        help="error regions above this many voxels count as large (default 20)")
    args = parser.parse_args(argv)
    if args.min_region < 1:
        parser.error("--min-region must be at least 1")
    from segformer3d_auto.dataset.image_io import SUPPORTED_ENDINGS, file_ending, read_segmentation
    from segformer3d_auto.errors import InputError
    from segformer3d_auto.evaluation.evaluate_folder import match_files

    endings = sorted({file_ending(path) for path in args.labels.iterdir()} - {None}) if args.labels.is_dir() else []
    if not endings:
        raise InputError(f"{args.labels}: no label maps ({', '.join(SUPPORTED_ENDINGS)})")
    # the cases predicted, as sf3d_evaluate --allow-missing pairs them
    pairs = [pair for ending in endings for pair in match_files(args.labels, args.predictions, ending, True)]
    total: dict[str, float] = {}
    print(f"| case | error voxels | on a boundary | within 1 voxel | in regions > {args.min_region} | regions | "
          "boundary voxels wrong |")
    print("|---|---|---|---|---|---|---|")
    for reference_file, prediction_file in pairs:
        reference, prediction = read_segmentation(reference_file)[0], read_segmentation(prediction_file)[0]
        if reference.shape != prediction.shape:
            raise InputError(f"{prediction_file}: shape {prediction.shape[::-1]} differs from the reference's "
                             f"{reference.shape[::-1]}")
        counts = error_location(reference, prediction, args.min_region)
        for key, value in counts.items():
            total[key] = total.get(key, 0) + value
        print(_row(reference_file.name, counts))
    print(_row(f"all {len(pairs)}", total))
    return 0


def _row(name: str, counts: dict[str, float]) -> str:
    errors = max(counts["errors"], 1)
    share = [f"{counts[key] / errors:.3f}" for key in ("on_boundary", "near_boundary", "in_large_regions")]
    wrong = counts["on_boundary"] / max(counts["boundary"], 1)
    return f"| {name} | {counts['errors']:.0f} | {' | '.join(share)} | {counts['regions']:.0f} | {wrong:.3f} |"


if __name__ == "__main__":
    from segformer3d_auto.cli._common import run_cli

    raise SystemExit(run_cli(main))
