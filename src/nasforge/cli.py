"""The ``nasforge`` command line. It only parses arguments and calls :mod:`nasforge.api`.

Every user mistake ends in one line on stderr and a non-zero exit; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Sequence

from . import commands_nb201

__all__ = ["main", "build_parser"]

EXAMPLES_SEARCH = """examples:
  nasforge search                                   # tiny DARTS search on the embedded digits (about a minute)
  nasforge search --dataset cifar10 --preset paper  # the paper's CIFAR-10 search (GPU recommended)
  nasforge search --set search.order=second --set search.epochs=10 --out runs/x
  nasforge search --out runs/x --resume             # continue an interrupted run
"""
EXAMPLES_TRAIN = """examples:
  nasforge train --genotype DARTS_V2                       # tiny retraining on digits
  nasforge train --genotype runs/x/genotype.json --dataset cifar10 --preset paper
  nasforge train --genotype "Genotype(normal=[...], ...)" --set train.epochs=20
"""
EXAMPLES_SHOW = """examples:
  nasforge show DARTS_V2                     # cells, params and multiply-adds at 20 cells / C=36 on CIFAR
  nasforge show PDARTS --dataset imagenet    # 14 cells / C=48 at 224x224
  nasforge show runs/x/genotype.json --png cells.png --json
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
                   help="override any config field, e.g. --set search.epochs=3 --set data.batch_size=32")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nasforge", description="Neural architecture search: search a cell, retrain it, report it.",
        epilog="Start with 'nasforge search' (a one-minute search on an embedded dataset), then "
               "'nasforge train --genotype <run>/genotype.json'. 'nasforge <command> --help' for more.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors and the final result")
    sub = parser.add_subparsers(dest="command", metavar="command")

    p = sub.add_parser("search", help="search an architecture", epilog=EXAMPLES_SEARCH,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Search a cell with a NAS method; writes config.yaml, metrics.jsonl, "
                                   "genotype.json, checkpoints/ and report.md into the run folder.")
    p.add_argument("--method", default="darts", help="search method (default: darts); see 'nasforge presets'")
    _common(p, "<method>")

    p = sub.add_parser("train", help="retrain a genotype from scratch and report test accuracy",
                       epilog=EXAMPLES_TRAIN, formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train the evaluation network of a genotype with the DARTS-family recipe "
                                   "(cutout, drop-path, auxiliary head); writes result.json and report.md.")
    p.add_argument("--genotype", required=True, help="a genotype.json file or run folder, a published name "
                                                     "(DARTS_V2, PDARTS, ...) or Genotype(...) text")
    _common(p, "train")

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
    commands_nb201.add_parsers(sub)  # bench, proxies
    return parser


def _run(args: argparse.Namespace) -> int:
    from . import api

    if args.command == "search":
        result = api.search(method=args.method, dataset=args.dataset, preset=args.preset, out=args.out,
                            seed=args.seed, device=args.device, resume=args.resume, overrides=args.overrides,
                            data_dir=args.data_dir, progress=not args.no_progress)
        print(f"genotype: {result.genotype}")
        print(f"run folder: {result.run_dir} (report.md, genotype.json)")
        return 0
    if args.command == "train":
        result = api.train(args.genotype, dataset=args.dataset, preset=args.preset, out=args.out, seed=args.seed,
                           device=args.device, resume=args.resume, overrides=args.overrides,
                           data_dir=args.data_dir, progress=not args.no_progress)
        print(f"test accuracy: {result['test_acc']:.2f}%  params: {result['params']:,}  "
              f"multiply-adds: {result['macs']:,}  wall: {result['wall_s']:.1f} s")
        print(f"run folder: {result['run_dir']} (result.json, report.md)")
        return 0
    if args.command == "show":
        return _show(args)
    if args.command == "presets":
        return _presets(args.name)
    if args.command in commands_nb201.COMMANDS:
        return commands_nb201.run(args)
    build_parser().print_help()
    return 0


def _show(args: argparse.Namespace) -> int:
    from . import api
    from .genotypes import load_genotype

    g = load_genotype(args.genotype)
    network = "imagenet" if args.dataset == "imagenet" else "cifar"
    info = api.describe(g, network=network, layers=args.cells, channels=args.channels,
                        num_classes=100 if args.dataset == "cifar100" else None)
    if args.png:
        from .viz import draw_genotype

        draw_genotype(g, args.png, title=f"{args.genotype} ({g.hash()[:8]})")
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


def _presets(name: str | None) -> int:
    import yaml

    from .config import preset_dict, preset_names
    from .strategies import STRATEGIES

    kinds = [name] if name else [*STRATEGIES.names(), "train"]
    for kind in kinds:
        if kind != "train":
            STRATEGIES.get(kind)
        print(f"{kind}: {', '.join(preset_names(kind))}")
        if name:
            for preset in preset_names(kind):
                print(f"\n[{preset}]\n" + yaml.safe_dump(preset_dict(kind, preset), sort_keys=False).rstrip())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s",
                        stream=sys.stderr)
    from .errors import NasforgeError

    try:
        return _run(args)
    except NasforgeError as exc:
        if args.debug:
            raise
        print(f"nasforge: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nasforge: interrupted; continue with the same command plus --resume (and --out)", file=sys.stderr)
        return 130
    except MemoryError:
        if args.debug:
            raise
        print("nasforge: error: out of memory; lower data.batch_size or the network size", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - last resort: one line, traceback only with --debug
        if args.debug:
            raise
        print(f"nasforge: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback and "
              f"report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
