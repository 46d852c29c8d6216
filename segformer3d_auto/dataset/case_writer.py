"""Writing a generated dataset's cases: the one loop that the synthetic and the anatomy datasets share."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from segformer3d_auto.dataset.image_io import write_image
from segformer3d_auto.dataset.naming import channel_file_name

CaseMaker = Callable[[np.random.Generator, tuple[int, ...]], tuple[np.ndarray, np.ndarray]]
Geometry = Callable[[np.random.Generator], tuple[tuple[int, ...], dict]]


def write_cases(folder: Path, prefix: str, seed: int, num_cases: int, num_test_cases: int,
                make_case: CaseMaker, geometry: Geometry) -> None:
    """Write training and test cases ``{prefix}_000``, ``{prefix}_ts_000``...; each case draws from its own seeded
    stream (independent of counts): first ``geometry(rng)`` gives its shape and geometry, then
    ``make_case(rng, shape)`` its (c, z, y, x) images and label map."""
    for split, count, stream in (("Tr", num_cases, 0), ("Ts", num_test_cases, 1)):
        for i in range(count):
            rng = np.random.default_rng([seed, stream, i])
            shape, props = geometry(rng)
            images, seg = make_case(rng, shape)
            case = f"{prefix}_{'ts_' if stream else ''}{i:03d}"
            for c, image in enumerate(images):
                write_image(image, props, folder / f"images{split}" / channel_file_name(case, c, ".nii.gz"))
            write_image(seg, props, folder / f"labels{split}" / f"{case}.nii.gz")
