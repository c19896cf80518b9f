"""Time DARTS search iterations (architecture step + weight step) on 32×32 inputs; print one JSON line.

    python benchmarks/search_step.py --method darts --width 8 --cells 5 --batch 32 --steps 5 [--device cpu]
    python benchmarks/search_step.py --method pdarts --stage 3 --width 16 --batch 32
    python benchmarks/search_step.py --method entrannas --width 8 --cells 8 --batch 32   # 2 Engine-cells of 8

``--method pdarts --stage K`` builds stage K's supernet of the ``paper`` preset (its depth, e.g. 17 cells, and
its number of ops per edge, e.g. 3; which ops survive on each edge is drawn at random with seed 0, `none`
allowed, as a search could leave them) so that one stage can be timed and its memory measured on its own.

``--profile`` runs one more step under ``torch.profiler`` (CPU) and one under ``FlopCounterMode`` and prints, as
one JSON object, the time and call count per op type, the step's FLOPs, the achieved GFLOP/s, and this machine's
measured peak GFLOP/s for a large matmul and for a depthwise 3×3 conv (what the step could reach at best).

Reports the median seconds per iteration over ``--steps`` timed iterations after ``--warmup`` untimed ones,
images per second, peak resident memory of the process and how much of it the steps added on top of the built
supernet (``step_rss_mib``: activations and gradients), and peak CUDA memory on a GPU. Random inputs: the
cost of an iteration does not depend on pixel values. Compare implementations side by side in one run.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from nasforge.allocator import loaded, reexec_under_allocator  # noqa: E402

if __name__ == "__main__":
    reexec_under_allocator()  # as the nasforge command does: default settings include its allocator

import torch  # noqa: E402

from nasforge.strategies import STRATEGIES, SearchContext  # noqa: E402


def peak_rss_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / 2**20


def peak_gflops(device: torch.device) -> dict[str, float]:
    """This machine's reachable GFLOP/s: a 2048² matmul and a depthwise 3×3 conv of DARTS-like size."""
    def rate(f, flops: float, reps: int = 5) -> float:
        f()
        t0 = time.perf_counter()
        for _ in range(reps):
            f()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return round(flops * reps / (time.perf_counter() - t0) / 1e9, 2)
    a = torch.randn(2048, 2048, device=device)
    x = torch.randn(64, 64, 32, 32, device=device)
    w = torch.randn(64, 1, 3, 3, device=device)
    return {"matmul_2048": rate(lambda: a @ a, 2 * 2048**3),
            "depthwise3x3_64x64x32x32": rate(lambda: torch.nn.functional.conv2d(x, w, padding=1, groups=64),
                                              2 * 64 * 64 * 32 * 32 * 9)}


def profile_step(strategy, train_b, val_b, step_s: float, top: int, device: torch.device, shapes: bool = False,
                 shapes_top: int = 30) -> dict:
    """One step under the profiler (time and calls per op type), one under the FLOP counter."""
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities, record_shapes=shapes) as prof:
        strategy.step(train_b, val_b)
    if shapes:  # the costliest (op, input shapes) pairs, as torch's table, on stderr (stdout stays one JSON line)
        print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=shapes_top,
                                                                 max_name_column_width=40, max_shapes_column_width=90),
              file=sys.stderr)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total_us = sum(e.self_cpu_time_total for e in events)
    ops = [{"op": e.key, "self_s": round(e.self_cpu_time_total / 1e6, 4), "calls": e.count,
            "share": round(e.self_cpu_time_total / max(total_us, 1), 3)} for e in events[:top]]
    counter = FlopCounterMode(display=False)
    with counter:
        strategy.step(train_b, val_b)
    flops = counter.get_total_flops()
    by_op = sorted(((str(k), v) for k, v in counter.get_flop_counts().get("Global", {}).items()),
                   key=lambda kv: -kv[1])
    calls = {e.key: e.count for e in events}
    # torch's counter charges a grouped (depthwise) conv's backward as if it were dense, and counts recomputed and
    # backward matmuls as more work; the step's useful FLOPs are estimated from one plain forward instead: the
    # architecture step (first order) is a forward and an input-gradient backward (~2 forwards), the weight step
    # a forward and a backward with weight gradients (~3 forwards)
    fwd = FlopCounterMode(display=False)
    with fwd, torch.no_grad():
        strategy.net(train_b[0])
    forward = fwd.get_total_flops()
    estimate = 5 * forward
    return {"profile": True, "step_s": round(step_s, 4), "profiled_self_s": round(total_us / 1e6, 4),
            "kernel_calls": sum(e.count for e in events if e.key.startswith("aten::")),
            "conv_calls": calls.get("aten::convolution", 0), "top_ops": ops,
            "gflop_forward": round(forward / 1e9, 3), "gflop_step_est": round(estimate / 1e9, 3),
            "gflop_counter_raw": round(flops / 1e9, 3),
            "flops_by_op_gflop": {k: round(v / 1e9, 3) for k, v in by_op},
            "achieved_gflops": round(estimate / step_s / 1e9, 2), "peak_gflops": peak_gflops(device),
            "threads": torch.get_num_threads(), "torch": torch.__version__}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="darts")
    p.add_argument("--width", type=int, default=16, help="initial channels C")
    p.add_argument("--cells", type=int, default=None, help="cells (default: 8, or the P-DARTS stage's depth)")
    p.add_argument("--stage", type=int, default=None, help="P-DARTS: build this stage's supernet (1-based)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--order", default="first", choices=["first", "second"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--profile", action="store_true", help="per-op-type time, FLOPs and achieved GFLOP/s (JSON)")
    p.add_argument("--top", type=int, default=20, help="--profile: op types to list")
    p.add_argument("--shapes", action="store_true",
                   help="--profile: also print the costliest (op, input shapes) pairs as a table on stderr")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra search.* config fields, e.g. --set search.nodes=3")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    strategy_cls = STRATEGIES.get(args.method)
    from nasforge.config import from_dict, parse_overrides, preset_dict

    fields = {f for f in strategy_cls.Config.__dataclass_fields__}
    raw = dict(preset_dict(args.method, "paper").get("search", {}))
    raw.update({"channels": args.width, "order": args.order, "warmup_epochs": 0})
    if "layers" in fields:
        raw["layers"] = args.cells or 8
    raw.update(parse_overrides(args.overrides).get("search", {}))
    cfg = from_dict(strategy_cls.Config, {k: v for k, v in raw.items() if k in fields}, "search.")
    torch.manual_seed(0)
    ctx = SearchContext(num_classes=10, in_channels=3, image_size=32, steps_per_epoch=1, device=device,
                        generator=torch.Generator().manual_seed(0))
    strategy = strategy_cls(cfg, ctx)
    cells = args.cells or getattr(cfg, "layers", None)
    if args.stage is not None:
        if not hasattr(strategy, "enter_stage"):
            p.error(f"--stage needs a staged method (pdarts), not {args.method}")
        stage = args.stage - 1
        keep = cfg.stage_ops[stage]
        g = torch.Generator().manual_seed(0)
        alive = {}
        for key in ("normal", "reduce"):
            mask = torch.zeros(len(strategy.space.edges), len(strategy.space.ops), dtype=torch.bool)
            for e in range(mask.shape[0]):
                mask[e, torch.randperm(mask.shape[1], generator=g)[:keep]] = True
            alive[key] = mask
        if args.cells:
            cfg.stage_layers[stage] = args.cells
        strategy.enter_stage(stage, None if keep == len(strategy.space.ops) else alive)
        strategy.epoch = stage * cfg.epochs_per_stage
        cells = cfg.stage_layers[stage]
    else:
        strategy.begin_epoch(0)
    g = torch.Generator(device=device).manual_seed(1)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(args.batch, 3, 32, 32, generator=g, device=device)
        return x, torch.randint(10, (args.batch,), generator=g, device=device)

    train_b, val_b = batch(), batch()
    rss_before = peak_rss_mib()  # the built supernet and the process; the steps' activations come on top
    times = []
    for i in range(args.warmup + args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        strategy.step(train_b, val_b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    s = statistics.median(times)
    if args.profile:
        print(json.dumps(profile_step(strategy, train_b, val_b, s, args.top, device, args.shapes, args.top)))
        return
    out = {"method": args.method, "stage": args.stage, "order": args.order, "width": args.width, "cells": cells,
           "ops_per_edge": int(strategy.net.alive(strategy.net.arch_keys()[0]).sum(1).float().mean()),
           "checkpoint_edges": bool(getattr(cfg, "checkpoint_edges", False)),
           "fused": bool(getattr(cfg, "fused", False)),
           "batch": args.batch, "steps": args.steps, "device": str(device), "threads": torch.get_num_threads(),
           "s_per_iter": round(s, 4), "s_per_iter_min": round(min(times), 4),
           "images_per_s": round(args.batch / s, 1), "peak_rss_mib": round(peak_rss_mib(), 1),
           "step_rss_mib": round(peak_rss_mib() - rss_before, 1),
           "torch": torch.__version__, "allocator": loaded() or "system"}
    if device.type == "cuda":
        out["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
