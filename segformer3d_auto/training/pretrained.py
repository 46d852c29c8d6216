"""Initial weights for ``--pretrained``: one of our checkpoints or an official SegFormer3D release, also from a
dataset with other input channels or other classes.

- Same name and shape: copied.
- The first patch embedding (``stages.0.patch_embed.proj.weight``, one input channel per column) when the
  channels differ: columns mapped by channel name where the names match (case-insensitive); channels without a
  match get the mean of the pretrained columns; when no name matches (or names are unknown), every channel gets
  the mean scaled by ``pretrained channels / new channels`` (averaged and repeated: an input whose channels are
  all equal gives the same response as before).
- Convolution kernels planned with another shape (an anisotropic plan's ``1 x 7 x 7`` patch embedding against an
  isotropic ``7 x 7 x 7`` one): summed over an axis that became 1 voxel thick (same response to an input constant
  along it), repeated and divided along an axis that grew from 1 (inflated).
- The prediction layer (``decode_head.pred``) when the classes differ: a new head, with the rows of the classes
  (or regions) whose names match copied.
- Anything else that does not fit keeps its initialisation.

Every tensor that is not copied as is gets a line in the returned report, which the trainer writes to the log.
Channel and class names come from the checkpoint (written by this version on) or from the ``dataset.json`` of the
model folder the checkpoint lies in (``.../fold_N/checkpoint_*.pth``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from segformer3d_auto.checkpoint import read_checkpoint
from segformer3d_auto.errors import InputError
from segformer3d_auto.model import convert_official_state_dict

FIRST_EMBEDDING = "stages.0.patch_embed.proj.weight"
HEAD = ("decode_head.pred.weight", "decode_head.pred.bias")
ENCODER_PREFIX = "stages."
FINETUNE_LR = 1e-4


@dataclass
class PretrainedReport:
    """What :func:`load_pretrained` did: ``lines`` for the log, and the tensors that are new or adapted (they stay
    trainable while the encoder is frozen)."""

    copied: int = 0
    lines: list[str] = field(default_factory=list)
    changed: set[str] = field(default_factory=set)


def head_names(dataset_json: dict[str, Any]) -> list[str]:
    """Name of each network output: the regions, or ``background`` and the labels in value order."""
    from segformer3d_auto.dataset.labels import LabelManager

    labels = LabelManager.from_dataset_json(dataset_json)
    return list(labels.names) if labels.has_regions else ["background", *labels.names]


def channel_names(dataset_json: dict[str, Any]) -> list[str]:
    """The input channels' names in channel order."""
    names = dataset_json.get("channel_names") or dataset_json.get("modality") or {}
    return [str(names[k]) for k in sorted(names, key=int)]


def load_pretrained(network: torch.nn.Module, path: str, channels: list[str] | None = None,
                    classes: list[str] | None = None) -> PretrainedReport:
    """Initialise ``network`` from ``path`` and report every tensor that was adapted, re-initialised or skipped.

    Args:
        network: the planned network of the new dataset.
        path: our checkpoint or an official SegFormer3D release.
        channels: the new dataset's channel names (for mapping the first embedding by name).
        classes: the new dataset's output names (:func:`head_names`), for copying matching head rows.

    Raises:
        InputError: the file is missing or unreadable, or shares no tensor with the network.
    """
    file = Path(path)
    state = read_checkpoint(file)
    weights = state.get("network_weights", state) if isinstance(state, dict) else {}
    own = network.state_dict()
    if not any(k in own for k in weights):
        try:
            weights = convert_official_state_dict(weights)
        except Exception as e:
            raise InputError(f"{file}: neither our checkpoint nor an official SegFormer3D one ({e})") from None
    source_channels, source_classes = _source_names(state, file)
    report = PretrainedReport()
    new: dict[str, torch.Tensor] = {}
    for key, target in own.items():
        if key not in weights:
            report.lines.append(f"{key}: not in the checkpoint, initialised")
            report.changed.add(key)
            continue
        source = weights[key].to(target.dtype)
        if key == FIRST_EMBEDDING and (source.shape != target.shape or _differ(source_channels, channels)):
            new[key], line = _adapt_channels(source, target, source_channels, channels)
        elif key in HEAD and (source.shape != target.shape or _differ(source_classes, classes)):
            new[key], line = _adapt_head(key, source, target, source_classes, classes)
        elif source.shape == target.shape:
            new[key] = source
            report.copied += 1
            continue
        elif _kernel_adaptable(source, target):
            new[key], how = _adapt_kernel(source, target)
            line = f"{key}: {how}"
        else:
            line = f"{key}: shape {tuple(source.shape)} in the checkpoint, {tuple(target.shape)} here: initialised"
        report.lines.append(line)
        report.changed.add(key)
    unused = sorted(k for k in weights if k not in own)
    if unused:
        report.lines.append(f"{len(unused)} checkpoint tensors unused: {', '.join(unused[:5])}"
                            f"{' ...' if len(unused) > 5 else ''}")
    if not report.copied:
        raise InputError(f"{file}: no tensor matches the planned network")
    network.load_state_dict(new, strict=False)
    report.lines.insert(0, f"pretrained {file.name}: {report.copied} of {len(own)} tensors copied, "
                           f"{len(report.changed)} adapted or initialised")
    return report


def _source_names(state: Any, file: Path) -> tuple[list[str] | None, list[str] | None]:
    if isinstance(state, dict) and "channel_names" in state and "class_names" in state:
        return list(state["channel_names"]), list(state["class_names"])
    dataset_json = file.parent.parent / "dataset.json"
    if isinstance(state, dict) and "network_weights" in state and dataset_json.is_file():
        from segformer3d_auto.atomic import read_json

        try:
            values = read_json(dataset_json)
            return channel_names(values), head_names(values)
        except (OSError, ValueError, KeyError):
            pass
    return None, None


def _differ(source: list[str] | None, target: list[str] | None) -> bool:
    return source is not None and target is not None and [s.lower() for s in source] != [t.lower() for t in target]


def _kernel_adaptable(source: torch.Tensor, target: torch.Tensor, channels_too: bool = False) -> bool:
    """A 3D convolution weight whose kernel differs only by axes of size 1 on one side."""
    if source.dim() != 5 or target.dim() != 5 or source.shape[0] != target.shape[0]:
        return False
    if not channels_too and source.shape[1] != target.shape[1]:
        return False
    return all(a == b or a == 1 or b == 1 for a, b in zip(source.shape[2:], target.shape[2:]))


def _adapt_kernel(source: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, str]:
    """Bring ``source``'s kernel to ``target``'s: sum over axes that became 1, inflate axes that grew from 1."""
    out, done = source, []
    for axis, (a, b) in enumerate(zip(source.shape[2:], target.shape[2:]), start=2):
        if a != b and b == 1:
            out = out.sum(dim=axis, keepdim=True)
            done.append(f"summed over axis {axis - 2}")
        elif a != b:
            repeats = [1] * 5
            repeats[axis] = b
            out = out.repeat(*repeats) / b
            done.append(f"inflated along axis {axis - 2}")
    return out, f"kernel {tuple(source.shape[2:])} -> {tuple(target.shape[2:])} ({', '.join(done)})"


def _adapt_channels(source: torch.Tensor, target: torch.Tensor, source_names: list[str] | None,
                    names: list[str] | None) -> tuple[torch.Tensor, str]:
    if not _kernel_adaptable(source, target, channels_too=True):
        return target, f"{FIRST_EMBEDDING}: shape {tuple(source.shape)} vs {tuple(target.shape)}: initialised"
    kernel = ""
    if source.shape[2:] != target.shape[2:]:
        source, how = _adapt_kernel(source, target)
        kernel = f"{how}; "
    n_source, n_target = source.shape[1], target.shape[1]
    lookup = {n.lower(): i for i, n in enumerate(source_names or [])}
    matches = [lookup.get(n.lower()) for n in names] if names is not None and len(names) == n_target else []
    mean = source.mean(dim=1, keepdim=True)
    if any(m is not None for m in matches):
        columns = [source[:, m:m + 1] if m is not None else mean for m in matches]
        described = ", ".join(f"{n}<-{source_names[m] if m is not None else 'mean'}" for n, m in zip(names, matches))
        return torch.cat(columns, dim=1), (f"{FIRST_EMBEDDING}: {kernel}{n_source} -> {n_target} channels by name "
                                           f"({described})")
    adapted = (mean * (n_source / n_target)).repeat(1, n_target, 1, 1, 1)
    return adapted, (f"{FIRST_EMBEDDING}: {kernel}{n_source} -> {n_target} channels, averaged and repeated "
                     f"(scaled by {n_source}/{n_target})")


def _adapt_head(key: str, source: torch.Tensor, target: torch.Tensor, source_names: list[str] | None,
                names: list[str] | None) -> tuple[torch.Tensor, str]:
    if source.shape[1:] != target.shape[1:]:
        return target, f"{key}: shape {tuple(source.shape)} vs {tuple(target.shape)}: initialised"
    lookup = {n.lower(): i for i, n in enumerate(source_names or [])}
    rows = target.clone()
    copied = []
    for i, name in enumerate(names or []):
        j = lookup.get(name.lower())
        if j is not None and i < rows.shape[0]:
            rows[i] = source[j]
            copied.append(name)
    kept = ", ".join(copied) if copied else "none"
    return rows, f"{key}: new head for {target.shape[0]} outputs ({source.shape[0]} pretrained); copied by name: {kept}"


def set_encoder_frozen(network: torch.nn.Module, frozen: bool, keep_trainable: set[str]) -> int:
    """Freeze (or unfreeze) the encoder's parameters except ``keep_trainable``; returns how many were changed.

    Frozen parameters get no gradient, so AdamW leaves them (and their moments) untouched.
    """
    changed = 0
    for name, parameter in network.named_parameters():
        if name.startswith(ENCODER_PREFIX) and name not in keep_trainable and parameter.requires_grad == frozen:
            parameter.requires_grad_(not frozen)
            changed += 1
    return changed


def keep_encoder_statistics(network: torch.nn.Module) -> None:
    """Put the encoder's batch-norm layers in eval mode (call after ``network.train()``): a frozen encoder keeps its
    pretrained running statistics too."""
    for name, module in network.named_modules():
        if name.startswith(ENCODER_PREFIX) and isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
