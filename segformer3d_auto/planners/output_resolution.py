"""Choose SegFormer3D's output resolution from the data: the paper's grid, a finer first stride, or refinement.

The fingerprint's ``output_grid_ceiling`` says, per candidate output grid, the best mean Dice any network
predicting on that grid can reach (``ceiling.py``). Candidates:

- ``paper``: the paper's network, first-embedding stride 4 (level ``"4"`` of the fingerprint);
- ``stride2``: first-embedding stride 2, the later grids as in the paper (``topology.py``, level ``"2"``);
- ``refine``: the paper's network plus a light full-resolution refinement head (``model/refinement.py``, level
  ``"1"``: nothing caps it below full resolution).

Each candidate is planned like the paper's network (patch shrunk until a batch of two fits ``--gpu-memory-gb`` by
the counted estimate, then the batch grows), so a finer grid trades patch size against resolution within the same
memory. A candidate is admissible when its estimate fits the target and its training FLOPs per voxel stay within
``COMPUTE_BOUND`` times the paper's. The rule, in two steps:

1. **Where the paper's grid draws the structures** (its ceiling within ``CEILING_TOLERANCE`` of a perfect score):
   the refinement head, when it is admissible and costs at most ``REFINE_BOUND`` times the paper's FLOPs per voxel,
   because it learns the boundaries in fewer CPU seconds; the paper's network unchanged when the head does not fit
   those bounds, or when the grid loses nothing at all (ceiling at least ``EXACT_CEILING``: no boundary for the
   head to sharpen).
2. **Where it does not:** the first of ``refine``, ``stride2`` (:data:`FINER_ORDER`) whose ceiling is within the
   tolerance and that is admissible; when none is, the admissible one with the highest ceiling (ties: the paper's,
   then the order above).

Step 1 comes from training, not from the ceilings: ``benchmarks/output_resolution.py``, the same 300 CPU seconds
of training per candidate on one thread, the paper's network vs the head on the datasets whose stride-4 ceiling
is high: BraTS-like regions 0.967 vs 0.982, CT 0.965 vs 0.968, prostate-like 0.984 vs 0.999 (the head runs 1.2-1.3x
longer per iteration). The ceiling says what a grid can draw, not how fast a network learns to draw it.

Step 2 tries ``refine`` before ``stride2`` because it learns more per CPU-second, now that the head learns at its
own rate (``training/optimizer.py``): on the thin-structure dataset at 48^3, mean Dice 0.891 after 600 iterations in
280 CPU seconds with the head, 0.830 after 400 iterations in 323 CPU seconds with stride 2 (2.2x the paper's
training FLOPs per voxel against 1.25x for the head). Before the head had its own rate, stride 2 won there (0.760
against 0.551): the head's zero-started correction could not grow within a short run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from segformer3d_auto.model import create_model

CEILING_TOLERANCE = 0.02
COMPUTE_BOUND = 4.0
"""Training FLOPs per voxel a candidate may cost, relative to the paper's network."""
REFINE_BOUND = 1.5
"""Training FLOPs per voxel the refinement head may cost where the paper's grid already draws the structures."""
EXACT_CEILING = 0.9995
"""A paper-grid ceiling this high loses nothing to the grid: the paper's network is planned unchanged."""
REFINE_CHANNELS = 8
FINER_ORDER = ("refine", "stride2")
"""Step 2's order of preference among the candidates finer than the paper's grid."""
CANDIDATES = (
    {"name": "paper", "level": "4", "first_stride_cap": 4, "refine_channels": 0},
    {"name": "stride2", "level": "2", "first_stride_cap": 2, "refine_channels": 0},
    {"name": "refine", "level": "1", "first_stride_cap": 4, "refine_channels": REFINE_CHANNELS},
)
CHOICES = ("auto", *(c["name"] for c in CANDIDATES))
"""Values of ``sf3d_plan_and_preprocess --output-resolution``."""


def forward_flops(model_name: str, kwargs: dict[str, Any], patch: Sequence[int]) -> int:
    """FLOPs of one training-mode forward pass per patch, counted on the ``meta`` device (no compute).

    Counted on a batch of two (train-mode BatchNorm needs more than one value per channel) and halved.
    """
    with torch.device("meta"):
        model = create_model(model_name, **kwargs).train()
        x = torch.empty((2, kwargs["in_channels"], *patch))
    counter = FlopCounterMode(display=False)
    with counter:
        model(x)
    return int(counter.get_total_flops()) // 2


def choose_output_resolution(
    ceilings: dict[str, Any] | None,
    plan_candidate: Any,
    model: str,
    gpu_memory_gb: float,
    choice: str = "auto",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Plan every candidate, pick one; returns the chosen plan and the record for ``plans.json``.

    Args:
        ceilings: the fingerprint's ``output_grid_ceiling`` (level -> {"mean", "per_class", ...}); without it
            (an older fingerprint) only the paper's network is planned, unless ``choice`` names another.
        plan_candidate: ``f(first_stride_cap, refine_channels) -> plan`` as :func:`planner.plan_network` returns.
        model: the registered variant (for counting FLOPs).
        gpu_memory_gb: the memory target.
        choice: ``"auto"`` (the rule above) or a candidate's name (``sf3d_plan_and_preprocess
            --output-resolution``): that candidate is planned whatever its ceiling and cost, e.g. ``paper`` to
            fine-tune from, or compare with, the paper's network.

    Raises:
        ValueError: for an unknown ``choice``.
    """
    if choice not in CHOICES:
        raise ValueError(f"output resolution must be one of {', '.join(CHOICES)}, got {choice!r}")
    target_gb = float(gpu_memory_gb)
    candidates = CANDIDATES if ceilings or choice != "auto" else CANDIDATES[:1]
    rows, plans = [], []
    for candidate in candidates:
        plan = plan_candidate(candidate["first_stride_cap"], candidate["refine_channels"])
        patch = plan["patch_size"]
        voxels = float(torch.tensor(patch).prod())
        flops = 3 * forward_flops(model, plan["network"]["kwargs"], patch)  # forward + backward ~ 3x forward
        level = ceilings.get(candidate["level"]) if ceilings else None
        rows.append({
            "name": candidate["name"],
            "first_stride": plan["network"]["kwargs"]["patch_stride"][0],
            "refine_channels": candidate["refine_channels"],
            "ceiling_mean": None if level is None else level["mean"],
            "ceiling_per_class": None if level is None else level["per_class"],
            "patch_size": patch,
            "batch_size": plan["batch_size"],
            "estimated_gb": plan["memory"]["estimated_gb"],
            "training_gflops_per_voxel": round(flops / voxels / 1e9, 6),
        })
        plans.append(plan)
    paper_cost = rows[0]["training_gflops_per_voxel"]
    for row in rows:
        row["fits_memory"] = row["estimated_gb"] <= target_gb
        row["within_compute_bound"] = row["training_gflops_per_voxel"] <= COMPUTE_BOUND * paper_cost
    admissible = [i for i, r in enumerate(rows) if r["fits_memory"] and r["within_compute_bound"]] or [0]
    good = [i for i in admissible if rows[i]["ceiling_mean"] is not None
            and rows[i]["ceiling_mean"] >= 1.0 - CEILING_TOLERANCE]
    if choice != "auto":
        chosen = next(i for i, r in enumerate(rows) if r["name"] == choice)
        reason = "chosen by --output-resolution"
    elif not ceilings:
        chosen, reason = 0, "no output-grid ceilings in the fingerprint: the paper's network"
    elif 0 in good:
        chosen, reason = _where_the_paper_grid_draws(rows, admissible)
    elif good:
        chosen = min(good, key=lambda i: _preference(rows[i]["name"]))
        order = ", ".join(FINER_ORDER)
        reason = (f"the paper's grid caps the score ({rows[0]['ceiling_mean']:.3f}); the first of {order} whose"
                  f" ceiling ({rows[chosen]['ceiling_mean']:.3f}) is within {CEILING_TOLERANCE} of a perfect "
                  f"score and that fits {target_gb:g} GB and the compute bound")
    else:
        chosen = max(admissible, key=lambda i: (rows[i]["ceiling_mean"] or 0.0, -_preference(rows[i]["name"])))
        reason = (f"no candidate reaches {1 - CEILING_TOLERANCE:.2f} within {target_gb:g} GB and the compute "
                  f"bound; the highest ceiling ({rows[chosen]['ceiling_mean']:.3f}) that does")
    record = {
        "chosen": rows[chosen]["name"],
        "reason": reason,
        "ceiling_tolerance": CEILING_TOLERANCE,
        "compute_bound_vs_paper": COMPUTE_BOUND,
        "refine_bound_vs_paper": REFINE_BOUND,
        "exact_ceiling": EXACT_CEILING,
        "candidates": rows,
    }
    return plans[chosen], record


def _preference(name: str) -> int:
    """Rank of a candidate in step 2's ties: the paper's network first, then :data:`FINER_ORDER`."""
    return 0 if name == "paper" else 1 + FINER_ORDER.index(name)


def _where_the_paper_grid_draws(rows: list[dict[str, Any]], admissible: list[int]) -> tuple[int, str]:
    """Step 1 of the rule: the refinement head where it is cheap and has a boundary to sharpen, else the paper's
    network; returns (index into ``rows``, reason)."""
    paper, refine = rows[0], next(i for i, r in enumerate(rows) if r["name"] == "refine")
    if paper["ceiling_mean"] >= EXACT_CEILING:
        return 0, (f"the paper's grid loses nothing (ceiling {paper['ceiling_mean']:.4f}): the paper's network, "
                   "no boundary for a refinement head to sharpen")
    ratio = rows[refine]["training_gflops_per_voxel"] / paper["training_gflops_per_voxel"]
    if ratio > REFINE_BOUND:
        return 0, (f"the paper's grid draws the structures and the refinement head would cost {ratio:.2f}x its "
                   f"FLOPs per voxel (bound {REFINE_BOUND:g}x)")
    if refine not in admissible:
        return 0, "the paper's grid draws the structures and the refinement head does not fit the memory target"
    return refine, (f"the paper's grid draws the structures (ceiling {paper['ceiling_mean']:.3f}); the refinement "
                    f"head sharpens their boundaries at {ratio:.2f}x its FLOPs per voxel (bound {REFINE_BOUND:g}x)")
