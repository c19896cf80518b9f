"""The look every nasforge figure shares, and the one way figures are created and written.

Kept apart from the drawing code so that a cell diagram, a heat map and a Pareto plot of one report agree:
an op has one colour everywhere (:func:`op_color`), the fonts and box sizes of the cell diagrams are defined
once, and every figure is made by :func:`new_figure` and written by :func:`save_figure`.

``new_figure`` binds a ``matplotlib.figure.Figure`` to an explicit ``FigureCanvasAgg`` instead of using
``pyplot``, so drawing works headless (servers, CI, worker threads), never opens a window and never leaks
figures into pyplot's global registry. ``save_figure`` writes atomically (temporary file in the same folder,
then ``os.replace``), so a crash or a concurrent reader never sees half a PNG, and then gives the file the
permissions a plain ``open()`` would have under the process umask.

Everything here is a constant or a pure function; matplotlib is imported inside the functions so that
``import nasforge`` stays fast for commands that never draw.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping

from .._io import atomic_write_bytes

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.figure import Figure

__all__ = ["DPI", "OP_COLORS", "op_color", "new_figure", "save_figure", "umask"]

#: Resolution of every figure; one inch of a cell layout is ``DPI`` pixels in the PNG.
DPI = 120

#: Fixed colour per op name, so one op looks the same in every figure of a report. Read-only: a colour
#: changed at run time would make two figures of one report disagree.
OP_COLORS: Mapping[str, str] = MappingProxyType({
    "sep_conv_3x3": "#1f77b4",
    "sep_conv_5x5": "#17a2b8",
    "sep_conv_7x7": "#0b4f8a",
    "dil_conv_3x3": "#7b4fb8",
    "dil_conv_5x5": "#c2489a",
    "max_pool_3x3": "#d62728",
    "max_pool_5x5": "#a31a1b",
    "max_pool_7x7": "#7a1213",
    "avg_pool_3x3": "#e07b00",
    "avg_pool_5x5": "#a86200",
    "skip_connect": "#2a9d2a",
    "conv_7x1_1x7": "#8c564b",
    "conv_1x1": "#5b6b00",
    "conv_3x3": "#3d5a80",
    "none": "#8c8c8c",
})
# Ops registered later (register_op_name) get a stable colour from this list, chosen by a hash of the name.
FALLBACK_COLORS = ("#6a3d9a", "#b15928", "#1b7837", "#c51b7d", "#01665e", "#8e0152", "#4d4d4d", "#2166ac")

# Cell diagrams, in the colours of the DARTS paper figures (graphviz colour names).
INPUT_FILL = "#b4eeb4"    # "darkseagreen2"
NODE_FILL = "#add8e6"     # "lightblue"
OUTPUT_FILL = "#eee8aa"   # "palegoldenrod"
CONCAT_COLOR = "#8f8f8f"

# Cell-layout sizes, in inches (draw_genotype sizes its figures so that one layout unit is one inch).
BOX_W = 0.66
BOX_H = 0.40
PORT_STEP = 0.075       # vertical distance between the ends of arrows meeting one box
NODE_GAP = 0.42         # vertical gap between two boxes of one layer
INPUT_GAP = 0.75        # vertical gap between the cell inputs
DUMMY_GAP = 0.2         # vertical gap next to a waypoint of an edge that skips a layer
FAN_GAP = 0.12          # vertical gap between the parallel arcs of several ops on one (src, dst)
LABEL_FONTSIZE = 7.0
LABEL_PAD = 0.25        # label bbox padding, in units of the font size
NODE_FONTSIZE = 11.0
MARGIN = 0.22           # empty border around a drawn cell

# Pareto plots.
FRONT_COLOR = "#d62728"
CANDIDATE_COLOR = "#9aa5b1"
LEADER_COLOR = "#7f7f7f"
POINT_LABEL_FONTSIZE = 7.0


def op_color(op: str) -> str:
    """The colour of ``op`` in every figure: fixed for known ops, hash-stable for others.

    A hash of the name (not Python's randomised ``hash``) keeps a custom op's colour the same across runs,
    so figures from different runs can be compared side by side.
    """
    if op in OP_COLORS:
        return OP_COLORS[op]
    digest = int(hashlib.sha256(op.encode()).hexdigest(), 16)
    return FALLBACK_COLORS[digest % len(FALLBACK_COLORS)]


def new_figure(figsize: tuple[float, float], **kwargs: Any) -> "Figure":
    """A figure bound to an Agg canvas, outside pyplot's registry (thread-safe use, no windows, no leaks)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=DPI, **kwargs)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: "Figure", path: str | Path, **kwargs: Any) -> Path:
    """Render ``fig`` and write it atomically; the format follows the suffix (PNG when unknown or absent)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in fig.canvas.get_supported_filetypes():
        fmt = "png"
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=DPI, facecolor="white", **kwargs)
    atomic_write_bytes(path, buf.getvalue())
    # The temporary file is created private (0600); give the figure the mode a plain open() would have, so
    # a report folder stays readable by the group / a web server as the user's umask intends.
    os.chmod(path, 0o666 & ~umask())
    return path


def umask() -> int:
    """The process umask, read without changing it (``os.umask`` to query is racy across threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022

