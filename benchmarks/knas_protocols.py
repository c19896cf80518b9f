"""KNAS on NAS-Bench-201 under both sampling protocols (issue #10): one run per (proxy, protocol), 9 repeats each.

Protocols: ``paper`` (300 distinct cells of all 15,625 per repeat) and ``official`` (300 drawn with replacement from
indices 0..5000, as the KNAS code's README scores them). Proxies: paper-mode MGM, the official code's statistic,
#params, NASWOT, and random search with the same 40-cell 12-epoch selection. Every run is an ordinary
``nasforge search`` into ``--root``/<name>; finished runs are skipped, so the script can be stopped and rerun.
Scores are cached in ``--root``/cache across runs. Prints one JSON object (and a markdown table with --markdown).

    python benchmarks/knas_protocols.py --root runs/knas-protocols --workers 2 --markdown

Cost on 2 CPU cores: MGM, the official statistic and NASWOT need ~0.4 s per cell, ~2,700 cells per run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

OFFICIAL = ["--set", "search.replace=true", "--set", "search.index_range=[0,5000]"]
RUNS = {  # name -> (row, protocol, nasforge search arguments)
    "random-paper": ("random (40, 12-epoch valid)", "paper", ["--method", "random", "--preset", "paper"]),
    "random-official": ("random (40, 12-epoch valid)", "official", ["--method", "random", "--preset", "paper",
                                                                   *OFFICIAL]),
    "params-paper": ("#params", "paper", ["--method", "knas", "--preset", "paper", "--set", "search.proxy=params"]),
    "params-official": ("#params", "official", ["--method", "knas", "--preset", "paper-official", "--set",
                                                "search.proxy=params"]),
    "mgm-paper": ("MGM (paper)", "paper", ["--method", "knas", "--preset", "paper"]),
    "mgm-official-sampling": ("MGM (paper)", "official", ["--method", "knas", "--preset", "paper-official",
                                                          "--set", "search.proxy=mgm"]),
    "official-paper": ("official statistic", "paper", ["--method", "knas", "--preset", "paper-official-statistic"]),
    "official-official": ("official statistic", "official", ["--method", "knas", "--preset", "paper-official"]),
    "naswot-paper": ("NASWOT", "paper", ["--method", "knas", "--preset", "paper", "--set", "search.proxy=naswot"]),
    "naswot-official": ("NASWOT", "official", ["--method", "knas", "--preset", "paper-official", "--set",
                                               "search.proxy=naswot"]),
}
COLUMNS = ("cifar10_test", "cifar100_test", "imagenet16_test")


def run(root: Path, name: str, args: list[str], workers: int) -> dict | None:
    out = root / name
    if (out / "result.json").is_file():
        return json.loads((out / "result.json").read_text())
    resume = ["--resume"] if (out / "checkpoints" / "last.pt").is_file() else []
    par = ["--set", f"search.workers={workers}", "--set", "search.threads=1"] if workers > 1 and "knas" in args else []
    env = {**os.environ, "NASFORGE_CACHE": str(root / "cache")}
    res = subprocess.run([sys.executable, "-m", "nasforge", "-q", "search", *args, *par, "--seed", "0",
                          "--no-progress", "--out", str(out), *resume], env=env, capture_output=True, text=True)
    if res.returncode != 0:
        print(f"{name}: failed: {res.stderr.strip()}", file=sys.stderr)
        return None
    return json.loads((out / "result.json").read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="runs/knas-protocols", help="folder of the runs and the score cache")
    p.add_argument("--only", help="comma-separated run names (default: all, cheapest first)")
    p.add_argument("--workers", type=int, default=1, help="scoring processes per KNAS run (default: 1)")
    p.add_argument("--markdown", action="store_true", help="also print a markdown table")
    args = p.parse_args()
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    names = args.only.split(",") if args.only else list(RUNS)
    table: dict[str, dict] = {}
    for name in names:
        row, protocol, cli = RUNS[name]
        result = run(root, name, cli, args.workers)
        if result is not None:
            table.setdefault(row, {})[protocol] = {c: [round(result[f"{c}_mean"], 2), round(result[f"{c}_std"], 2)]
                                                   for c in COLUMNS} | {"repeats": result["repeats"]}
    print(json.dumps({"mean_std_over_repeats": table, "selection": "c10valid_xvalid_12"}))
    if args.markdown:
        print("\n| method | protocol | CIFAR-10 | CIFAR-100 | ImageNet16-120 |\n|---|---|---|---|---|")
        for row, by_protocol in table.items():
            for protocol, cols in by_protocol.items():
                print(f"| {row} | {protocol} | " + " | ".join(f"{cols[c][0]:.2f} ± {cols[c][1]:.2f}" for c in COLUMNS)
                      + " |")


if __name__ == "__main__":
    main()
