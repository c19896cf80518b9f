"""The ``nasforge`` command line: one module per command group, each only parsing and calling :mod:`nasforge.api`.

``runs`` (search, train), ``info`` (show, presets), ``nb201`` (bench, proxies). Each exports ``add_parsers(sub)``
and ``COMMANDS`` (name -> handler); no command module imports another. A new command group gets a module here.
Every user mistake ends in one line on stderr and a non-zero exit; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from ..allocator import reexec_under_allocator
from ..errors import NasforgeError
from ..interrupts import Interrupted
from . import info, nb201, runs

__all__ = ["main", "run", "build_parser"]

_GROUPS = (runs, info, nb201)
_HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {k: v for g in _GROUPS for k, v in g.COMMANDS.items()}
#: commands that train networks: only these re-execute under a caching allocator (the others would only pay
#: a second interpreter start)
_TRAINING_COMMANDS = {"search", "train", "proxies"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nasforge", description="Neural architecture search: search a cell, retrain it, report it.",
        epilog="Start with 'nasforge search' (a one-minute search on an embedded dataset), then "
               "'nasforge train --genotype <run>/genotype.json'. 'nasforge <command> --help' for more. "
               "search/train/proxies run under tcmalloc, jemalloc or mimalloc where one is installed (less "
               "memory, often faster); NASFORGE_ALLOCATOR=system|tcmalloc|jemalloc|mimalloc|<path> chooses, "
               "'python -m nasforge.allocator' shows which.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors and the final result")
    sub = parser.add_subparsers(dest="command", metavar="command")
    for group in _GROUPS:
        group.add_parsers(sub)
    return parser


def _run(args: argparse.Namespace) -> int:
    handler = _HANDLERS.get(args.command)
    if handler is None:
        build_parser().print_help()
        return 0
    return handler(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s",
                        stream=sys.stderr)
    try:
        return _run(args)
    except NasforgeError as exc:
        if args.debug:
            raise
        print(f"nasforge: error: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(f"nasforge: {exc}", file=sys.stderr)
        return exc.exit_code
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


def run() -> int:
    """The ``nasforge`` program: :func:`main`, for a training command re-executed first under the caching
    allocator ``$NASFORGE_ALLOCATOR`` names (:mod:`nasforge.allocator`). ``main`` itself never re-executes, so
    calling it in-process (tests, notebooks) leaves the caller's process alone."""
    argv = sys.argv[1:]
    args = build_parser().parse_args(argv)  # --help and usage errors end here, before any re-execution
    if args.command in _TRAINING_COMMANDS:
        try:
            reexec_under_allocator()
        except NasforgeError as exc:
            print(f"nasforge: error: {exc}", file=sys.stderr)
            return 2
    return main(argv)


if __name__ == "__main__":
    sys.exit(run())
