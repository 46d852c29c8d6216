"""The engines that can run a fold's network: PyTorch, ONNX Runtime and OpenVINO, and which one is the default.

Everything around the network (preprocessing, sliding window, test-time mirroring, fold ensemble, export) is the
same code for all three; only the call that turns a batch of patches into logits differs. The ONNX engines take
and return float32 numpy arrays; they need the ``fold_N/checkpoint_*.onnx`` files that ``sf3d_export_model``
writes, and no torch.

Default on the CPU: OpenVINO when installed, else ONNX Runtime, else PyTorch. Measured per case by
``benchmarks/deployment.py`` (SegFormer3D-B0, 2 shared CPU cores): see ``docs/deployment.md``.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from segformer3d_auto.errors import InputError

BACKENDS = ("torch", "onnxruntime", "openvino")
CPU_PREFERENCE = ("openvino", "onnxruntime", "torch")
"""Fastest first on a CPU shared with other work, as measured for SegFormer3D (``benchmarks/deployment.py``); on
an idle CPU the three cost about the same, OpenVINO and torch ahead of ONNX Runtime."""
_MODULES = {"torch": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino"}
_EXTRAS = {"torch": "torch", "onnxruntime": "segformer3d_auto[onnx]", "openvino": "segformer3d_auto[openvino]"}


def is_installed(backend: str) -> bool:
    """True when the engine's Python package can be imported (checked without importing it)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return importlib.util.find_spec(_MODULES[backend]) is not None


def check_installed(backend: str) -> None:
    """Raise ``InputError`` with the install command when ``backend``'s package is missing."""
    if not is_installed(backend):
        raise InputError(f"backend {backend}: not installed (pip install \"{_EXTRAS[backend]}\")")


def default_backend(onnx_available: bool, device: str | None = None) -> str:
    """The engine to use when none is named.

    PyTorch for an explicit GPU device or when CUDA is available; otherwise the fastest installed ONNX engine
    when the model has ONNX networks (``onnx_available``), else PyTorch.
    """
    if device in ("cuda", "mps"):
        return "torch"
    if device is None and is_installed("torch"):
        import torch

        if torch.cuda.is_available():
            return "torch"
    if onnx_available:
        for backend in CPU_PREFERENCE:
            if backend != "torch" and is_installed(backend):
                return backend
    if not is_installed("torch"):
        raise InputError("no engine to run the network: install torch, or export the model with ONNX networks "
                         "(sf3d_export_model) and install onnxruntime or openvino")
    return "torch"


def load_onnx_network(model: bytes | str | Path, backend: str, threads: int | None = None
                      ) -> Callable[[np.ndarray], np.ndarray]:
    """A callable mapping a float32 batch ``(b, c, *patch)`` to logits ``(b, heads, *patch)`` with ``backend``.

    Args:
        model: ONNX file or its bytes.
        backend: ``onnxruntime`` or ``openvino``.
        threads: intra-op threads; None lets the engine use every core it is allowed (``OMP_NUM_THREADS``
            is honoured by both).
    """
    if backend not in ("onnxruntime", "openvino"):
        raise ValueError(f"backend must be onnxruntime or openvino, got {backend!r}")
    check_installed(backend)
    if threads is None and os.environ.get("OMP_NUM_THREADS", "").isdigit():
        threads = int(os.environ["OMP_NUM_THREADS"])
    if isinstance(model, Path | str):
        model = Path(model).read_bytes()
    return _OnnxRuntimeNetwork(model, threads) if backend == "onnxruntime" else _OpenVinoNetwork(model, threads)


class _OnnxRuntimeNetwork:
    def __init__(self, model: bytes, threads: int | None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]


class _OpenVinoNetwork:
    def __init__(self, model: bytes, threads: int | None) -> None:
        import openvino

        core = openvino.Core()
        # f32 explicitly: on CPUs with bf16 units OpenVINO otherwise computes in bfloat16 (logits off by ~0.5)
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(core.read_model(model=model), "CPU", config)
        self.request = self.compiled.create_infer_request()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        results = self.request.infer([np.ascontiguousarray(batch, dtype=np.float32)])
        return np.array(results[self.compiled.output(0)], dtype=np.float32, copy=True)
