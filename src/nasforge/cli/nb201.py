"""``nasforge bench`` and ``nasforge proxies``: the NAS-Bench-201 table and training-free proxies from the shell.

:mod:`nasforge.cli` registers these parsers with :func:`add_parsers` and calls the handler in :data:`COMMANDS`;
this module only parses, calls the library and prints (one-line errors come from
:class:`~nasforge.errors.NasforgeError`).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .._io import atomic_write_text
from ..benchmarks import ACCURACY_COLUMNS, load_nb201
from ..data import load_dataset
from ..errors import ConfigError, DataError, GenotypeError
from ..genotypes import load_genotype
from ..parallel import EXECUTOR_KINDS, check_executor, make_executor
from ..proxies import (PROXIES, NetworkSpec, ScoreCache, default_cache_dir, kendall_tau, proxy_batch, score_many,
                       spearman_rho)
from ..spaces import DartsSpace, NB201Arch, NB201Space

__all__ = ["COMMANDS", "add_parsers"]


EXAMPLES_BENCH = """examples:
  nasforge bench --space nb201 --arch 6111              # the best CIFAR-10 cell (94.37 %)
  nasforge bench --space nb201 --arch 1835              # the all-skip cell DARTS collapses to (54.30 %)
  nasforge bench --json --arch \\
      '|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|'
  nasforge bench --space nb201 --arch runs/x/genotype.json --json
  nasforge bench --space nb201 --arch 0 --table ~/nb201_table.csv   # your own copy (or $NASFORGE_NB201)
"""
EXAMPLES_PROXIES = """examples:
  nasforge proxies --space nb201 --proxy mgm --n 100 --dataset cifar10 --seed 0
  nasforge proxies --space nb201 --proxy mgm,mgm_official,params,grad_norm,snip,synflow,naswot --n 1000 \\
      --dataset cifar10 --seed 0 --workers 2 --json
  nasforge proxies --proxy mgm --n 1000 --executor ray --workers 16                # a local Ray, 16 tasks at once
  nasforge proxies --proxy mgm --n 15625 --executor ray --ray-address auto --workers 64   # a running cluster
  nasforge proxies --proxy all --archs my_archs.txt --dataset digits     # one NB201 string, index or genotype per line
  nasforge proxies --proxy mgm --option mgm.bn_mode=eval --option mgm.drop_diagonal=true --n 50
"""
_SHOWN_COLUMNS = ("c10_oritest_200", "c100_xtest_200", "in16_xtest_200", "c10valid_xvalid_12")


def add_parsers(sub: Any) -> None:
    """Add the ``bench`` and ``proxies`` subcommands to the CLI's subparsers."""
    p = sub.add_parser("bench", help="look up an architecture in the NAS-Bench-201 table", epilog=EXAMPLES_BENCH,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Print everything the NAS-Bench-201 table knows about an architecture: 200-epoch "
                                   "CIFAR-10 valid/test, CIFAR-100 and ImageNet16-120 test, the 12-epoch columns, "
                                   "parameters.")
    p.add_argument("--space", default="nb201", choices=["nb201"], help="benchmark space (default: nb201)")
    p.add_argument("--arch", action="append", required=True, help="an NB201 string, an index 0..15624 or a genotype "
                                                                   "file/run folder; repeat for several")
    _table_args(p)
    p.add_argument("--json", action="store_true", help="print JSON (an object, or a list for several --arch)")

    p = sub.add_parser("proxies", help="score architectures with training-free proxies; rank correlations with "
                                       "the benchmark", epilog=EXAMPLES_PROXIES,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Score N sampled architectures (or those in --archs) with proxies at "
                                   "initialisation, write a CSV of scores and, where the NB201 table knows the "
                                   "architectures, print Kendall tau and Spearman rho against each accuracy column.")
    p.add_argument("--space", default="nb201", choices=["nb201", "darts"], help="space to sample from (default: "
                                                                                 "nb201)")
    p.add_argument("--proxy", default="mgm", help="comma-separated proxies, or 'all' (mgm, mgm_official, params, "
                                                  "grad_norm, snip, synflow, naswot)")
    p.add_argument("--n", type=int, default=100, help="architectures to sample (default: 100; ignored with --archs)")
    p.add_argument("--archs", help="file with one architecture per line (NB201 string or index, Genotype(...) text, "
                                   "one-line JSON, published name); '#' starts a comment")
    p.add_argument("--dataset", default="cifar10", help="data the scoring batch comes from (default: cifar10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample, the scoring batch and the "
                                                       "initialisation (default: 0)")
    p.add_argument("--samples", type=int, default=64, help="images in the scoring batch (default: 64; MGM uses 50 "
                                                           "of them, see its n_samples option)")
    p.add_argument("--augment", action="store_true", help="augment the scoring batch (crop/flip), as the KNAS code")
    p.add_argument("--option", action="append", default=[], metavar="PROXY.KEY=VALUE",
                   help="a proxy option, e.g. mgm.bn_mode=eval, mgm.params=first_k, naswot.n_samples=32")
    p.add_argument("--channels", type=int, help="scoring network width C (default: 16)")
    p.add_argument("--cells", type=int, help="scoring network depth: N cells per stage for NB201 (default 5), cells "
                                             "for DARTS (default 8)")
    p.add_argument("--workers", type=int, default=1, help="candidates scored in parallel: local processes or Ray "
                                                           "tasks in flight (default: 1)")
    p.add_argument("--executor", default="local", choices=EXECUTOR_KINDS,
                   help="where candidates run: local processes, or Ray tasks (pip install 'nasforge[ray]'; "
                        "default: local)")
    p.add_argument("--ray-address", help="Ray cluster to join, e.g. auto or HOST:6379 (default: start a local Ray)")
    p.add_argument("--threads", type=int, help="torch threads per worker (default: cores / workers locally, a "
                                               "task's CPUs on Ray)")
    p.add_argument("--cache", help="score cache folder, or 'off' (default: $NASFORGE_CACHE, else "
                                   "~/.cache/nasforge/scores)")
    p.add_argument("--out", help="CSV of scores (default: runs/proxies-<space>-<dataset>-n<N>-seed<S>.csv)")
    _table_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object (correlations, timings, CSV path)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _table_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--table", help="NB201 table file (default: $NASFORGE_NB201, else "
                                   "<data root>/nas-bench-201/nb201_table.csv)")
    p.add_argument("--data-dir", help="data root (default: $NASFORGE_DATA, else ~/.cache/nasforge/data)")


# -- bench -----------------------------------------------------------------------------------------------------
def _arch_of(spec: str) -> Any:
    """An NB201 string or index as is; anything else is loaded as a genotype (file, run folder, JSON)."""

    text = spec.strip()
    return text if text.isdigit() or text.startswith("|") else load_genotype(text)


def _bench(args: argparse.Namespace) -> int:
    table = load_nb201(args.table, data_dir=args.data_dir)
    results = [table.query(_arch_of(a)) for a in args.arch]
    if args.json:
        dicts = [r.as_dict() for r in results]
        print(json.dumps(dicts[0] if len(dicts) == 1 else dicts))
        return 0
    for r in results:
        v = r.values
        print(f"NB201 #{r.index} {r.arch}")
        print(f"  parameters: {v['params_mb']:.3f} M (CIFAR-10 network)")
        print(f"  200 epochs: CIFAR-10 test {v['c10_oritest_200']:.2f} %  |  CIFAR-10 train/valid split: valid "
              f"{v['c10valid_xvalid_200']:.2f} %, test {v['c10valid_oritest_200']:.2f} %  |  CIFAR-100 test "
              f"{v['c100_xtest_200']:.2f} %  |  ImageNet16-120 test {v['in16_xtest_200']:.2f} %")
        print(f"   12 epochs: CIFAR-10 valid {v['c10valid_xvalid_12']:.2f} %, test {v['c10_oritest_12']:.2f} %  |  "
              f"CIFAR-100 valid {v['c100_xvalid_12']:.2f} %, test {v['c100_xtest_12']:.2f} %  |  ImageNet16-120 "
              f"valid {v['in16_xvalid_12']:.2f} %, test {v['in16_xtest_12']:.2f} %")
        naswot = v["naswot_score_v1"]
        print(f"  published NASWOT score: {'n/a' if math.isnan(naswot) else f'{naswot:.2f}'}")
    return 0


# -- proxies ---------------------------------------------------------------------------------------------------
def _proxy_names(spec: str) -> list[str]:
    names = PROXIES.names() if spec.strip() == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise ConfigError("--proxy needs at least one proxy name, e.g. --proxy mgm,params")
    for n in names:
        PROXIES.get(n)
    return names


def _options(items: Sequence[str], proxies: Sequence[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        proxy, dot, name = key.strip().partition(".")
        if not sep or not dot:
            raise ConfigError(f"--option {item!r}: expected PROXY.KEY=VALUE, e.g. mgm.bn_mode=eval")
        if proxy not in proxies:
            raise ConfigError(f"--option {item!r}: proxy {proxy!r} is not among --proxy {','.join(proxies)}")
        out.setdefault(proxy, {})[name] = value.strip()
    return out


def _read_archs(path: str) -> list[Any]:
    try:
        lines = Path(path).expanduser().read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise GenotypeError(f"cannot read --archs file {path}: {exc}") from None
    out = []
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            out.append(NB201Arch.from_index(int(text)).genotype() if text.isdigit() else load_genotype(text))
        except GenotypeError as exc:
            raise GenotypeError(f"{path}, line {number}: {exc}") from None
    if not out:
        raise GenotypeError(f"--archs file {path} lists no architecture")
    return out


def _sample(space: str, n: int, seed: int) -> list[Any]:
    if n < 1:
        raise ConfigError(f"--n must be >= 1, got {n}")
    gen = torch.Generator().manual_seed(seed)
    if space == "nb201":
        return [NB201Arch.from_index(i).genotype() for i in NB201Space().sample_indices(n, gen)]
    return [DartsSpace().sample(gen) for _ in range(n)]


def _proxies(args: argparse.Namespace) -> int:
    names = _proxy_names(args.proxy)
    options = _options(args.option, names)
    check_executor(args.executor, args.ray_address)
    if args.workers < 1 or (args.threads is not None and args.threads < 1):
        raise ConfigError(f"--workers and --threads must be >= 1, got {args.workers} and {args.threads}")
    genotypes = _read_archs(args.archs) if args.archs else _sample(args.space, args.n, args.seed)
    data = load_dataset(args.dataset, args.data_dir, progress=not args.no_progress)
    x, y = proxy_batch(data, args.samples, args.seed, augment=args.augment)
    cache = ScoreCache(None if args.cache == "off" else args.cache or default_cache_dir())
    spec = NetworkSpec(data.num_classes, data.in_channels, args.channels, args.cells)
    with make_executor(args.executor, args.workers, args.threads, args.ray_address) as executor:
        scores = score_many(genotypes, names, x, y, seed=args.seed, net=spec, options=options, cache=cache,
                            executor=executor, progress=not args.no_progress)
    indices = [NB201Arch.from_genotype(g).index if g.space == "nb201" else None for g in genotypes]
    out = Path(args.out or f"runs/proxies-{args.space}-{args.dataset.replace(':', '-').replace('/', '_')}-"
                           f"n{len(genotypes)}-seed{args.seed}.csv")
    _write_csv(out, genotypes, indices, names, scores)

    report: dict[str, Any] = {"csv": str(out), "n": len(genotypes), "dataset": args.dataset, "seed": args.seed,
                              "samples": len(y), "proxies": names, "options": options,
                              "median_seconds": {p: float(np.median([s[p].seconds for s in scores])) for p in names},
                              "cache_hits": {p: sum(s[p].cached for s in scores) for p in names},
                              "executor": args.executor, "workers": args.workers,
                              "failed": [{"arch": str(g), "proxy": p, "error": s[p].error}
                                         for g, s in zip(genotypes, scores) for p in names if s[p].error]}
    known = [i for i, idx in enumerate(indices) if idx is not None]
    if len(known) >= 2:
        try:
            table = load_nb201(args.table, data_dir=args.data_dir)
        except DataError as exc:
            report["correlations_skipped"] = str(exc)
        else:
            rows = np.asarray([indices[i] for i in known])
            report["n_in_table"] = len(known)
            report["correlations"] = {p: {c: {"kendall_tau": kendall_tau(vals, table.values(rows, c)),
                                              "spearman_rho": spearman_rho(vals, table.values(rows, c))}
                                          for c in (*ACCURACY_COLUMNS, "naswot_score_v1")}
                                      for p in names for vals in [np.asarray([scores[i][p].value for i in known])]}
    if args.json:
        print(json.dumps(report, allow_nan=True))
    else:
        _print_report(report)
    return 1 if report["failed"] else 0  # every other score is written; the failures are in the report


def _write_csv(path: Path, genotypes: Sequence[Any], indices: Sequence[int | None], names: Sequence[str],
               scores: Sequence[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["nb201_index", "arch", *names, *(f"{p}_seconds" for p in names)])
    for g, idx, s in zip(genotypes, indices, scores):
        w.writerow(["" if idx is None else idx, str(g), *(repr(s[p].value) for p in names),
                    *(f"{s[p].seconds:.4f}" for p in names)])
    atomic_write_text(path, buf.getvalue())


def _print_report(report: dict[str, Any]) -> None:
    print(f"scored {report['n']} architectures with {', '.join(report['proxies'])} on {report['samples']} "
          f"{report['dataset']} images (seed {report['seed']}); scores in {report['csv']}")
    print("median seconds per architecture: " + ", ".join(f"{p} {t:.3f}" for p, t in report["median_seconds"].items())
          + f" (cache hits: {sum(report['cache_hits'].values())})")
    for f in report["failed"]:
        print(f"FAILED {f['proxy']} of {f['arch']}: {f['error']} (NaN in the CSV; not cached, a rerun tries again)")
    if "correlations" not in report:
        print(report.get("correlations_skipped", "no NB201 architectures with table entries: no correlations"))
        return
    cols = _SHOWN_COLUMNS
    print(f"\nrank correlation with NB201 accuracy over {report['n_in_table']} architectures (Kendall tau / "
          f"Spearman rho; --json for every column):")
    print(f"{'proxy':<14}" + "".join(f"{c:>22}" for c in cols))
    for p, by_col in report["correlations"].items():
        print(f"{p:<14}" + "".join(f"{by_col[c]['kendall_tau']:>12.3f} / {by_col[c]['spearman_rho']:<7.3f}"
                                   for c in cols))


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"bench": _bench, "proxies": _proxies}
