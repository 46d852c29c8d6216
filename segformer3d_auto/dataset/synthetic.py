"""The project's own example datasets: small, deterministic given a seed, and learnable in a few hundred steps.

- ``make_mri_regions_dataset``: BraTS-like, 4 MRI channels, nested tumour labels trained as regions.
- ``make_ct_dataset``: 1 CT channel in Hounsfield units, two organs, anisotropic spacing, flipped axes.
- ``make_thin_dataset``: thin structures (a folded cortex-like ribbon and 1-3 voxel vessels), 1 MRI channel.
- ``make_msd_task``: a legacy Medical Segmentation Decathlon task folder (4D multi-channel NIfTI), the input of
  ``sf3d_convert_msd``.

Each writes ``imagesTr``, ``labelsTr``, ``imagesTs`` and ``labelsTs`` (held-out references for evaluation; not
part of the nnU-Net format and ignored by it). Tests, the demo and benchmarks use them. From the shell::

    python -m segformer3d_auto.dataset.synthetic --kind mri --out "$SF3D_RAW"
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from segformer3d_auto.atomic import atomic_path, write_json
from segformer3d_auto.dataset import phantoms
from segformer3d_auto.dataset.anatomy import make_anatomy_dataset
from segformer3d_auto.dataset.case_writer import write_cases
from segformer3d_auto.dataset.image_io import write_image
from segformer3d_auto.paths import dataset_name

IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
LPS_FLIP = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
BRATS_REGIONS = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]}

def make_mri_regions_dataset(raw_root: str | Path, dataset_id: int = 501, num_cases: int = 6,
                             shape: Sequence[int] = (48, 48, 48), spacing: Sequence[float] = (1.0, 1.0, 1.0),
                             num_test_cases: int = 2, seed: int = 0) -> Path:
    """Write a BraTS-like region dataset ``Dataset{ID}_SyntheticBraTS`` under ``raw_root``; returns its folder.

    Four channels (FLAIR, T1, T1ce, T2) of a brain-like ellipsoid in a background of zeros; labels 1 edema,
    2 non-enhancing and 3 enhancing tumour, nested; trained as the regions whole tumour [1, 2, 3], tumour
    core [2, 3] and enhancing tumour [3].
    """
    shape, spacing = _check(num_cases, num_test_cases, shape, spacing)
    props = {"spacing": list(spacing), "origin": [0.0, 0.0, 0.0], "direction": list(IDENTITY)}
    folder = Path(raw_root) / dataset_name(dataset_id, "SyntheticBraTS")
    write_cases(folder, "brats", seed, num_cases, num_test_cases, phantoms.mri_case,
                 lambda rng: (shape, props))
    write_json({
        "channel_names": {"0": "FLAIR", "1": "T1", "2": "T1ce", "3": "T2"},
        "labels": BRATS_REGIONS,
        "regions_class_order": [1, 2, 3],
        "numTraining": num_cases,
        "file_ending": ".nii.gz",
        "name": "SyntheticBraTS",
        "description": "Synthetic BraTS-like MRI (segformer3d_auto.dataset.synthetic); labels 1 edema, "
                       "2 non-enhancing tumour, 3 enhancing tumour",
    }, folder / "dataset.json")
    return folder


def make_ct_dataset(raw_root: str | Path, dataset_id: int = 502, num_cases: int = 6,
                    shape: Sequence[int] = (16, 64, 64), spacing: Sequence[float] = (5.0, 0.8, 0.8),
                    num_test_cases: int = 2, seed: int = 0) -> Path:
    """Write a CT dataset ``Dataset{ID}_SyntheticCT`` under ``raw_root``; returns its folder.

    One channel in Hounsfield units (int16): air around a body, a spine, a liver (1) and a kidney (2).
    ``shape`` is (z, y, x) and ``spacing`` is in the same order; each case grows a little along every axis,
    and has its own nonzero origin and an LPS-flipped direction ``diag(-1, -1, 1)``.
    """
    shape, spacing = _check(num_cases, num_test_cases, shape, spacing)

    def geometry(rng: np.random.Generator) -> tuple[tuple[int, int, int], dict]:
        grown = tuple(int(s + rng.integers(0, max(1, s // 8) + 1)) for s in shape)
        origin = [float(v) for v in np.array([180.0, 200.0, -350.0]) + rng.uniform(-8.0, 8.0, 3)]
        return grown, {"spacing": list(spacing), "origin": origin, "direction": list(LPS_FLIP)}

    folder = Path(raw_root) / dataset_name(dataset_id, "SyntheticCT")
    write_cases(folder, "ct", seed, num_cases, num_test_cases, phantoms.ct_case, geometry)
    write_json({
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "liver": 1, "kidney": 2},
        "numTraining": num_cases,
        "file_ending": ".nii.gz",
        "name": "SyntheticCT",
        "description": "Synthetic abdominal CT (segformer3d_auto.dataset.synthetic)",
    }, folder / "dataset.json")
    return folder


def make_thin_dataset(raw_root: str | Path, dataset_id: int = 503, num_cases: int = 6,
                      shape: Sequence[int] = (48, 48, 48), spacing: Sequence[float] = (1.0, 1.0, 1.0),
                      num_test_cases: int = 2, seed: int = 0) -> Path:
    """Write a thin-structure dataset ``Dataset{ID}_SyntheticThin`` under ``raw_root``; returns its folder.

    One MRI-like channel; labels 1 ribbon (a closed folded shell 1.5-2.5 voxels thick, like cortex) and 2 vessels
    (winding tubes 1-3 voxels wide). Structures this thin are below the paper's output grid (stride 4), so this is
    the dataset on which the planner's choice of output resolution shows.
    """
    shape, spacing = _check(num_cases, num_test_cases, shape, spacing)
    props = {"spacing": list(spacing), "origin": [0.0, 0.0, 0.0], "direction": list(IDENTITY)}
    folder = Path(raw_root) / dataset_name(dataset_id, "SyntheticThin")
    write_cases(folder, "thin", seed, num_cases, num_test_cases, phantoms.thin_case, lambda rng: (shape, props))
    write_json({
        "channel_names": {"0": "MRI"},
        "labels": {"background": 0, "ribbon": 1, "vessel": 2},
        "numTraining": num_cases,
        "file_ending": ".nii.gz",
        "name": "SyntheticThin",
        "description": "Synthetic thin structures (segformer3d_auto.dataset.synthetic): a folded ribbon and vessels",
    }, folder / "dataset.json")
    return folder


def make_msd_task(parent: str | Path, name: str = "Task05_Prostate", num_cases: int = 4,
                  shape: Sequence[int] = (16, 48, 48), seed: int = 0,
                  modalities: Sequence[str] = ("T2", "ADC"), num_test_cases: int = 2) -> Path:
    """Write a legacy MSD task folder ``parent/name``; returns it.

    Images are 4D NIfTI with the channels on the 4th axis (3D when ``modalities`` has one entry), with
    anisotropic spacing, a nonzero origin and a rotated direction; labels 1 PZ and 2 TZ; the MSD
    ``dataset.json`` (``modality``, int -> name ``labels``, ``training``/``test`` lists).
    """
    shape, _ = _check(num_cases, num_test_cases, shape, (1.0, 1.0, 1.0))
    if not modalities:
        raise ValueError("modalities must name at least one channel")
    folder = Path(parent) / name
    short = name.split("_", 1)[1].lower() if "_" in name else name.lower()
    angle = np.deg2rad(10.0)
    rotation = [np.cos(angle), -np.sin(angle), 0.0, np.sin(angle), np.cos(angle), 0.0, 0.0, 0.0, 1.0]
    geometry = {"spacing": [3.6, 0.625, 0.625], "origin": [-14.5, 22.0, -40.25], "direction": rotation}
    training, test = [], []
    for split, count, stream in (("Tr", num_cases, 0), ("Ts", num_test_cases, 1)):
        for i in range(count):
            case = f"{short}_{i + (num_cases if stream else 0):02d}"
            images, seg = phantoms.prostate_case(np.random.default_rng([seed, stream, i]), shape,
                                                 len(modalities))
            image_path = folder / f"images{split}" / f"{case}.nii.gz"
            label_path = folder / f"labels{split}" / f"{case}.nii.gz"
            _write_msd_image(images, geometry, image_path)
            write_image(seg, geometry, label_path)
            if stream == 0:
                training.append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
            else:
                test.append(f"./imagesTs/{case}.nii.gz")
    write_json({
        "name": short.upper(),
        "description": "Synthetic prostate MRI in the legacy MSD layout (segformer3d_auto)",
        "reference": "segformer3d_auto.dataset.synthetic",
        "licence": "CC0 (synthetic)",
        "release": "1.0",
        "tensorImageSize": "4D" if len(modalities) > 1 else "3D",
        "modality": {str(i): m for i, m in enumerate(modalities)},
        "labels": {"0": "background", "1": "PZ", "2": "TZ"},
        "numTraining": num_cases,
        "numTest": num_test_cases,
        "training": training,
        "test": test,
    }, folder / "dataset.json")
    return folder


def _check(num_cases: int, num_test_cases: int, shape: Sequence[int],
           spacing: Sequence[float]) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    if num_cases < 1 or num_test_cases < 0:
        raise ValueError(f"need num_cases >= 1 and num_test_cases >= 0, got {num_cases}, {num_test_cases}")
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"shape must be 3 sizes (z, y, x) of at least 8 voxels, got {tuple(shape)}")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be 3 positive values (z, y, x), got {tuple(spacing)}")
    return tuple(int(s) for s in shape), tuple(float(s) for s in spacing)


def _write_msd_image(images: np.ndarray, props: dict, path: Path) -> None:
    """A (c, z, y, x) array as one 4D NIfTI (channels on the 4th axis, as MSD stores them); 3D when c == 1."""
    if images.shape[0] == 1:
        write_image(images[0], props, path)
        return
    image = sitk.GetImageFromArray(np.ascontiguousarray(images), isVector=False)
    direction = np.eye(4)
    direction[:3, :3] = np.asarray(props["direction"]).reshape(3, 3)
    image.SetSpacing([*reversed(props["spacing"]), 1.0])
    image.SetOrigin([*props["origin"], 0.0])
    image.SetDirection(direction.ravel().tolist())
    with atomic_path(path, suffix=".nii.gz") as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)


def main(argv: list[str] | None = None) -> int:
    """Write a synthetic dataset from the shell and print its folder."""
    parser = argparse.ArgumentParser(
        prog="python -m segformer3d_auto.dataset.synthetic",
        description="Write one of segformer3d_auto's synthetic example datasets.",
        epilog="examples:\n  python -m segformer3d_auto.dataset.synthetic --kind mri --out \"$SF3D_RAW\"\n"
               "  python -m segformer3d_auto.dataset.synthetic --kind msd --out downloads  "
               "# then: sf3d_convert_msd -i downloads/Task05_Prostate",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=("mri", "ct", "thin", "anatomy", "msd"), required=True,
                        help="mri: BraTS-like regions (Dataset501); ct: CT organs (Dataset502); thin: thin "
                             "structures (Dataset503); anatomy: real T1 brain anatomy from the MNI template that "
                             "nilearn ships (Dataset504, needs the anatomy extra); msd: legacy MSD task")
    parser.add_argument("--out", type=Path, required=True,
                        help="raw root to write the dataset into (for msd: the parent of the task folder)")
    parser.add_argument("--num-cases", type=int, default=None, help="training cases (default 6, msd 4)")
    parser.add_argument("--num-test-cases", type=int, default=2, help="held-out cases (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("-d", "--dataset-id", type=int, default=None, help="dataset ID (default 501 / 502 / 503 / 504)")
    args = parser.parse_args(argv)
    if args.kind == "msd":
        folder = make_msd_task(args.out, num_cases=args.num_cases or 4, seed=args.seed,
                               num_test_cases=args.num_test_cases)
    else:
        make = {"mri": make_mri_regions_dataset, "ct": make_ct_dataset, "thin": make_thin_dataset,
                "anatomy": make_anatomy_dataset}[args.kind]
        kwargs = {"dataset_id": args.dataset_id} if args.dataset_id is not None else {}
        folder = make(args.out, num_cases=args.num_cases or 6, num_test_cases=args.num_test_cases,
                      seed=args.seed, **kwargs)
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
