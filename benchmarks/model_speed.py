"""Forward speed and memory of our SegFormer3D against a plain implementation of the official forward.

Both networks get the same weights (ours through ``convert_official_state_dict``), run in eval mode under
``torch.inference_mode`` on all CPU threads, alternating run by run so that both see the same machine load; the
median of each is printed with the ratio and the largest output difference. Peak memory of one forward is measured
in a fresh child process per network (peak RSS minus RSS before the forward). On a machine with CUDA the GPU
times (fp32 and autocast fp16) are printed too.

    python benchmarks/model_speed.py [--size 128 128 128] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from segformer3d_auto.model import SegFormer3D, convert_official_state_dict  # noqa: E402
from tests.model.official_reference import OfficialSegFormer3D, randomize  # noqa: E402


def build_pair(device: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The official-style baseline (randomised weights) and ours with the same weights, in eval mode."""
    baseline = randomize(OfficialSegFormer3D(in_channels=4, num_classes=3)).eval()
    ours = SegFormer3D(in_channels=4, num_classes=3)
    ours.load_state_dict(convert_official_state_dict(baseline.state_dict()))
    return baseline.to(device), ours.eval().to(device)


def time_interleaved(models: dict[str, torch.nn.Module], x: torch.Tensor, repeats: int,
                     autocast: bool = False) -> dict[str, list[float]]:
    """Seconds per forward for each model, alternating models run by run."""
    times: dict[str, list[float]] = {name: [] for name in models}
    cuda = x.device.type == "cuda"
    with torch.inference_mode(), torch.autocast(x.device.type, enabled=autocast):
        for model in models.values():  # warm-up
            model(x)
        for _ in range(repeats):
            for name, model in models.items():
                if cuda:
                    torch.cuda.synchronize()
                start = time.perf_counter()
                model(x)
                if cuda:
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - start)
    return times


def peak_forward_rss_mb(which: str, size: list[int]) -> float:
    """Peak RSS increase of one forward, in a fresh process (MiB)."""
    code = (
        "import resource, sys, torch; sys.path.insert(0, sys.argv[1]);"
        "from benchmarks.model_speed import build_pair;"
        "b, o = build_pair('cpu'); m = b if sys.argv[2] == 'baseline' else o;"
        "x = torch.randn(1, 4, *map(int, sys.argv[3:6]));"
        "import gc; gc.collect();"
        "before = int(open('/proc/self/statm').read().split()[1]) * 4096;"
        "torch.inference_mode().__enter__(); m(x);"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024;"
        "print((peak - before) / 2**20)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(ROOT), which, *map(str, size)],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, nargs=3, default=[128, 128, 128])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    results: dict[str, float] = {"threads": torch.get_num_threads()}
    baseline, ours = build_pair("cpu")
    x = torch.randn(1, 4, *args.size)
    with torch.inference_mode():
        diff = (baseline(x) - ours(x)).abs().max().item()
        scale = baseline(x).abs().max().item()
    times = time_interleaved({"baseline": baseline, "ours": ours}, x, args.repeats)
    med = {k: statistics.median(v) for k, v in times.items()}
    results.update(cpu_baseline_s=med["baseline"], cpu_ours_s=med["ours"], cpu_speedup=med["baseline"] / med["ours"],
                   max_abs_diff_rel=diff / scale)
    for which in ("baseline", "ours"):
        results[f"cpu_peak_forward_mib_{which}"] = peak_forward_rss_mb(which, args.size)

    size = "x".join(map(str, args.size))
    print(f"SegFormer3D forward, 1x4x{size}, eval + inference_mode, CPU, {results['threads']} threads, "
          f"median of {args.repeats} interleaved runs")
    for label, which in (("official-style baseline", "baseline"), ("segformer3d_auto", "ours")):
        peak = results[f"cpu_peak_forward_mib_{which}"]
        print(f"  {label:24s} {med[which] * 1e3:8.1f} ms   peak +{peak:.0f} MiB")
    print(f"  speed-up: {results['cpu_speedup']:.2f}x   max |difference| / max |output| = {diff / scale:.1e}")

    if torch.cuda.is_available():
        baseline, ours = build_pair("cuda")
        xg = x.cuda()
        for label, autocast in (("fp32", False), ("autocast fp16", True)):
            t = time_interleaved({"baseline": baseline, "ours": ours}, xg, max(args.repeats, 20), autocast=autocast)
            m = {k: statistics.median(v) for k, v in t.items()}
            torch.cuda.reset_peak_memory_stats()
            with torch.inference_mode(), torch.autocast("cuda", enabled=autocast):
                ours(xg)
            peak = torch.cuda.max_memory_allocated() / 2**20
            print(f"  CUDA {label}: baseline {m['baseline'] * 1e3:.2f} ms, ours {m['ours'] * 1e3:.2f} ms, "
                  f"speed-up {m['baseline'] / m['ours']:.2f}x, ours peak {peak:.0f} MiB")
            results[f"cuda_{label.replace(' ', '_')}_speedup"] = m["baseline"] / m["ours"]
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
