"""Packing a trained model folder into one zip (``sf3d_export_model``): what prediction needs and nothing else.

See ``model_archive`` for the zip's layout and checks. Each fold's checkpoint is re-saved with its network
weights alone (no optimizer state, no training log), and by default its network is also written as ONNX at the
planned patch size and compared with PyTorch on random input before it goes into the zip.
"""

from __future__ import annotations

import datetime
import io
import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from segformer3d_auto.errors import InputError

ONNX_TOLERANCE = 1e-3
"""Largest accepted |PyTorch - ONNX| logit difference: float32 kernels that sum in another order differ by
about 1e-5 relative on logits of order 10 for SegFormer3D-B0; a wrong graph differs by order 1."""


def export_model(
    model_folder: str | Path,
    output_zip: str | Path,
    folds: Sequence[int] | None = None,
    checkpoint: str = "final",
    onnx: bool = True,
    check_backend: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Write ``output_zip`` for the model folder; returns the manifest.

    Args:
        model_folder: ``.../DatasetXXX_Name/SegFormer3D__3d_fullres``.
        output_zip: the zip to write (atomically).
        folds: folds to include; None takes every trained ``fold_N``.
        checkpoint: ``final`` or ``best``.
        onnx: also include each fold's network as ONNX, checked against PyTorch.
        check_backend: ONNX engine for that check; None takes ONNX Runtime, else OpenVINO.
        log: where the per-fold lines (ONNX check) go.

    Raises:
        InputError: the folder is not a trained model folder, a fold or checkpoint is missing, no ONNX engine is
            installed for the check, or the ONNX network differs from PyTorch by more than ``ONNX_TOLERANCE``.
    """
    import torch

    from segformer3d_auto import __version__
    from segformer3d_auto import model_folder as mf
    from segformer3d_auto.atomic import read_json
    from segformer3d_auto.checkpoint import load_network_weights
    from segformer3d_auto.inference import model_archive
    from segformer3d_auto.inference.engines import is_installed
    from segformer3d_auto.inference.onnx_export import OPSET
    from segformer3d_auto.planners import CONFIGURATION

    if checkpoint not in ("final", "best"):
        raise ValueError(f"checkpoint must be 'final' or 'best', got {checkpoint!r}")
    model_folder = Path(model_folder)
    if not (model_folder / "plans.json").is_file():
        raise InputError(f"{model_folder}: not a model folder (plans.json missing)")
    plans = read_json(model_folder / "plans.json")
    dataset = model_folder.parent.name  # where -d finds it; plans' own name for a folder kept elsewhere
    if not model_archive.DATASET_NAME.match(dataset):
        dataset = str(plans.get("dataset_name", ""))
    if not model_archive.DATASET_NAME.match(dataset):
        raise InputError(f"{model_folder / 'plans.json'}: dataset_name {dataset!r} is not a DatasetXXX_Name")
    folds = sorted({int(f) for f in (mf.available_folds(model_folder) if folds is None else folds)})
    if not folds:
        raise InputError(f"{model_folder}: no fold_N folders with trained checkpoints")
    if onnx and check_backend is None:
        check_backend = next((b for b in ("onnxruntime", "openvino") if is_installed(b)), None)
        if check_backend is None:
            raise InputError("ONNX export needs an ONNX engine to check the network against PyTorch: "
                             "pip install \"segformer3d_auto[onnx]\" (or pass --no-onnx)")
    members: dict[str, bytes] = {}
    for name in model_archive.MODEL_FILES:
        path = model_folder / name
        if path.is_file():
            members[name] = path.read_bytes()
        elif name in ("plans.json", "dataset.json"):
            raise InputError(f"{path}: missing")
    config = plans["configurations"][CONFIGURATION]
    differences: dict[str, float] = {}
    for fold in folds:
        source = mf.checkpoint_file(model_folder, fold, checkpoint)
        weights = load_network_weights(source)
        buffer = io.BytesIO()
        torch.save({"network_weights": weights}, buffer)
        members[f"fold_{fold}/{source.name}"] = buffer.getvalue()
        if onnx:
            from segformer3d_auto.inference.onnx_export import export_onnx, onnx_difference

            onnx_model = export_onnx(config["network"], weights, config["patch_size"])
            diff = onnx_difference(onnx_model, config["network"], weights, config["patch_size"], check_backend)
            log(f"fold {fold}: ONNX network at patch {list(config['patch_size'])}, max |torch - {check_backend}| "
                f"= {diff:.2e} on random input")
            if not diff <= ONNX_TOLERANCE:
                raise InputError(f"{source}: the ONNX network differs from PyTorch by {diff:.3g} (> "
                                 f"{ONNX_TOLERANCE}); export with --no-onnx")
            differences[str(fold)] = diff
            members[f"fold_{fold}/{source.stem}.onnx"] = onnx_model
    manifest = {
        "dataset": dataset, "configuration": CONFIGURATION, "checkpoint": checkpoint, "folds": folds,
        "patch_size": [int(p) for p in config["patch_size"]],
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"segformer3d_auto": __version__, "torch": torch.__version__, "python": platform.python_version(),
                     **({"onnx_opset": OPSET} if onnx else {})},
        "onnx_check": {"backend": check_backend, "max_abs_difference": differences} if onnx else None,
    }
    model_archive.write_archive(output_zip, members, manifest)
    return model_archive.read_manifest(output_zip)

