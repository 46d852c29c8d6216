"""Predictor: a trained model folder turned into label maps in each input image's own geometry.

Per image: preprocess exactly as in training (from ``plans.json``), run a Gaussian-weighted sliding window with
mirror test-time augmentation for every fold, average the folds' softmax (labels) or sigmoid (regions)
probabilities, export back to the input's geometry and apply ``crossval/postprocessing.json`` when present.

Devices: on CUDA the sliding-window accumulator lives on the GPU in float16 under autocast; when the GPU runs out
of memory the image is redone with the network on the GPU and the accumulator in float32 on the CPU. On the CPU
everything is float32 and memory stays near a few copies of the image (see ``export``).

Engines (``backend``): ``torch`` runs the folds' checkpoints; ``onnxruntime`` and ``openvino`` run the folds'
ONNX networks (``fold_N/checkpoint_*.onnx`` from ``sf3d_export_model``) on the CPU, with the very same
preprocessing, sliding window, mirroring, ensembling and export, in numpy: that path never imports torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from segformer3d_auto.atomic import read_json
from segformer3d_auto.dataset.dataset_json import load_dataset_json
from segformer3d_auto.dataset.image_io import read_images
from segformer3d_auto.dataset.labels import LabelManager
from segformer3d_auto.errors import InputError
from segformer3d_auto.inference.export import export_prediction, write_prediction
from segformer3d_auto.inference.postprocessing import apply_postprocessing, load_postprocessing
from segformer3d_auto.inference.sliding_window import sliding_window_predict
from segformer3d_auto.model_folder import available_folds, checkpoint_file, onnx_file, postprocessing_file
from segformer3d_auto.planners import CONFIGURATION
from segformer3d_auto.preprocessing.case_preprocessor import preprocess_case

if TYPE_CHECKING:
    import torch

_SLAB = 16  # z-slices per step when turning logits into probabilities: bounded temporaries in float32


class Predictor:
    """Predicts with the folds of one trained model folder.

    Args:
        model_folder: a model folder (see ``model_folder.py``).
        folds: folds to ensemble; None takes every ``fold_N`` folder present.
        checkpoint: ``"final"`` or ``"best"`` (or ``"latest"``, or a file name inside ``fold_N``).
        step_size: sliding-window step as a fraction of the patch, in (0, 1].
        use_mirroring: mirror test-time augmentation on the plan's ``mirror_axes``.
        sw_batch_size: windows per network call.
        device: ``"cpu"``, ``"cuda"``, ``"mps"`` or a torch device; None picks CUDA when available.
        progress: show progress bars.
        configuration: configuration of the plans to use.
        backend: ``torch``, ``onnxruntime`` or ``openvino``; None picks the default of
            ``engines.default_backend`` (the fastest installed ONNX engine on a CPU when the model has ONNX
            networks, else torch).

    Raises:
        InputError: the folder lacks plans.json or dataset.json, a fold or checkpoint is missing or unreadable,
            or the backend is not installed or has no network file.
        ValueError: an argument is out of range.
    """

    def __init__(
        self,
        model_folder: str | Path,
        folds: Sequence[int] | None = None,
        checkpoint: str = "final",
        step_size: float = 0.5,
        use_mirroring: bool = True,
        sw_batch_size: int = 1,
        device: str | torch.device | None = None,
        progress: bool = False,
        configuration: str = CONFIGURATION,
        backend: str | None = None,
    ) -> None:
        if not 0 < step_size <= 1:
            raise ValueError(f"step_size must be in (0, 1], got {step_size}")
        if sw_batch_size < 1:
            raise ValueError(f"sw_batch_size must be >= 1, got {sw_batch_size}")
        from segformer3d_auto.inference import engines

        self.model_folder = Path(model_folder)
        plans_file = self.model_folder / "plans.json"
        if not plans_file.is_file():
            raise InputError(f"{self.model_folder}: not a model folder (plans.json missing)")
        self.plans: dict[str, Any] = read_json(plans_file)
        if configuration not in self.plans.get("configurations", {}):
            raise InputError(f"{plans_file}: no configuration {configuration!r}")
        self.configuration_name = configuration
        self.plan: dict[str, Any] = self.plans["configurations"][configuration]
        self.dataset_json = load_dataset_json(self.model_folder / "dataset.json")
        self.label_manager = LabelManager.from_dataset_json(self.dataset_json)
        self.num_input_channels = len(self.dataset_json["channel_names"])
        self.file_ending: str = self.dataset_json["file_ending"]

        self.folds = list(available_folds(self.model_folder) if folds is None else folds)
        if not self.folds:
            raise InputError(f"{self.model_folder}: no fold_N folders with trained checkpoints")
        if backend is not None and backend not in engines.BACKENDS:
            raise ValueError(f"backend must be one of {engines.BACKENDS}, got {backend!r}")
        onnx_files = [onnx_file(self.model_folder, f, checkpoint) for f in self.folds]
        device_type = None if device is None else str(device).split(":")[0]
        if backend is None:
            backend = engines.default_backend(all(p.is_file() for p in onnx_files), device_type)
        engines.check_installed(backend)
        self.backend = backend
        self.fold_weights: list[dict] = []
        self.fold_networks: list[Any] = []
        if backend == "torch":
            self._load_torch_folds(checkpoint, device)
        else:
            if device_type not in (None, "cpu"):
                raise InputError(f"device {device}: the {backend} backend runs on the CPU (use --backend torch)")
            self.device = "cpu"
            for path in onnx_files:
                if not path.is_file():
                    raise InputError(f"{path}: no ONNX network for the {backend} backend (export the model with "
                                     "sf3d_export_model, without --no-onnx, or use --backend torch)")
                self.fold_networks.append(engines.load_onnx_network(path, backend))
        self.patch_size = [int(p) for p in self.plan["patch_size"]]
        self.step_size = float(step_size)
        self.mirror_axes = tuple(self.plan.get("mirror_axes", (0, 1, 2))) if use_mirroring else None
        self.sw_batch_size = int(sw_batch_size)
        self.progress = progress
        self.postprocessing = self._load_postprocessing()
        self.fold_observer: Any = None
        """Called with (fold index, that fold's probabilities on the network grid) before they are averaged."""

    def _load_torch_folds(self, checkpoint: str, device: str | torch.device | None) -> None:
        """Load every fold's weights and the planned network onto the device (the torch backend)."""
        from segformer3d_auto.checkpoint import load_network_weights
        from segformer3d_auto.model import create_model

        self.fold_weights = [load_network_weights(checkpoint_file(self.model_folder, f, checkpoint))
                             for f in self.folds]
        self.device = _pick_device(device)
        network = self.plan["network"]
        self.network = create_model(network["name"], **network.get("kwargs", {}))
        for fold, weights in zip(self.folds, self.fold_weights):
            try:
                self.network.load_state_dict(weights)
            except RuntimeError as e:
                path = checkpoint_file(self.model_folder, fold, checkpoint)
                raise InputError(f"{path}: weights do not fit the planned network ({str(e).splitlines()[0]})") \
                    from None
        self.network.eval().to(self.device)

    def predict_probabilities(self, data: np.ndarray | torch.Tensor) -> torch.Tensor | np.ndarray:
        """Fold-averaged probabilities ``(heads, z, y, x)`` of a preprocessed image ``(c, z, y, x)``.

        Softmax over the heads for labels, a sigmoid per head for regions; returned on the CPU in float32, or
        on the GPU in float16 when the prediction ran there; a float32 numpy array with an ONNX backend.
        """
        if self.backend != "torch":
            data = np.asarray(data, dtype=np.float32)
            if data.ndim != 4 or data.shape[0] != self.num_input_channels:
                raise ValueError(f"data must be ({self.num_input_channels}, z, y, x), got {tuple(data.shape)}")
            return self._ensemble_onnx(data)
        import torch

        data = torch.as_tensor(np.asarray(data, dtype=np.float32) if isinstance(data, np.ndarray) else data)
        if data.ndim != 4 or data.shape[0] != self.num_input_channels:
            raise ValueError(f"data must be ({self.num_input_channels}, z, y, x), got {tuple(data.shape)}")
        on_device = self.device.type == "cuda"
        try:
            return self._ensemble(data, on_device)
        except torch.cuda.OutOfMemoryError:
            if not on_device:
                raise
            torch.cuda.empty_cache()
            return self._ensemble(data, on_device=False)

    def predict_array(
        self, image: np.ndarray, properties: dict, return_probabilities: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Predict a raw image ``(c, z, y, x)`` as read by ``read_images``; returns ``(seg, probabilities)``.

        ``properties`` needs ``spacing`` (array order); the label map has ``image``'s spatial shape, and the
        probabilities (float32 ``(heads, z, y, x)``, or None) too. Postprocessing is applied to the labels.
        """
        data, props = self.preprocess(image, properties)
        return self.predict_preprocessed(data, props, return_probabilities)

    def preprocess(self, image: np.ndarray, properties: dict) -> tuple[np.ndarray, dict]:
        """Preprocess a raw image ``(c, z, y, x)`` as in training; returns the data and export properties."""
        if image.ndim != 4 or image.shape[0] != self.num_input_channels:
            raise ValueError(f"image must be ({self.num_input_channels}, z, y, x), got {image.shape}")
        data, _, props = preprocess_case(image, None, properties, self.plans, self.configuration_name)
        return data, props

    def preprocess_files(self, image_files: Sequence[str | Path]) -> tuple[np.ndarray, dict]:
        """Read a case's channel files and preprocess them; returns the data and export properties.

        Raises:
            InputError: a channel file is unreadable, or their number is not the model's channel count.
        """
        image_files = [Path(p) for p in image_files]
        if len(image_files) != self.num_input_channels:
            raise InputError(f"{image_files[0] if image_files else '(no files)'}: {len(image_files)} channel "
                             f"file(s) given, the model takes {self.num_input_channels}")
        image, properties = read_images(image_files)
        return self.preprocess(image, properties)

    def predict_preprocessed(
        self, data: np.ndarray, properties: dict, return_probabilities: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Predict preprocessed data and export it to the original geometry (``preprocess``'s outputs)."""
        probabilities = self.predict_probabilities(data)
        seg, probs = export_prediction(probabilities, properties, self.plans, self.label_manager,
                                       self.configuration_name, return_probabilities)
        del probabilities
        if self.postprocessing is not None:
            seg = apply_postprocessing(seg, self.postprocessing, self.label_manager)
        return seg, probs

    def predict_files(self, image_files: Sequence[str | Path], output_file: str | Path,
                      save_probabilities: bool = False) -> Path:
        """Predict one case from its channel files and write the label map (and ``.npz``) atomically.

        The output has the input's size, spacing, origin and direction; its ending (e.g. ``.nii.gz``) picks
        the format. Returns ``output_file``.

        Raises:
            InputError: a channel file is unreadable, or their number is not the model's channel count.
        """
        data, props = self.preprocess_files(image_files)
        seg, probs = self.predict_preprocessed(data, props, save_probabilities)
        del data
        write_prediction(seg, props, output_file, probs)
        return Path(output_file)

    def _ensemble_onnx(self, data: np.ndarray) -> np.ndarray:
        """Mean over the folds of each fold's probabilities, with the ONNX networks, in numpy."""
        return self._mean_over_folds(
            logits_to_probabilities_(sliding_window_predict(
                network, data, self.patch_size, self.label_manager.num_segmentation_heads,
                step_size=self.step_size, mirror_axes=self.mirror_axes, sw_batch_size=self.sw_batch_size,
                progress=self.progress), self.label_manager.has_regions)
            for network in self.fold_networks)

    def _ensemble(self, data: torch.Tensor, on_device: bool) -> torch.Tensor:
        """Mean over the folds of each fold's probabilities."""

        def per_fold() -> Iterator[torch.Tensor]:
            for weights in self.fold_weights:
                self.network.load_state_dict(weights)
                yield self._fold_probabilities(data, on_device)

        return self._mean_over_folds(per_fold())

    def _mean_over_folds(self, per_fold: Iterable[Any]) -> Any:
        """Mean of the folds' probabilities (tensors or arrays, made one at a time), summed in place; each fold is
        shown to ``fold_observer`` first."""
        total, count = None, 0
        for index, probabilities in enumerate(per_fold):
            if self.fold_observer is not None:
                self.fold_observer(index, probabilities)
            if total is None:
                total = probabilities
            else:
                total += probabilities
                del probabilities
            count += 1
        if count > 1:
            total /= count
        return total

    def _fold_probabilities(self, data: torch.Tensor, on_device: bool) -> torch.Tensor:
        """One fold's probabilities, computed in place in the sliding window's accumulator."""
        import torch

        network: Any = self.network
        accumulate_device, dtype = self.device, torch.float32
        if self.device.type == "cuda":
            if on_device:
                dtype = torch.float16
            else:
                accumulate_device, network = torch.device("cpu"), _NetworkOnDevice(self.network, self.device)
        autocast = torch.autocast("cuda", dtype=torch.float16, enabled=self.device.type == "cuda")
        with autocast:
            logits = sliding_window_predict(
                network, data, self.patch_size, self.label_manager.num_segmentation_heads,
                step_size=self.step_size, mirror_axes=self.mirror_axes, sw_batch_size=self.sw_batch_size,
                device=accumulate_device, accumulate_dtype=dtype, progress=self.progress)
        return logits_to_probabilities_(logits, self.label_manager.has_regions)

    def _load_postprocessing(self) -> dict | None:
        path = postprocessing_file(self.model_folder)
        if not path.is_file():
            return None
        return load_postprocessing(path, self.label_manager)


def logits_to_probabilities_(logits: torch.Tensor | np.ndarray, regions: bool) -> torch.Tensor | np.ndarray:
    """Softmax over axis 0 (labels) or sigmoid (regions), in place, slab by slab in float32; returns ``logits``.

    A numpy array (float32) is computed in numpy, a tensor in torch.
    """
    if isinstance(logits, np.ndarray):
        from scipy.special import expit

        for start in range(0, logits.shape[1], _SLAB):
            slab = logits[:, start:start + _SLAB]
            if regions:
                expit(slab, out=slab)
            else:
                slab -= slab.max(axis=0, keepdims=True)
                np.exp(slab, out=slab)
                slab /= slab.sum(axis=0, keepdims=True)
        return logits
    import torch

    with torch.inference_mode():
        for start in range(0, logits.shape[1], _SLAB):
            slab = logits[:, start:start + _SLAB]
            values = slab.float()
            values = torch.sigmoid(values) if regions else torch.softmax(values, dim=0)
            slab.copy_(values)
    return logits


class _NetworkOnDevice:
    """Runs the network on its device for batches that live on the CPU (CPU-accumulator fallback)."""

    def __init__(self, network: torch.nn.Module, device: torch.device) -> None:
        self.network, self.device = network, device

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return self.network(batch.to(self.device)).float().cpu()


def _pick_device(device: str | torch.device | None) -> torch.device:
    """The torch device to predict on; CUDA when available if none is named."""
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device}: CUDA is not available on this machine (use --device cpu)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device {device}: MPS is not available on this machine (use --device cpu)")
    return device
