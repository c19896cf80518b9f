"""``nasforge show`` and ``nasforge presets``: look at a genotype or at the shipped settings, write no run."""

from __future__ import annotations

import argparse
import json
from typing import Any, Callable

import yaml

from .. import api, viz
from ..config import DataConfig, LoopConfig, TrainConfig, describe_fields, preset_dict, preset_names
from ..genotypes import load_genotype
from ..strategies import STRATEGIES

__all__ = ["COMMANDS", "add_parsers"]

EXAMPLES_SHOW = """examples:
  nasforge show DARTS_V2                     # cells, params and multiply-adds at 20 cells / C=36 on CIFAR
  nasforge show PDARTS --dataset imagenet    # 14 cells / C=48 at 224x224
  nasforge show runs/x/genotype.json --png cells.png --json
"""


def add_parsers(sub: Any) -> None:
    """Add ``show`` and ``presets`` to the CLI's subparsers."""
    p = sub.add_parser("show", help="print a genotype's cells, parameters and multiply-adds",
                       epilog=EXAMPLES_SHOW, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("genotype", help="a genotype file, run folder, published name or Genotype(...) text")
    p.add_argument("--dataset", default="cifar10", choices=["cifar10", "cifar100", "imagenet"],
                   help="which evaluation network to count (default: cifar10)")
    p.add_argument("--cells", type=int, help="number of cells (default: 20 for CIFAR, 14 for ImageNet)")
    p.add_argument("--channels", type=int, help="initial channels (default: 36 for CIFAR, 48 for ImageNet)")
    p.add_argument("--png", help="draw the cells into this PNG file")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("presets", help="list methods and their presets")
    p.add_argument("name", nargs="?", help="a method (or 'train') whose presets to print in full")


def _show(args: argparse.Namespace) -> int:
    g = load_genotype(args.genotype)
    network = "imagenet" if args.dataset == "imagenet" else "cifar"
    info = api.describe(g, network=network, layers=args.cells, channels=args.channels,
                        num_classes=100 if args.dataset == "cifar100" else None)
    if args.png:
        viz.draw_genotype(g, args.png, title=f"{args.genotype} ({g.hash()[:8]})")
        info["png"] = args.png
    if args.json:
        info["genotype_json"] = g.to_dict()
        print(json.dumps(info))
        return 0
    for cell in g.cells:
        kind = "reduction" if cell.reduction else "normal"
        print(f"{cell.name} ({kind}) cell, output = concat{list(cell.concat)}:")
        for node in cell.nodes:
            ins = ", ".join(f"{e.op}({e.src})" for e in cell.inputs_of(node))
            print(f"  node {node} = {ins}")
    print(f"evaluation network: {network}, {info['layers']} cells, C={info['channels']}, "
          f"{info['num_classes']} classes, {info['image_size']}x{info['image_size']} input")
    print(f"params: {info['params']:,} ({info['params'] / 1e6:.2f} M, without auxiliary head)")
    print(f"multiply-adds: {info['macs']:,} ({info['macs'] / 1e6:.1f} M)")
    if args.png:
        print(f"cells drawn in {args.png}")
    return 0


def _presets(args: argparse.Namespace) -> int:
    name = args.name
    kinds = [name] if name else [*STRATEGIES.names(), "train"]
    for kind in kinds:
        if kind != "train":
            STRATEGIES.get(kind)
        print(f"{kind}: {', '.join(preset_names(kind))}")
        if name:
            for preset in preset_names(kind):
                print(f"\n[{preset}]\n" + yaml.safe_dump(preset_dict(kind, preset), sort_keys=False).rstrip())
            _print_fields(kind)
    return 0


def _print_fields(kind: str) -> None:
    """Every field a ``--set`` may change, with its type, default and valid range."""
    sections: list[tuple[type, str]] = [(DataConfig, "data."), (LoopConfig, "loop.")]
    sections.insert(0, (TrainConfig, "train.") if kind == "train" else (STRATEGIES.get(kind).Config, "search."))
    rows = [("seed", "int", "2", ">= 0"), ("device", "str", "cpu", "cpu, cuda, cuda:N or auto"),
            ("deterministic", "bool", "true", "any")]
    for cls, prefix in sections:
        rows += describe_fields(cls, prefix)
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    print(f"\nfields (override with --set KEY=VALUE):\n{'key':<{widths[0]}}  {'type':<{widths[1]}}  "
          f"{'default':<{widths[2]}}  valid range")
    for key, tp, default, rng in rows:
        print(f"{key:<{widths[0]}}  {tp:<{widths[1]}}  {default:<{widths[2]}}  {rng}")


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"show": _show, "presets": _presets}
