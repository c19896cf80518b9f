"""Throughput of data-parallel search (torchrun, 1, 2, ... processes) and of parallel candidate evaluation
(1, 2, ... executor workers); print one JSON object.

    python benchmarks/scaling.py                                  # DDP 1 and 2 processes, local 1 and 2 workers, Ray
    python benchmarks/scaling.py --archs 24 --workers 1,2,4 --proxy mgm --samples 50 --no-ray --ddp 1,2,4

DDP rows: ``--ddp`` process counts, each a real ``torchrun`` (gloo on the CPU, nccl with ``--device cuda``) of
DARTS first-order search steps on the ``--ddp-width``/``--ddp-cells`` supernet with a global batch of
``--ddp-batch`` random 32×32 images split over the ranks (BN statistics synchronised, gradients averaged: the
same step as one process on the whole batch). Per row: images/s of the whole job (median step), and each
rank's threads and peak memory (resident MiB; peak CUDA MiB on a GPU).

Scores a fixed set of ``--archs`` NAS-Bench-201 architectures (sampled with ``--seed``; C=``--channels``,
N=``--cells`` networks) with ``--proxy`` on ``--samples`` random 32×32 images, through each executor in turn:
``local`` with each ``--workers`` count, then ``ray`` (a local Ray with as many CPUs as workers) with the
largest count. Every worker runs with the thread rule's ``cores // workers`` torch threads (``--threads``
overrides it). Per configuration: the executor's start-up (first candidates, one per worker, untimed in the
rest), wall seconds for the set, candidates/s and images/s, speed-up over one local worker, each worker's peak
resident memory (MiB) and threads. With one local worker the candidates run in this process, so its peak RSS
is this process's. Random inputs: the cost does not depend on pixel values. Run it on an otherwise idle
machine; other processes on the same cores take their share of the throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from nasforge.parallel import (Executor, available_cores, default_threads, make_executor,  # noqa: E402
                               ray_installed)
from nasforge.memory import peak_rss_mib  # noqa: E402
from nasforge.proxies import NetworkSpec, score_architecture  # noqa: E402
from nasforge.spaces import NB201Arch, NB201Space  # noqa: E402


def _score(job: tuple[int, str, NetworkSpec], batch: tuple[torch.Tensor, torch.Tensor]) -> float:
    """One candidate (module level, so executor workers can run it)."""
    index, proxy, spec = job
    return score_architecture(NB201Arch.from_index(index).genotype(), proxy, *batch, seed=0, net=spec).value


def _measure(executor: Executor, warmup: list[Any], jobs: list[Any], batch: Any, samples: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    executor.map(_score, warmup, shared=batch)  # pays the workers' start-up (and torch's first-call costs)
    startup = time.perf_counter() - t0
    t0 = time.perf_counter()
    outcomes = executor.map(_score, jobs, shared=batch)
    wall = time.perf_counter() - t0
    failed = [o.error for o in outcomes if not o.ok]
    if failed:
        raise SystemExit(f"scoring failed: {failed[0]}")
    per_worker: dict[int, dict[str, float]] = {}
    for o in outcomes:
        w = per_worker.setdefault(o.worker, {"candidates": 0, "peak_rss_mib": 0.0, "threads": o.threads})
        w["candidates"] += 1
        w["peak_rss_mib"] = max(w["peak_rss_mib"], round(o.peak_rss_mib, 1))
    return {"startup_s": round(startup, 2), "wall_s": round(wall, 2),
            "candidates_per_s": round(len(jobs) / wall, 3), "images_per_s": round(len(jobs) * samples / wall, 1),
            "workers_used": len(per_worker), "per_worker": list(per_worker.values()),
            "max_worker_peak_rss_mib": max(w["peak_rss_mib"] for w in per_worker.values())}


def _ddp_worker(args: argparse.Namespace) -> None:
    """One rank of a DDP row (or the whole of the 1-process row): time DARTS search steps on its slice."""
    from nasforge.config import from_dict, preset_dict
    from nasforge.ops.norm import sync_batch_norms
    from nasforge.parallel import distributed as ddp
    from nasforge.strategies import STRATEGIES, SearchContext

    ctx, device, owned = ddp.setup(torch.device(args.device), args.threads)
    cls = STRATEGIES.get("darts")
    raw = {**preset_dict("darts", "paper")["search"], "channels": args.ddp_width, "layers": args.ddp_cells}
    torch.manual_seed(0)
    strategy = cls(from_dict(cls.Config, raw, "search."),
                   SearchContext(num_classes=10, in_channels=3, image_size=32, steps_per_epoch=1, device=device,
                                 generator=torch.Generator().manual_seed(0)))
    strategy.begin_epoch(0)
    if ctx.active and not args.ddp_per_rank_bn:
        sync_batch_norms(strategy.model)
    g = torch.Generator().manual_seed(1)
    batch = lambda: (torch.randn(args.ddp_batch, 3, 32, 32, generator=g).to(device),  # noqa: E731
                     torch.randint(10, (args.ddp_batch,), generator=g).to(device))
    train, val = ddp.shard_batch(batch()), ddp.shard_batch(batch())
    times = []
    for i in range(1 + args.ddp_steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        strategy.step(train, val)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:
            times.append(time.perf_counter() - t0)
    mine = {"rank": ctx.rank, "threads": torch.get_num_threads(), "peak_rss_mib": round(peak_rss_mib(), 1),
            "s_per_step": round(statistics.median(times), 4)}
    if device.type == "cuda":
        mine["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    ranks = [mine]
    if ctx.active:
        ranks = [None] * ctx.world_size
        torch.distributed.all_gather_object(ranks, mine)
    if ctx.is_main:
        step = max(r["s_per_step"] for r in ranks)
        print("DDP-ROW " + json.dumps({"processes": ctx.world_size, "s_per_step": step,
                                        "images_per_s": round(args.ddp_batch / step, 1), "per_rank": ranks}))
    ddp.teardown(owned)


def _ddp_row(args: argparse.Namespace, processes: int) -> dict[str, Any]:
    me = [str(Path(__file__).resolve()), "--ddp-worker", "--ddp-width", str(args.ddp_width), "--ddp-cells",
          str(args.ddp_cells), "--ddp-batch", str(args.ddp_batch), "--ddp-steps", str(args.ddp_steps),
          "--device", args.device] + (["--threads", str(args.threads)] if args.threads else []) + \
        (["--ddp-per-rank-bn"] if args.ddp_per_rank_bn else [])
    cmd = [sys.executable] + (["-m", "torch.distributed.run", "--nproc-per-node", str(processes),
                               "--master-addr", "127.0.0.1", "--master-port", "29581"] if processes > 1 else []) + me
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("DDP-ROW ")), None)
    if res.returncode != 0 or line is None:
        raise SystemExit(f"DDP row with {processes} processes failed: {res.stderr.strip()[-800:]}")
    return json.loads(line[len("DDP-ROW "):])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", type=int, default=16, help="architectures scored per configuration (default: 16)")
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts (default: 1,2)")
    ap.add_argument("--threads", type=int, help="torch threads per worker (default: cores // workers)")
    ap.add_argument("--proxy", default="mgm")
    ap.add_argument("--samples", type=int, default=50, help="images in the scoring batch (default: 50)")
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--cells", type=int, default=5, help="NB201 cells per stage N (default: 5)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray backend even when Ray is installed")
    ap.add_argument("--ddp", default="1,2", help="comma-separated torchrun process counts ('' = no DDP rows)")
    ap.add_argument("--ddp-width", type=int, default=8, help="DDP rows: supernet channels C (default: 8)")
    ap.add_argument("--ddp-cells", type=int, default=5, help="DDP rows: supernet cells (default: 5)")
    ap.add_argument("--ddp-batch", type=int, default=32, help="DDP rows: global batch (default: 32)")
    ap.add_argument("--ddp-steps", type=int, default=3, help="DDP rows: timed steps after one warm-up")
    ap.add_argument("--device", default="cpu", help="DDP rows: cpu or cuda (one GPU per rank)")
    ap.add_argument("--ddp-per-rank-bn", action="store_true",
                    help="DDP rows: BN statistics per rank (loop.sync_bn=false) instead of over all ranks")
    ap.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.ddp_worker:
        _ddp_worker(args)
        return
    ddp_rows = [_ddp_row(args, int(n)) for n in args.ddp.split(",") if n]
    if ddp_rows:
        base_ddp = ddp_rows[0]["images_per_s"] if ddp_rows[0]["processes"] == 1 else None
        for r in ddp_rows:
            r["speedup_vs_1_process"] = round(r["images_per_s"] / base_ddp, 2) if base_ddp else None

    counts = [int(w) for w in args.workers.split(",")]
    gen = torch.Generator().manual_seed(args.seed)
    indices = NB201Space().sample_indices(args.archs + max(counts), gen)
    spec = NetworkSpec(num_classes=10, channels=args.channels, cells=args.cells)
    jobs = [(i, args.proxy, spec) for i in indices[:args.archs]]
    warm = [(i, args.proxy, spec) for i in indices[args.archs:]]
    batch = (torch.randn(args.samples, 3, 32, 32, generator=gen), torch.randint(0, 10, (args.samples,), generator=gen))

    runs = []
    plan = [("local", w) for w in counts] + ([("ray", max(counts))] if ray_installed() and not args.no_ray else [])
    for kind, workers in plan:
        if kind == "ray":
            import ray

            ray.init(num_cpus=workers, include_dashboard=False, logging_level="WARNING",
                     runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}})
        with make_executor(kind, workers, args.threads) as ex:
            result = _measure(ex, warm[:workers], jobs, batch, args.samples)
        threads = args.threads or (default_threads(workers) if kind == "local" else 1)
        runs.append({"executor": kind, "workers": workers, "threads_per_worker": threads, **result})
    base = next((r["candidates_per_s"] for r in runs if r["executor"] == "local" and r["workers"] == 1), None)
    for r in runs:
        r["speedup_vs_1_local"] = round(r["candidates_per_s"] / base, 2) if base else None
    print(json.dumps({"benchmark": "scaling", "proxy": args.proxy, "archs": args.archs, "samples": args.samples,
                      "network": {"channels": args.channels, "cells_per_stage": args.cells}, "cores": available_cores(),
                      "torch": torch.__version__, "python": platform.python_version(),
                      "ddp": {"method": "darts", "order": "first", "width": args.ddp_width, "cells": args.ddp_cells,
                              "global_batch": args.ddp_batch, "device": args.device,
                              "sync_bn": not args.ddp_per_rank_bn, "runs": ddp_rows},
                      "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
