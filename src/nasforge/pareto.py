"""Pareto fronts: the non-dominated points when one quantity should be low (cost) and another high (accuracy)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

__all__ = ["pareto_front"]


def pareto_front(points: Sequence[Mapping[str, Any]], cost: str, value: str) -> list[int]:
    """Indices of the points no other point dominates. A point dominates another when its ``cost`` is lower
    or equal and its ``value`` higher or equal, one of them strictly. Points missing either key are skipped;
    of exact duplicates the first is kept. Returned in order of increasing cost."""
    usable = [(i, float(p[cost]), float(p[value])) for i, p in enumerate(points)
              if p.get(cost) is not None and p.get(value) is not None]
    usable.sort(key=lambda t: (t[1], -t[2], t[0]))  # cheapest first; at equal cost the best value first
    front, best = [], float("-inf")
    for i, _, v in usable:
        if v > best:
            front.append(i)
            best = v
    return front
