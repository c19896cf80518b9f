"""Figures for reports: cell diagrams, architecture-weight heat maps, training curves and Pareto fronts.

A package because the cell diagram is a small graph-drawing engine of its own (layering, ordering, routing,
label placement), which does not belong next to ordinary plots:

- :mod:`nasforge.viz.cells` - layout and drawing of a cell, :func:`draw_genotype`;
- :mod:`nasforge.viz.plots` - heat maps, curves, Pareto fronts;
- :mod:`nasforge.viz.style` - what every figure shares: op colours, fonts, sizes, creating a headless figure
  and writing it atomically with the permissions the umask intends.

The public names are re-exported here, so ``from nasforge import viz; viz.draw_genotype(...)`` keeps working.
Nothing here imports matplotlib or numpy at import time, so ``import nasforge`` stays fast for commands that
never draw.
"""

from __future__ import annotations

from .cells import draw_cell, draw_genotype
from .plots import draw_weights_heatmap, plot_curves, plot_pareto
from .style import OP_COLORS, op_color

__all__ = ["OP_COLORS", "op_color", "draw_cell", "draw_genotype", "draw_weights_heatmap", "plot_curves",
           "plot_pareto"]
