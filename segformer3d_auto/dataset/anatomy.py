"""A real-anatomy dataset: the MNI ICBM152 2009a T1 template and its grey / white matter maps, as nilearn ships them.

nilearn's wheel contains the 1 mm symmetric MNI ICBM152 2009a T1 template with its grey-matter and white-matter
probability maps (``nilearn/datasets/data/mni_icbm152_{t1,gm,wm}_tal_nlin_sym_09a_converted.nii.gz``). They are
read from the installed package (nothing is downloaded; nilearn is not even imported), so this needs the optional
extra ``pip install -e ".[anatomy]"``. Each case is the template under its own smooth random deformation, a small
rotation, a bias field, contrast and noise, resampled to ``spacing`` mm (2 mm by default: the cortex is then a
folded ribbon 1-2 voxels thick); labels 1 grey and 2 white matter where that class is the most probable and above
0.5. The cases are variations of one (population-average) anatomy, not independent subjects.

Licence: the MNI ICBM152 template is Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre,
Montreal Neurological Institute, McGill University; use, copying and distribution are permitted with that notice,
which this module and the generated ``dataset.json`` carry (see nilearn's documentation of
``load_mni152_template``). nilearn itself is BSD-licensed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy.ndimage import gaussian_filter, map_coordinates

from segformer3d_auto.atomic import write_json
from segformer3d_auto.dataset.case_writer import write_cases
from segformer3d_auto.dataset.phantoms import smooth_noise
from segformer3d_auto.paths import dataset_name

TEMPLATE_FILES = {kind: f"mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz" for kind in ("t1", "gm", "wm")}
NOISE = 0.03
"""Default relative standard deviation of the images' multiplicative noise (a little spatially correlated)."""
LICENCE = ("MNI ICBM152 2009a template: Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, "
           "Montreal Neurological Institute, McGill University. Permission to use, copy, modify and distribute "
           "with this notice. Shipped by nilearn (BSD).")


def template_folder() -> Path:
    """The folder of nilearn's bundled template files, found without importing nilearn.

    Raises:
        ValueError: when nilearn is not installed or lacks the files (install the ``anatomy`` extra).
    """
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError('the real-anatomy dataset needs nilearn: pip install -e ".[anatomy]"')
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    missing = [name for name in TEMPLATE_FILES.values() if not (folder / name).exists()]
    if missing:
        raise ValueError(f"{folder}: nilearn lacks {', '.join(missing)}; install a release that ships them")
    return folder


def load_template() -> tuple[dict[str, np.ndarray], tuple[float, float, float]]:
    """The T1 template and grey / white matter probability maps (in [0, 1]) as float32 (z, y, x) arrays, and their
    spacing (mm)."""
    folder = template_folder()
    arrays, spacing = {}, (1.0, 1.0, 1.0)
    for kind, name in TEMPLATE_FILES.items():
        image = sitk.ReadImage(str(folder / name))
        arrays[kind] = sitk.GetArrayFromImage(image).astype(np.float32)
        spacing = tuple(float(s) for s in reversed(image.GetSpacing()))
    for kind in ("gm", "wm"):
        # nilearn's "converted" maps store probabilities as 0-255; bring them back to [0, 1]
        top = float(arrays[kind].max())
        if top > 1.0:
            arrays[kind] /= top
    return arrays, spacing


def anatomy_case(rng: np.random.Generator, template: dict[str, np.ndarray],
                 template_spacing: tuple[float, float, float], spacing: float,
                 deformation_mm: float = 3.0, noise: float = NOISE) -> tuple[np.ndarray, np.ndarray]:
    """One case: (1, z, y, x) T1 image and labels 1 grey / 2 white matter at ``spacing`` mm.

    A smooth random displacement (up to about ``deformation_mm``), a rotation of up to 5 degrees about the
    template's centre, a bias field, intensity scale and multiplicative noise (standard deviation ``noise``,
    drawn last, so that a case without it has the same anatomy, labels and bias) make each case differ.

    Raises:
        ValueError: for a negative ``noise``.
    """
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    src_shape = np.asarray(template["t1"].shape, dtype=float)
    src_spacing = np.asarray(template_spacing)
    extent = src_shape * src_spacing
    shape = tuple(int(v) for v in np.floor(extent / spacing))
    grid = np.stack(np.meshgrid(*(np.arange(s, dtype=np.float32) for s in shape), indexing="ij"), 0)
    mm = (grid + 0.5) * spacing - 0.5 * src_spacing[:, None, None, None]
    centre = extent / 2
    angles = np.deg2rad(rng.uniform(-5, 5, 3))
    rotation = _rotation(angles)
    mm = np.einsum("ij,j...->i...", rotation, mm - centre[:, None, None, None]) + centre[:, None, None, None]
    coarse = [max(2, s // 8) for s in shape]
    for axis in range(3):
        field = gaussian_filter(rng.standard_normal(coarse), 1.0)
        field *= deformation_mm / max(float(np.abs(field).max()), 1e-6)
        zoom = [s / c for s, c in zip(shape, coarse)]
        mm[axis] += _upsample(field, shape, zoom)
    coords = mm / src_spacing[:, None, None, None]
    warped = {k: map_coordinates(v, coords, order=1, mode="constant", cval=0.0) for k, v in template.items()}
    gm, wm = warped["gm"], warped["wm"]
    seg = np.zeros(shape, dtype=np.uint8)
    seg[(gm >= 0.5) & (gm >= wm)] = 1
    seg[(wm >= 0.5) & (wm > gm)] = 2
    t1 = warped["t1"]
    brain = t1 > 0.02 * float(t1.max())
    bias = 1.0 + 0.08 * smooth_noise(rng, shape, sigma=max(shape) / 4)
    image = t1 * bias * rng.uniform(0.8, 1.2)
    if noise:
        image = image * (1 + noise * smooth_noise(rng, shape, sigma=0.6))
    return np.where(brain, np.maximum(image, 0.0), 0.0).astype(np.float32)[None], seg


def make_anatomy_dataset(raw_root: str | Path, dataset_id: int = 504, num_cases: int = 6, spacing: float = 2.0,
                         num_test_cases: int = 2, seed: int = 0, noise: float = NOISE) -> Path:
    """Write ``Dataset{ID}_MNIAnatomy`` (T1, grey / white matter) under ``raw_root``; returns its folder.

    ``noise`` is the image noise's relative standard deviation; 0 gives noise-free images of the same cases, which
    tells how much of a model's error the noise causes (``benchmarks/output_resolution.py --anatomy-noise``).

    Raises:
        ValueError: for bad counts, spacing or noise, or without nilearn (the ``anatomy`` extra).
    """
    if num_cases < 1 or num_test_cases < 0 or spacing <= 0 or noise < 0:
        raise ValueError(f"need num_cases >= 1, num_test_cases >= 0, spacing > 0, noise >= 0; got {num_cases}, "
                         f"{num_test_cases}, {spacing}, {noise}")
    template, template_spacing = load_template()
    folder = Path(raw_root) / dataset_name(dataset_id, "MNIAnatomy")
    props = {"spacing": [float(spacing)] * 3, "origin": [0.0, 0.0, 0.0], "direction": [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]}
    # the template and the spacing set each case's shape: the geometry only gives the header
    write_cases(folder, "mni", seed, num_cases, num_test_cases,
                lambda rng, _shape: anatomy_case(rng, template, template_spacing, spacing, noise=noise),
                lambda rng: ((), props))
    write_json({
        "channel_names": {"0": "T1"},
        "labels": {"background": 0, "grey matter": 1, "white matter": 2},
        "numTraining": num_cases,
        "file_ending": ".nii.gz",
        "name": "MNIAnatomy",
        "description": "Deformed copies of the MNI ICBM152 2009a T1 template with grey / white matter labels "
                       "(segformer3d_auto.dataset.anatomy)",
        "licence": LICENCE,
    }, folder / "dataset.json")
    return folder


def _rotation(angles: np.ndarray) -> np.ndarray:
    cz, cy, cx = np.cos(angles)
    sz, sy, sx = np.sin(angles)
    rz = np.array([[1, 0, 0], [0, cz, -sz], [0, sz, cz]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[cx, -sx, 0], [sx, cx, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _upsample(field: np.ndarray, shape: tuple[int, ...], zoom: list[float]) -> np.ndarray:
    coords = np.meshgrid(*((np.arange(s) + 0.5) / z - 0.5 for s, z in zip(shape, zoom)), indexing="ij")
    return map_coordinates(field, np.stack(coords), order=3, mode="nearest").astype(np.float32)
