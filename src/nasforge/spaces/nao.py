"""The NAO cell space (METHODS.md §5.1): ``nodes`` (B) nodes per cell, each summing two (input, op) choices from
the cell inputs and earlier nodes (repeats allowed, order kept), loose-end output, one normal and one reduction
cell, 3N+2 cells.

Architectures travel as NAO integer sequences (:mod:`nasforge.genotypes.nao_seq`), tuples of ``8B`` ints: normal
cell first. The space samples them uniformly (every id and op independently uniform, as NAO's seed archs),
validates them, converts them to genotypes and builds the evaluation network (the search supernet is
:class:`~nasforge.supernets.nao.NAOSuperNet`, built from a space).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..errors import GenotypeError
from ..genotypes import Genotype
from ..genotypes.nao_seq import NAO_SMALL_OPS, NAO_SPACE, from_nao_seq, nao_op_name, to_nao_seq
from ..models.nao import build_nao_network
from ..ops import OPS

__all__ = ["NAOSpace", "NAOSeq"]

NAOSeq = tuple[int, ...]


@dataclass(frozen=True)
class NAOSpace:
    """The NAO space: ``ops`` (IR names; NAO's ``identity`` is accepted for ``skip_connect``) and ``nodes`` = B."""

    ops: tuple[str, ...] = NAO_SMALL_OPS
    nodes: int = 5
    name: str = NAO_SPACE

    def __post_init__(self) -> None:
        ops = tuple(nao_op_name(o) for o in self.ops)
        object.__setattr__(self, "ops", ops)
        if not ops:
            raise GenotypeError("the NAO space needs at least one op")
        for op in ops:
            OPS.get(op)  # one line listing the known ops
        if len(set(ops)) != len(ops):
            raise GenotypeError(f"the NAO space lists an op twice: {list(ops)}")
        if isinstance(self.nodes, bool) or not isinstance(self.nodes, int) or self.nodes < 1:
            raise GenotypeError(f"the NAO space needs B >= 1 nodes per cell, got {self.nodes!r}")

    @property
    def length(self) -> int:
        """Integers per architecture: 4 per node, two cells."""
        return 8 * self.nodes

    def size(self) -> int:
        """Number of distinct sequences: Π_i ((i+2)·|ops|)² per cell, squared for the pair."""
        per_cell = 1
        for i in range(self.nodes):
            per_cell *= ((i + 2) * len(self.ops)) ** 2
        return per_cell ** 2

    def sample_seq(self, generator: torch.Generator) -> NAOSeq:
        """A uniformly random sequence (each id uniform over the states it may read, each op uniform)."""
        out: list[int] = []
        for _cell in range(2):
            for i in range(self.nodes):
                for _slot in range(2):
                    out.append(int(torch.randint(i + 2, (1,), generator=generator)))
                    out.append(int(torch.randint(len(self.ops), (1,), generator=generator)))
        return tuple(out)

    def sample_pool(self, n: int, generator: torch.Generator, exclude: Sequence[NAOSeq] = ()) -> list[NAOSeq]:
        """``n`` distinct sequences not in ``exclude``, drawn uniformly (rejecting repeats)."""
        if n > self.size() - len(set(exclude)):
            raise GenotypeError(f"cannot draw {n} new architectures: the space holds {self.size()}")
        seen, out = set(exclude), []
        while len(out) < n:
            seq = self.sample_seq(generator)
            if seq not in seen:
                seen.add(seq)
                out.append(seq)
        return out

    def sample(self, generator: torch.Generator) -> Genotype:
        return self.genotype(self.sample_seq(generator))

    def check_seq(self, seq: Sequence[int]) -> NAOSeq:
        """``seq`` as a tuple if it is an architecture of this space, else a one-line GenotypeError."""
        if len(seq) != self.length:
            raise GenotypeError(f"NAO sequence: this space (B={self.nodes}) needs {self.length} integers, got "
                                f"{len(seq)}")
        from_nao_seq(seq, self.ops)  # validates ranges
        return tuple(int(v) for v in seq)

    def genotype(self, seq: Sequence[int]) -> Genotype:
        return from_nao_seq(self.check_seq(seq), self.ops)

    def seq(self, genotype: Genotype) -> NAOSeq:
        return self.check_seq(to_nao_seq(genotype, self.ops))

    def validate(self, genotype: Genotype) -> None:
        """Raise GenotypeError unless ``genotype`` is a NAO architecture of this space."""
        self.seq(genotype)

    def build_network(self, genotype: Genotype, **kwargs: Any) -> torch.nn.Module:
        """The evaluation network (:class:`~nasforge.models.nao.NAONetworkCIFAR`). The supernet of this space is
        :class:`~nasforge.supernets.nao.NAOSuperNet` (supernets build from spaces, not the other way round)."""
        self.validate(genotype)
        return build_nao_network(genotype, **kwargs)
