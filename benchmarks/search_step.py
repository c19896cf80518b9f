"""Time DARTS search iterations (architecture step + weight step) on 32×32 inputs; print one JSON line.

    python benchmarks/search_step.py --method darts --width 8 --cells 5 --batch 32 --steps 5 [--device cpu]

Reports the median seconds per iteration over ``--steps`` timed iterations after ``--warmup`` untimed ones,
images per second, peak resident memory of the process (and peak CUDA memory on a GPU). Random inputs: the
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

import torch  # noqa: E402

from nasforge.strategies import STRATEGIES, SearchContext  # noqa: E402


def peak_rss_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="darts")
    p.add_argument("--width", type=int, default=16, help="initial channels C")
    p.add_argument("--cells", type=int, default=8)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--order", default="first", choices=["first", "second"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra search.* config fields, e.g. --set search.nodes=3")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    strategy_cls = STRATEGIES.get(args.method)
    from nasforge.config import from_dict, parse_overrides

    raw = {"layers": args.cells, "channels": args.width, "order": args.order,
           **parse_overrides(args.overrides).get("search", {})}
    cfg = from_dict(strategy_cls.Config, raw, "search.")
    torch.manual_seed(0)
    ctx = SearchContext(num_classes=10, in_channels=3, image_size=32, steps_per_epoch=1, device=device,
                        generator=torch.Generator().manual_seed(0))
    strategy = strategy_cls(cfg, ctx)
    strategy.begin_epoch(0)
    g = torch.Generator(device=device).manual_seed(1)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(args.batch, 3, 32, 32, generator=g, device=device)
        return x, torch.randint(10, (args.batch,), generator=g, device=device)

    train_b, val_b = batch(), batch()
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
    out = {"method": args.method, "order": args.order, "width": args.width, "cells": args.cells,
           "batch": args.batch, "steps": args.steps, "device": str(device), "threads": torch.get_num_threads(),
           "s_per_iter": round(s, 4), "s_per_iter_min": round(min(times), 4),
           "images_per_s": round(args.batch / s, 1), "peak_rss_mib": round(peak_rss_mib(), 1),
           "torch": torch.__version__}
    if device.type == "cuda":
        out["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
