"""``nasforge search`` and ``nasforge train``: the two commands that create a run folder, with their shared options.

Parsing only; the work is :func:`nasforge.api.search` and :func:`nasforge.api.train`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Callable

from .. import api
from ..errors import ConfigError
from ..parallel import distributed as ddp
from ..parallel.options import ExecutorOptions
from ..strategies import STRATEGIES

__all__ = ["COMMANDS", "add_parsers"]

EXAMPLES_SEARCH = """examples:
  nasforge search                                   # tiny DARTS search on the embedded digits (about a minute)
  nasforge search --dataset cifar10 --preset paper  # the paper's CIFAR-10 search (GPU recommended)
  nasforge search --set search.order=second --set search.epochs=10 --out runs/x
  nasforge search --out runs/x --resume             # continue an interrupted run
  nasforge search --seeds 0-3 --workers 2 --out runs/s   # four seeds, two at a time (runs/s/seed<k>)
  nasforge search --method nao-v2 --workers 2       # NAO-V2's finalists trained two at a time
  torchrun --nproc-per-node 2 -m nasforge search --dataset cifar10 --preset paper   # data-parallel
"""
EXAMPLES_TRAIN = """examples:
  nasforge train --genotype DARTS_V2                       # tiny retraining on digits
  nasforge train --genotype runs/x/genotype.json --dataset cifar10 --preset paper
  nasforge train --genotype "Genotype(normal=[...], ...)" --set train.epochs=20
"""


def _common(p: argparse.ArgumentParser, kind: str) -> None:
    p.add_argument("--dataset", help="digits (embedded, default), cifar10, cifar100, or npz:PATH with x_train, "
                                     "y_train, x_test, y_test")
    p.add_argument("--preset", default="tiny", help=f"named settings from presets/{kind}.yaml (default: tiny; "
                                                    "'paper' for the published ones); see 'nasforge presets'")
    p.add_argument("--out", help="run folder (default: runs/<kind>-<name>-<dataset>-<time>)")
    p.add_argument("--seed", type=int, help="random seed (default: the preset's)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    p.add_argument("--data-dir", help="where datasets are looked for (default: $NASFORGE_DATA, else "
                                      "~/.cache/nasforge/data)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set search.epochs=3 --set data.batch_size=32; "
                        "'nasforge presets METHOD' lists every field with its valid range")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=int, metavar="N", help="torch threads of each process (default: torch's own; "
                                                             "under torchrun, cores / processes per node)")


def add_parsers(sub: Any) -> None:
    """Add ``search`` and ``train`` to the CLI's subparsers."""
    p = sub.add_parser("search", help="search an architecture", epilog=EXAMPLES_SEARCH,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Search a cell with a NAS method; writes config.yaml, metrics.jsonl, "
                                   "genotype.json, checkpoints/ and report.md into the run folder.")
    p.add_argument("--method", default="darts", help="search method (default: darts); see 'nasforge presets'")
    _common(p, "<method>")
    g = p.add_argument_group("parallel candidates", "with --seeds: the same search once per seed, in parallel; "
                                                    "each seed's run goes to OUT/seed<k>, a summary to OUT/seeds.json; "
                                                    "rerunning the command skips finished seeds and resumes "
                                                    "interrupted ones. Without --seeds: where knas, random and "
                                                    "nao-v2 train their candidates (search.workers, "
                                                    "search.executor, search.ray_address)")
    g.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2,3 (or a range, 0-3)")
    g.add_argument("--workers", type=int, help="searches (or candidates) at once (default: 1)")
    g.add_argument("--executor", help="local (processes here, default) or ray")
    g.add_argument("--ray-address", help="a Ray cluster to run them on (with --executor ray)")

    p = sub.add_parser("train", help="retrain a genotype from scratch and report test accuracy",
                       epilog=EXAMPLES_TRAIN, formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train the evaluation network of a genotype with the DARTS-family recipe "
                                   "(cutout, drop-path, auxiliary head); writes result.json and report.md.")
    p.add_argument("--genotype", required=True, help="a genotype.json file or run folder, a published name "
                                                     "(DARTS_V2, PDARTS, ...) or Genotype(...) text")
    _common(p, "train")


def _follower() -> bool:
    """A torchrun rank other than 0: rank 0 prints the job's result."""
    return ddp.launched_by_torchrun() and os.environ.get("RANK", "0") != "0"


def _parse_seeds(text: str) -> list[int]:
    try:
        if "-" in text.strip().lstrip("-") and "," not in text:
            lo, hi = (int(t) for t in text.split("-", 1))
            return list(range(lo, hi + 1))
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: give comma-separated integers (0,1,2,3) or a range (0-3)") from None


def _search_seeds(args: argparse.Namespace) -> int:
    if args.resume:
        raise ConfigError("--seeds resumes interrupted seeds by itself: rerun the same command without --resume")
    runs = api.search_seeds(_parse_seeds(args.seeds), method=args.method, dataset=args.dataset, preset=args.preset,
                            out=args.out, device=args.device, overrides=args.overrides, data_dir=args.data_dir,
                            executor=args.executor or "local", workers=args.workers or 1, threads=args.threads,
                            ray_address=args.ray_address)
    for r in runs:
        state = f"FAILED {r.error}" if r.error else f"{r.genotype_hash} valid_acc={r.valid_acc}" + \
            (" (finished before)" if r.cached else "")
        print(f"seed {r.seed}: {state}  [{r.run_dir}]")
    print(f"summary: {Path(runs[0].run_dir).parent / 'seeds.json'}")
    return 1 if any(r.error for r in runs) else 0


def _candidate_overrides(args: argparse.Namespace) -> list[str]:
    """``--workers/--executor/--ray-address`` without ``--seeds``: the method's own executor settings (refused in
    one line for a method that evaluates no independent candidates, rather than silently ignored)."""
    given = {"workers": args.workers, "executor": args.executor, "ray_address": args.ray_address}
    given = {k: v for k, v in given.items() if v is not None}
    if not given:
        return []
    if not issubclass(STRATEGIES.get(args.method).Config, ExecutorOptions):
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise ConfigError(f"{flags}: {args.method} trains one supernet and evaluates no independent candidates; "
                          f"use them with --seeds, or run it data-parallel with torchrun")
    return [f"search.{k}={v}" for k, v in given.items()]


def _search(args: argparse.Namespace) -> int:
    if args.seeds is not None:
        return _search_seeds(args)
    overrides = _candidate_overrides(args) + args.overrides  # an explicit --set wins
    result = api.search(method=args.method, dataset=args.dataset, preset=args.preset, out=args.out,
                        seed=args.seed, device=args.device, resume=args.resume, overrides=overrides,
                        data_dir=args.data_dir, progress=not args.no_progress, threads=args.threads)
    if _follower():
        return 0
    print(f"genotype: {result.genotype}")
    print(f"run folder: {result.run_dir} (report.md, genotype.json)")
    return 0


def _train(args: argparse.Namespace) -> int:
    result = api.train(args.genotype, dataset=args.dataset, preset=args.preset, out=args.out, seed=args.seed,
                       device=args.device, resume=args.resume, overrides=args.overrides,
                       data_dir=args.data_dir, progress=not args.no_progress, threads=args.threads)
    if _follower():
        return 0
    print(f"test accuracy: {result['test_acc']:.2f}%  params: {result['params']:,}  "
          f"multiply-adds: {result['macs']:,}  wall: {result['wall_s']:.1f} s")
    print(f"run folder: {result['run_dir']} (result.json, report.md)")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"search": _search, "train": _train}
