"""Rank correlations between proxy scores and accuracies, in numpy (no SciPy dependency).

Kendall's τ-b (ties in either variable handled as SciPy's default ``kendalltau`` does) and Spearman's ρ (the
Pearson correlation of average ranks). Pairs where either value is NaN are left out; ±inf values rank as the
extremes they are.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["kendall_tau", "spearman_rho", "rankdata"]

_BLOCK = 512  # rows per block of the pairwise comparison: bounded memory for any n


def _clean(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"rank correlation needs two equally long sequences, got {a.size} and {b.size}")
    keep = ~(np.isnan(a) | np.isnan(b))
    return a[keep], b[keep]


def _sign_of_difference(v: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """sign(v[j] - v[i]) for i in ``rows`` and all j, by comparison (so equal infinities tie instead of NaN)."""
    hi, lo = v[None, :] > v[rows, None], v[None, :] < v[rows, None]
    return hi.astype(np.int8) - lo.astype(np.int8)


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's τ-b; NaN when fewer than two pairs or when either variable is constant."""
    a, b = _clean(a, b)
    n = a.size
    if n < 2:
        return math.nan
    concordant = discordant = ties_a = ties_b = 0
    for start in range(0, n - 1, _BLOCK):  # pairs (i, j) with i in the block and j > i
        rows = np.arange(start, min(start + _BLOCK, n - 1))
        da = _sign_of_difference(a, rows)
        db = _sign_of_difference(b, rows)
        upper = np.arange(n)[None, :] > rows[:, None]
        prod = (da * db)[upper]
        concordant += int((prod > 0).sum())
        discordant += int((prod < 0).sum())
        ties_a += int(((da == 0) & (db != 0))[upper].sum())
        ties_b += int(((db == 0) & (da != 0))[upper].sum())
    denom = math.sqrt((concordant + discordant + ties_a) * (concordant + discordant + ties_b))
    return (concordant - discordant) / denom if denom > 0 else math.nan


def rankdata(a: np.ndarray) -> np.ndarray:
    """Average ranks (1-based), ties sharing the mean of their positions."""
    a = np.asarray(a, dtype=np.float64).ravel()
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    starts = np.r_[0, np.flatnonzero(sorted_a[1:] != sorted_a[:-1]) + 1]
    ends = np.r_[starts[1:], a.size]
    avg = (starts + ends + 1) / 2.0  # mean of 1-based positions start+1 .. end
    ranks = np.empty(a.size, dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def spearman_rho(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's ρ; NaN when fewer than two pairs or when either variable is constant."""
    a, b = _clean(a, b)
    if a.size < 2:
        return math.nan
    ra, rb = rankdata(a) - (a.size + 1) / 2.0, rankdata(b) - (a.size + 1) / 2.0
    denom = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else math.nan
