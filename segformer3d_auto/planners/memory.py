"""Training-memory estimate of SegFormer3D itself, counted rather than guessed.

nnU-Net estimates a U-Net's memory from a convolution heuristic; a transformer's memory is dominated by other
things (token tensors, attention, the decoder's full-resolution maps), so we count: one training forward of the
real network, with the loss, runs on the ``meta`` device (shapes only, no compute, no memory) while
``saved_tensors_hooks`` add up every tensor autograd keeps for the backward pass. Attention is counted as the fused
kernels used in training store it (inputs, output and log-sum-exp, not the score matrix). Weights, gradients and
AdamW's two moments, the batch itself, and a workspace for the backward pass's transient gradients are added.

The estimate is for float32 activations; mixed precision on CUDA stores many activations in half precision, so
it is an upper bound there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from segformer3d_auto.model import create_model
from segformer3d_auto.model.layers import attention_implementation

GIB = 1024**3


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of one training step, by kind.

    Attributes:
        activations: tensors saved for the backward pass (forward of network and loss).
        workspace: transient memory of the backward pass (gradients of the largest activations in flight).
        parameters: weights, their gradients and AdamW's two moments.
        batch: the input patch batch and its one-hot target.
    """

    activations: int
    workspace: int
    parameters: int
    batch: int

    @property
    def total(self) -> int:
        """All of it, in bytes."""
        return self.activations + self.workspace + self.parameters + self.batch

    @property
    def total_gb(self) -> float:
        """All of it, in GiB."""
        return self.total / GIB

    def rescaled(self, batch_size: int, to_batch_size: int) -> MemoryEstimate:
        """This estimate (made for ``batch_size``) for ``to_batch_size``: everything but the parameters scales with
        the batch. Saved tensors are per sample but for a few MB that do not depend on the batch (the decoder's
        folded weights, 2.6 MB for segformer3d_b0), which scaling up counts more than once: an upper bound."""
        def scale(v: int) -> int:
            return v * to_batch_size // batch_size

        return MemoryEstimate(scale(self.activations), scale(self.workspace), self.parameters, scale(self.batch))

    def as_dict(self) -> dict[str, float]:
        """GiB per kind and in total, for ``plans.json``."""
        out = {f"{k}_gb": round(v / GIB, 4) for k, v in asdict(self).items()}
        out["estimated_gb"] = round(self.total_gb, 4)
        return out


class _FusedAttentionStandIn(torch.autograd.Function):
    """Shape-only attention that saves what fused (flash / memory-efficient) attention saves for backward."""

    @staticmethod
    def forward(ctx, q, k, v):  # type: ignore[override]
        out = torch.empty_like(q)
        logsumexp = torch.empty(q.shape[:-1], dtype=torch.float32, device=q.device)
        ctx.save_for_backward(q, k, v, out, logsumexp)
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        raise RuntimeError("the memory estimate's attention stand-in has no backward")


def _fused_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):  # noqa: ARG001
    return _FusedAttentionStandIn.apply(q, k, v)


def count_saved_tensors(
    model: torch.nn.Module, batch: torch.Tensor, fused_attention: bool | None = None
) -> tuple[int, int]:
    """Bytes of the tensors autograd saves during a training forward (network, softmax and log-softmax).

    Storage shared by several saved tensors is counted once; parameters are not counted (they are weights).

    Args:
        model: the network, in train mode, on the device of ``batch`` (``meta`` for an estimate, ``cpu`` to
            measure).
        batch: the input batch.
        fused_attention: count attention as fused kernels store it; defaults to True on ``meta`` (where PyTorch
            would otherwise take the math path) and False elsewhere (the real kernels are used).

    Returns:
        Total bytes and the bytes of the largest single saved tensor.
    """
    if fused_attention is None:
        fused_attention = batch.device.type == "meta"
    parameters = {p.untyped_storage()._cdata for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage._cdata not in parameters:
            saved[storage._cdata] = storage.nbytes()
        return t

    attention = _fused_attention if fused_attention else torch.nn.functional.scaled_dot_product_attention
    with attention_implementation(model, attention), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = model(batch)
        # Dice uses the softmax, cross-entropy the log-softmax: both are kept for the backward pass.
        loss = torch.softmax(logits, 1).mean() + torch.log_softmax(logits, 1).mean()
    del loss, logits
    return sum(saved.values()), max(saved.values(), default=0)


def estimate_training_memory(
    network_name: str,
    network_kwargs: dict,
    patch_size: Sequence[int],
    batch_size: int,
) -> MemoryEstimate:
    """Estimate the memory of one training step of a planned network with AdamW.

    Args:
        network_name: registered variant, e.g. ``"segformer3d_b0"``.
        network_kwargs: constructor arguments (must include ``in_channels`` and ``num_classes``).
        patch_size: (z, y, x) training patch.
        batch_size: patches per step.

    Raises:
        ValueError: for a non-positive batch size or a patch the network cannot take.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    with torch.device("meta"):
        model = create_model(network_name, **network_kwargs).train()
    model.stage_grids(patch_size)
    in_channels, num_classes = network_kwargs["in_channels"], network_kwargs["num_classes"]
    batch = torch.empty((batch_size, in_channels, *patch_size), device="meta")
    activations, largest = count_saved_tensors(model, batch, fused_attention=True)
    parameter_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    voxels = batch_size * int(torch.tensor(patch_size).prod())
    return MemoryEstimate(
        activations=activations,
        workspace=2 * largest,
        parameters=4 * parameter_bytes,
        batch=voxels * 4 * (in_channels + num_classes),
    )
