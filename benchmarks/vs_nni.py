"""nasforge's DARTS search step side by side with NNI 3.0's, alternating, in one run; print one JSON object.

    python benchmarks/vs_nni.py                                   # 8/5/32 and 16/8/64, 3 rounds, both steps 6
    python benchmarks/vs_nni.py --sizes 8/5/32 --rounds 3 --nni-python ../venv-nni/bin/python

Each round runs ``benchmarks/search_step.py --method darts`` (nasforge, default settings unless ``--set``) and
``../shared/bench/nni_darts_step.py`` (NNI, first order, its own DARTS space) one after the other, each in a fresh
process with torch's default threads, for every size (width/cells/batch). Reported per size: the median over
rounds of each side's median seconds per iteration and peak resident memory, and the ratios nasforge / NNI
(the issue-13 targets: time <= 0.5x, memory <= 0.35x). nasforge runs under the allocator its command would use
(``nasforge.allocator``: tcmalloc, jemalloc or mimalloc where installed); ``--nni-allocator same`` runs NNI under
the same one, so that the ratio shows what nasforge's code does apart from the allocator. How to install NNI
beside nasforge: ``../shared/bench/README.md``. Run it on an otherwise idle machine: two torch processes on the
same cores slow each other many-fold.
"""

from __future__ import annotations

import argparse
import json
import statistics
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def _json_line(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode != 0 or not lines:
        raise SystemExit(f"{' '.join(cmd[:3])} ... failed: {res.stderr.strip()[-600:]}")
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="8/5/32,16/8/64", help="width/cells/batch, comma-separated")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=6, help="timed iterations per process (both sides)")
    ap.add_argument("--nni-python", default=str(ROOT.parent / "venv-nni" / "bin" / "python"))
    ap.add_argument("--nni-script", default=str(ROOT.parent / "shared" / "bench" / "nni_darts_step.py"))
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="nasforge search.* options, e.g. --set search.recompute=none")
    ap.add_argument("--nni-allocator", choices=["system", "same"], default="system",
                    help="NNI under the system allocator (as users run it; default) or under nasforge's")
    args = ap.parse_args()
    from nasforge.allocator import find

    chosen = find()
    nni_env = None
    if args.nni_allocator == "same" and chosen is not None:
        nni_env = chosen.environment(os.environ)
    if not Path(args.nni_python).is_file():
        raise SystemExit(f"no NNI Python at {args.nni_python}; install it as ../shared/bench/README.md says")
    out: dict[str, Any] = {"benchmark": "vs_nni", "rounds": args.rounds, "steps": args.steps,
                           "overrides": args.overrides, "nasforge_allocator": chosen.path if chosen else "system",
                           "nni_allocator": nni_env["LD_PRELOAD"] if nni_env else "system", "sizes": []}
    for size in args.sizes.split(","):
        width, cells, batch = size.split("/")
        ours, peer = [], []
        for _ in range(args.rounds):
            ours.append(_json_line([sys.executable, "benchmarks/search_step.py", "--method", "darts", "--width", width,
                                    "--cells", cells, "--batch", batch, "--steps", str(args.steps),
                                    *sum((["--set", o] for o in args.overrides), [])]))
            peer.append(_json_line([args.nni_python, args.nni_script, width, cells, batch, str(args.steps)], nni_env))
        t_ours = statistics.median(r["s_per_iter"] for r in ours)
        t_peer = statistics.median(r["s_per_iter"] for r in peer)
        m_ours = statistics.median(r["peak_rss_mib"] for r in ours)
        m_peer = statistics.median(r["peak_rss_mib"] for r in peer)
        out["sizes"].append({
            "width": int(width), "cells": int(cells), "batch": int(batch),
            "nasforge_s_per_iter": round(t_ours, 3), "nni_s_per_iter": round(t_peer, 3),
            "time_ratio": round(t_ours / t_peer, 3),
            "nasforge_peak_rss_mib": round(m_ours, 1), "nni_peak_rss_mib": round(m_peer, 1),
            "memory_ratio": round(m_ours / m_peer, 3),
            "nasforge_rounds": [r["s_per_iter"] for r in ours],
            "nni_rounds": [round(r["s_per_iter"], 3) for r in peer]})
        print(json.dumps(out["sizes"][-1]), file=sys.stderr)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
