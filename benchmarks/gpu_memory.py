"""Does the planner's counted memory estimate hold on a real GPU? Peak memory of real training steps vs the plan.

For each generated dataset (``mri``, ``ct``, ``thin``; ``anatomy`` too with the ``anatomy`` extra) it writes the
raw data, runs ``sf3d_plan_and_preprocess --no-preprocess`` for ``--gpu-memory-gb``, and for every output-resolution
candidate in plans.json (``paper``: the paper's stride 4; ``refine``; ``stride2``; the chosen one marked) it runs
real training steps on the GPU at the candidate's planned patch and batch: the planned network, AdamW, the
project's loss (``SegmentationLoss``), gradient clipping, the trainer's default mixed precision (bf16 where
supported, else fp16 with a gradient scaler), random data. It prints ``torch.cuda.max_memory_allocated`` of the
timed steps against the plan's estimate and the target (goal: within 15% of the estimate, never above the target)
and steps per second. Needs a CUDA device; exits with status 2 without one::

    python benchmarks/gpu_memory.py [--datasets mri ct thin anatomy] [--gpu-memory-gb 8] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.output_resolution import make_dataset  # noqa: E402
from segformer3d_auto.dataset.labels import LabelManager  # noqa: E402
from segformer3d_auto.model import create_model  # noqa: E402
from segformer3d_auto.planners.memory import GIB  # noqa: E402
from segformer3d_auto.planners.output_resolution import CANDIDATES  # noqa: E402
from segformer3d_auto.planners.planner import plan_network  # noqa: E402
from segformer3d_auto.training.losses import SegmentationLoss  # noqa: E402


def measure(name: str, kwargs: dict, patch: list[int], batch: int, labels: LabelManager, steps: int) -> tuple:
    """(peak bytes, steps per second) of ``steps`` training steps after 3 warm-up steps."""
    device = torch.device("cuda")
    model = create_model(name, **kwargs).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.01)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    regions = labels.foreground_regions if labels.has_regions else None
    loss_fn = SegmentationLoss(regions, labels.num_segmentation_heads, labels.ignore_label)
    values = labels.foreground_labels
    data = torch.randn(batch, kwargs["in_channels"], *patch, device=device)
    seg = torch.randint(0, max(values) + 1, (batch, 1, *patch), device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=dtype):
            loss = loss_fn(model(data), seg)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    rate = steps / (time.perf_counter() - start)
    return torch.cuda.max_memory_allocated(), rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=("mri", "ct", "thin", "anatomy"),
                        default=["mri", "ct", "thin"])
    parser.add_argument("--gpu-memory-gb", type=float, default=8.0)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks/gpu_memory.py needs a CUDA device; none is available", file=sys.stderr)
        return 2
    work_root = args.workdir or Path(tempfile.mkdtemp(prefix="sf3d_gpumem_"))
    rows = ["| dataset | candidate | chosen | patch x batch | estimate GB | measured GB | measured / estimate | "
            f"<= {args.gpu_memory_gb:g} GB | steps/s |", "|---|---|---|---|---|---|---|---|---|"]
    try:
        for kind in args.datasets:
            work = work_root / kind
            folder = make_dataset(kind, work / "raw", small=False)
            env = dict(os.environ, SF3D_RAW=str(folder.parent), SF3D_PREPROCESSED=str(work / "pre"),
                       SF3D_RESULTS=str(work / "res"))
            subprocess.run([sys.executable, "-m", "segformer3d_auto.cli.plan_and_preprocess", "-d", folder.name,
                            "--no-preprocess", "--gpu-memory-gb", str(args.gpu_memory_gb)], env=env, check=True,
                           capture_output=True)
            plans = json.loads((work / "pre" / folder.name / "plans.json").read_text())
            config = plans["configurations"]["3d_fullres"]
            fingerprint = json.loads((work / "pre" / folder.name / "dataset_fingerprint.json").read_text())
            labels = LabelManager.from_dataset_json(json.loads((folder / "dataset.json").read_text()))
            kwargs = config["network"]["kwargs"]
            record = config["output_resolution"]
            for candidate in CANDIDATES:
                plan = plan_network(config["spacing"], config["median_image_size_in_voxels"], kwargs["in_channels"],
                                    kwargs["num_classes"], len(fingerprint["spacings"]), args.gpu_memory_gb,
                                    config["network"]["name"], candidate["first_stride_cap"],
                                    candidate["refine_channels"])
                peak, rate = measure(plan["network"]["name"], plan["network"]["kwargs"], plan["patch_size"],
                                     plan["batch_size"], labels, args.steps)
                torch.cuda.empty_cache()
                estimate = plan["memory"]["estimated_gb"]
                rows.append(
                    f"| {folder.name} | {candidate['name']} | {'yes' if record['chosen'] == candidate['name'] else ''} "
                    f"| {'x'.join(map(str, plan['patch_size']))} x {plan['batch_size']} | {estimate:.2f} "
                    f"| {peak / GIB:.2f} | {peak / GIB / estimate:.2f} | {peak / GIB <= args.gpu_memory_gb} "
                    f"| {rate:.1f} |")
                print(rows[-1], file=sys.stderr, flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(work_root, ignore_errors=True)
    print("\n".join(rows))
    print(f"\n{torch.cuda.get_device_name()}, torch {torch.__version__}, {args.steps} timed steps per row")
    return 0


if __name__ == "__main__":
    sys.exit(main())
