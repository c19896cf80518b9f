"""The NAS-Bench-201 cell space (Dong & Yang, ICLR 2020; METHODS.md §6.1): 5 ops on 6 fixed edges, 15,625 cells.

Three names for one architecture, all interchangeable through :class:`NB201Arch`:

* the official string ``|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|...|``;
* the official index 0..15624 of the benchmark files;
* the IR :class:`~nasforge.genotypes.Genotype` (one cell, ``space="nb201"``).

The official index is not a formula of the ops: the NB201 authors enumerated the cells (``CellStructure.gen_all``:
node 1's op varies slowest, then node 2's ops, then node 3's, each in the op order of :data:`NB201_OPS`) and then
shuffled that list with Python's ``random.seed(88)``. :func:`official_order` replays exactly that with a private
``random.Random(88)``, and the tests check it against all 15,625 rows of the benchmark table.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterator, Sequence

import torch

from ..errors import GenotypeError
from ..genotypes import Genotype
from ..genotypes.nb201_text import (NB201_EDGES, NB201_OPS, format_nb201_ops, looks_like_nb201_text,
                                    nb201_genotype, nb201_ops_of, parse_nb201_ops)
from ..models.nb201 import NB201Network

__all__ = ["NB201_OPS", "NB201_EDGES", "NB201_SIZE", "NB201Arch", "NB201Space", "official_order"]

NB201_SIZE = len(NB201_OPS) ** len(NB201_EDGES)  # 15,625
_SHUFFLE_SEED = 88  # the NB201 authors' seed for the order of the benchmark (their generate_meta_info)


@lru_cache(maxsize=1)
def _tables() -> tuple[tuple[tuple[str, ...], ...], dict[tuple[str, ...], int]]:
    enumerated = list(itertools.product(NB201_OPS, repeat=len(NB201_EDGES)))  # gen_all order, edge 0 slowest
    random.Random(_SHUFFLE_SEED).shuffle(enumerated)  # a private RNG: the global one is never touched
    order = tuple(enumerated)
    return order, {ops: i for i, ops in enumerate(order)}


def official_order() -> tuple[tuple[str, ...], ...]:
    """The six edge ops of every NB201 cell, listed by official index."""
    return _tables()[0]


@dataclass(frozen=True)
class NB201Arch:
    """One NB201 cell as its six edge ops in string order (edges ``0->1, 0->2, 1->2, 0->3, 1->3, 2->3``)."""

    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", tuple(self.ops))
        format_nb201_ops(self.ops)  # validates

    @classmethod
    def from_string(cls, text: str) -> "NB201Arch":
        return cls(parse_nb201_ops(text))

    @classmethod
    def from_index(cls, index: int) -> "NB201Arch":
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < NB201_SIZE:
            raise GenotypeError(f"NB201 index must be an integer in 0..{NB201_SIZE - 1}, got {index!r}")
        return cls(official_order()[index])

    @classmethod
    def from_genotype(cls, genotype: Genotype) -> "NB201Arch":
        return cls(nb201_ops_of(genotype))

    @classmethod
    def parse(cls, spec: Any) -> "NB201Arch":
        """From an :class:`NB201Arch`, a string, an index (int or decimal text) or an NB201 genotype."""
        if isinstance(spec, NB201Arch):
            return spec
        if isinstance(spec, Genotype):
            return cls.from_genotype(spec)
        if isinstance(spec, int) and not isinstance(spec, bool):
            return cls.from_index(spec)
        if isinstance(spec, str):
            text = spec.strip()
            if text.isdigit():
                return cls.from_index(int(text))
            if looks_like_nb201_text(text):
                return cls.from_string(text)
            shown = text if len(text) <= 60 else text[:57] + "..."
            raise GenotypeError(f"{shown!r} is neither an NB201 string (|op~0|+|op~0|op~1|+|op~0|op~1|op~2|) nor an "
                                f"index 0..{NB201_SIZE - 1}")
        raise GenotypeError(f"cannot read an NB201 architecture from {type(spec).__name__} {spec!r}")

    @property
    def string(self) -> str:
        return format_nb201_ops(self.ops)

    @property
    def index(self) -> int:
        return _tables()[1][self.ops]

    def genotype(self) -> Genotype:
        return nb201_genotype(self.ops)

    def __str__(self) -> str:
        return self.string


@dataclass(frozen=True)
class NB201Space:
    """The NAS-Bench-201 space: what can be sampled, enumerated, validated, built and derived.

    Attributes:
        ops: the candidate ops, in the official order (the supernet's alpha columns).
        edges: the six ``(src, dst)`` edges, in string order (the supernet's alpha rows).
    """

    ops: tuple[str, ...] = NB201_OPS
    edges: tuple[tuple[int, int], ...] = NB201_EDGES
    name: str = "nb201"

    def __post_init__(self) -> None:
        if tuple(self.ops) != NB201_OPS or tuple(self.edges) != NB201_EDGES:
            raise GenotypeError("the NB201 space has fixed ops and edges; use NB201Space() as is")

    def __len__(self) -> int:
        return NB201_SIZE

    def enumerate(self) -> Iterator[NB201Arch]:
        """Every architecture, by official index."""
        return (NB201Arch(ops) for ops in official_order())

    def sample_indices(self, n: int, generator: torch.Generator, replace: bool = False, first: int = 0,
                       last: int = NB201_SIZE - 1) -> list[int]:
        """``n`` official indices drawn uniformly from ``first..last`` (without replacement unless ``replace``)."""
        if not 0 <= first <= last < NB201_SIZE:
            raise GenotypeError(f"NB201 index range {first}..{last} is not within 0..{NB201_SIZE - 1}")
        pool = last - first + 1
        if n < 0 or (not replace and n > pool):
            raise GenotypeError(f"cannot draw {n} distinct architectures from the {pool} of NB201 indices "
                                f"{first}..{last}")
        if replace:
            return (first + torch.randint(pool, (n,), generator=generator)).tolist()
        return (first + torch.randperm(pool, generator=generator)[:n]).tolist()

    def sample(self, generator: torch.Generator) -> Genotype:
        """A uniformly random architecture."""
        return NB201Arch.from_index(self.sample_indices(1, generator, replace=True)[0]).genotype()

    def validate(self, genotype: Genotype) -> None:
        """Raise :class:`GenotypeError` unless ``genotype`` is an NB201 cell."""
        nb201_ops_of(genotype)

    def derive(self, weights: dict[str, torch.Tensor], alive: dict[str, torch.Tensor] | None = None,
               exclude: Sequence[str] = ()) -> Genotype:
        """The strongest op on each edge of the ``normal`` op weights ``[6, 5]``.

        ``none`` may win, as in the NB201 authors' DARTS/GDAS baselines (that is how DARTS reaches its 54.30 %
        all-skip cell there); pass ``exclude=("none",)`` for the DARTS convention. Ops ``alive`` marks as
        removed never win.
        """
        w = weights["normal"].detach().float().cpu().clone()
        if tuple(w.shape) != (len(self.edges), len(self.ops)):
            raise GenotypeError(f"NB201 op weights must be [{len(self.edges)}, {len(self.ops)}], got {tuple(w.shape)}")
        usable = torch.tensor([op not in exclude for op in self.ops]).expand_as(w)
        if alive is not None:
            usable = usable & alive["normal"].detach().cpu().bool()
        w = w.masked_fill(~usable, float("-inf"))
        if bool((w == float("-inf")).all(dim=1).any()):
            raise GenotypeError("NB201 derivation: an edge has no usable op left")
        return NB201Arch(tuple(self.ops[int(i)] for i in w.argmax(dim=1))).genotype()

    def build_network(self, genotype: Genotype, **kwargs: Any) -> torch.nn.Module:
        """The stand-alone network (:class:`~nasforge.models.nb201.NB201Network`) of ``genotype``."""
        return NB201Network(genotype, **kwargs)
