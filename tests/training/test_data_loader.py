from __future__ import annotations

import numpy as np

from segformer3d_auto.training.data_loader import PatchLoader, PreprocessedCases
from tests.shared_data import shared_folder
from tests.training.data import DATASET, prepared_roots


def test_loader_batches_and_foreground_oversampling(tmp_path_factory):
    env = prepared_roots(shared_folder(tmp_path_factory, "training_data"))
    folder = f"{env['SF3D_PREPROCESSED']}/{DATASET}/3d_fullres"
    ids = sorted(p.split("/")[-1][:-5] for p in map(str, __import__("pathlib").Path(folder).glob("*.json")))
    cases = PreprocessedCases(folder, ids)
    loader = PatchLoader(cases, [16, 16, 16], 3, 1.0, 4)  # every sample forced onto foreground
    assert [loader.forced_foreground(j) for j in range(3)] == [True, True, True]
    np.random.seed(0)
    for _ in range(5):
        batch = loader.generate_train_batch()
        assert batch["data"].shape == (3, 4, 16, 16, 16) and batch["seg"].shape == (3, 1, 16, 16, 16)
        assert all((batch["seg"][j] > 0).any() for j in range(3))
    random = PatchLoader(cases, [16, 16, 16], 3, 0.0, 4)
    assert not any(random.forced_foreground(j) for j in range(3))
    big = PatchLoader(cases, [40, 40, 40], 1, 0.0, 4).generate_train_batch()  # larger than the images: padded
    assert (big["seg"] == -1).any() and big["data"].shape == (1, 4, 40, 40, 40)
