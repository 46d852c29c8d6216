"""A fold's network as ONNX at the planned patch size, checked against PyTorch on random input.

The network is traced in eval mode (its BatchNorm folded into the fuse convolution, dropout off) with the
TorchScript-based exporter of ``torch.onnx``, opset 17, the batch axis dynamic and every spatial size fixed to
the patch: the sliding window only ever feeds whole patches. Exporting needs torch; running the result needs only
an ONNX engine (``segformer3d_auto.inference.engines``).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "image", "logits"


def export_onnx(network_config: Mapping[str, Any], weights: Mapping[str, Any], patch_size: Sequence[int]) -> bytes:
    """ONNX bytes of the planned network with ``weights``, input ``(batch, channels, *patch_size)`` float32.

    Args:
        network_config: the plan's ``network`` entry (``name`` and ``kwargs``).
        weights: the fold's ``network_weights`` state dict.
        patch_size: the planned patch size ``(z, y, x)``.
    """
    import torch

    from segformer3d_auto.model import create_model

    if len(patch_size) != 3 or any(int(p) < 1 for p in patch_size):
        raise ValueError(f"patch_size must be three positive sizes, got {list(patch_size)}")
    network = create_model(network_config["name"], **network_config.get("kwargs", {}))
    network.load_state_dict(weights)
    network.eval()
    channels = int(network_config.get("kwargs", {}).get("in_channels", 1))
    example = torch.zeros((1, channels, *[int(p) for p in patch_size]), dtype=torch.float32)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python-level shape checks, fixed by design here
        torch.onnx.export(network, (example,), buffer, dynamo=False, opset_version=OPSET, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], do_constant_folding=True,
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    return buffer.getvalue()


def onnx_difference(onnx_model: bytes, network_config: Mapping[str, Any], weights: Mapping[str, Any],
                    patch_size: Sequence[int], backend: str, batch: int = 2, seed: int = 0) -> float:
    """Largest absolute difference between PyTorch's and the ONNX engine's logits on random input.

    The input is a standard-normal batch of ``batch`` patches (two by default, which also checks that the batch
    axis is dynamic).
    """
    import torch

    from segformer3d_auto.inference.engines import load_onnx_network
    from segformer3d_auto.model import create_model

    network = create_model(network_config["name"], **network_config.get("kwargs", {}))
    network.load_state_dict(weights)
    network.eval()
    channels = int(network_config.get("kwargs", {}).get("in_channels", 1))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, channels, *[int(p) for p in patch_size])).astype(np.float32)
    with torch.inference_mode():
        expected = network(torch.from_numpy(x)).numpy()
    got = load_onnx_network(onnx_model, backend)(x)
    if got.shape != expected.shape:
        return float("inf")
    return float(np.max(np.abs(got - expected)))
