"""Time training-free scoring of NAS-Bench-201 architectures; print one JSON object.

    python benchmarks/proxy_speed.py --archs 20 --samples 50 --threads 1
    python benchmarks/proxy_speed.py --archs 20 --proxies mgm,params,grad_norm,snip,synflow,naswot,mgm_official

For each of ``--archs`` architectures sampled with ``--seed`` (C=16, N=5 networks unless told otherwise):

* per-sample gradients of all parameters for ``--samples`` images, (a) in one batched pass (``torch.func.vmap``
  over ``grad``, what MGM uses) and (b) as a loop of batch-1 backward passes (what the KNAS code does); both with
  per-sample training-mode BatchNorm, so they compute the same numbers (tests check it);
* one ordinary batched forward/backward of the same images (not per-sample): the floor any batched method
  pays, so ``loop_over_batch_gradient_median`` bounds the speed-up a batched per-sample method can reach;
* the full scoring time of each proxy: build and initialise the network, then score (no cache).

Reports per-architecture times, their medians, and the median of the per-architecture speed-up (loop / batched).
Inputs are random normal 32×32 images: the cost does not depend on pixel values. One untimed warm-up
architecture first (the first ``vmap`` call pays a one-off setup). On a shared machine run it when the CPU is
otherwise idle: several processes with multi-threaded OpenMP on the same cores slow each other down by far more
than their share.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from nasforge.proxies import (PROXIES, NetworkSpec, per_sample_grads, per_sample_grads_loop,  # noqa: E402
                              score_architecture)
from nasforge.proxies.mgm import select_params  # noqa: E402
from nasforge.spaces import NB201Arch, NB201Space  # noqa: E402


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _batch_gradient(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """One ordinary forward and backward of the whole batch: the cost floor of any batched method."""
    net.train()
    loss = torch.nn.functional.cross_entropy(net(x)[0], y)
    torch.autograd.grad(loss, [p for p in net.parameters() if p.requires_grad], allow_unused=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", type=int, default=20, help="architectures to time (default: 20)")
    p.add_argument("--samples", type=int, default=50, help="images per architecture (default: 50, as KNAS)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--cells", type=int, default=5, help="cells per stage N")
    p.add_argument("--proxies", default="all", help="comma-separated proxies to time, or 'all' / 'none'")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    proxies = PROXIES.names() if args.proxies == "all" else [] if args.proxies == "none" else args.proxies.split(",")

    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randn(max(args.samples, 64), 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (len(x),), generator=gen)
    spec = NetworkSpec(num_classes=10, channels=args.channels, cells=args.cells)
    indices = NB201Space().sample_indices(args.archs + 1, gen)
    xs, ys = x[: args.samples], y[: args.samples]

    rows = []
    for k, index in enumerate(indices):
        g = NB201Arch.from_index(index).genotype()
        row: dict[str, object] = {"index": index}
        net_a, net_b = spec.build(g, 0), spec.build(g, 0)
        row["batched_s"] = _timed(lambda n=net_a: per_sample_grads(n, xs, ys, select_params(n)))
        row["loop_s"] = _timed(lambda n=net_b: per_sample_grads_loop(n, xs, ys, select_params(n)))
        net_c = spec.build(g, 0)
        row["batch_gradient_s"] = _timed(lambda n=net_c: _batch_gradient(n, xs, ys))
        for name in proxies:
            row[f"{name}_s"] = score_architecture(g, name, x, y, seed=0, net=spec).seconds
        if k > 0:  # the first architecture only warms up
            rows.append(row)

    def median(key: str) -> float:
        return statistics.median(float(r[key]) for r in rows)

    out = {
        "benchmark": "proxy_speed", "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(), "archs": len(rows), "samples": args.samples,
        "network": f"NB201 C={args.channels} N={args.cells}",
        "per_sample_grads_batched_median_s": median("batched_s"),
        "per_sample_grads_loop_median_s": median("loop_s"),
        "batch_gradient_median_s": median("batch_gradient_s"),
        "speedup_median": statistics.median(float(r["loop_s"]) / float(r["batched_s"]) for r in rows),
        "loop_over_batch_gradient_median": statistics.median(float(r["loop_s"]) / float(r["batch_gradient_s"])
                                                             for r in rows),
        "speedup_of_medians": median("loop_s") / median("batched_s"),
        "proxy_median_s_per_arch": {name: median(f"{name}_s") for name in proxies},
        "per_arch": rows,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
