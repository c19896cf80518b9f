"""Figures: every function writes a valid PNG atomically, cell diagrams keep their labels apart."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from nasforge import viz
from nasforge.viz import cells, plots, style
from nasforge.genotypes import CellArch, Edge, Genotype, published

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SRC = Path(__file__).resolve().parents[1] / "src"
E = Edge


def check_png(path: Path, min_w: int = 200, min_h: int = 100) -> np.ndarray:
    """A real, readable, non-blank PNG of a sensible size."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    h, w = img.shape[:2]
    assert w >= min_w and h >= min_h, img.shape
    assert w <= 12000 and h <= 12000, img.shape
    assert (img[..., :3] < 0.8).any(), "image is blank"
    return img


def unshared_genotype() -> Genotype:
    """Three GOLD-NAS-style cells: several ops per (src, dst), nodes with 1 to 5 inputs, a reduction cell."""
    c0 = CellArch(edges=(
        E(0, 2, "sep_conv_3x3"), E(0, 2, "skip_connect"), E(1, 2, "dil_conv_3x3"),
        E(1, 3, "sep_conv_3x3"), E(1, 3, "max_pool_3x3"), E(1, 3, "skip_connect"), E(2, 3, "sep_conv_5x5"),
        E(0, 4, "avg_pool_3x3"), E(2, 4, "sep_conv_3x3"), E(3, 4, "dil_conv_5x5"), E(3, 4, "skip_connect"),
        E(0, 5, "dil_conv_3x3"), E(1, 5, "sep_conv_3x3"), E(2, 5, "skip_connect"), E(3, 5, "sep_conv_5x5"),
        E(4, 5, "max_pool_3x3")), concat=(2, 3, 4, 5), name="cell 0")
    c1 = CellArch(edges=(
        E(0, 2, "max_pool_3x3"), E(1, 2, "sep_conv_3x3"), E(1, 2, "skip_connect"), E(2, 3, "sep_conv_3x3"),
        E(0, 4, "dil_conv_3x3"), E(1, 4, "sep_conv_5x5"), E(3, 5, "skip_connect")),
        concat=(2, 3, 4, 5), reduction=True, name="cell 1")
    c2 = CellArch(edges=(
        E(1, 2, "sep_conv_3x3"), E(0, 3, "skip_connect"), E(1, 3, "sep_conv_3x3"), E(1, 3, "dil_conv_3x3"),
        E(1, 3, "sep_conv_5x5"), E(2, 3, "max_pool_3x3"), E(0, 4, "sep_conv_3x3"), E(1, 4, "sep_conv_3x3"),
        E(2, 4, "avg_pool_3x3"), E(3, 4, "skip_connect"), E(3, 4, "sep_conv_3x3"), E(1, 5, "dil_conv_5x5"),
        E(2, 5, "sep_conv_3x3"), E(4, 5, "skip_connect"), E(4, 5, "sep_conv_5x5")),
        concat=(2, 3, 4, 5), name="cell 2")
    return Genotype(cells=(c0, c1, c2), sharing="none")


# -- draw_genotype ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["DARTS_V2", "NASNet"])
def test_draw_genotype_published(tmp_path: Path, name: str) -> None:
    out = viz.draw_genotype(published(name), tmp_path / f"{name}.png", title=name)
    assert out == tmp_path / f"{name}.png"
    img = check_png(out, min_w=800, min_h=250)
    assert img.shape[1] > img.shape[0]  # two cells side by side


def test_draw_genotype_unshared_grid(tmp_path: Path) -> None:
    out = viz.draw_genotype(unshared_genotype(), str(tmp_path / "sub" / "unshared.png"))  # str path, new dir
    check_png(out, min_w=600, min_h=600)


def test_draw_genotype_overwrites_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "g.png"
    viz.draw_genotype(published("DARTS_V2"), path)
    first = path.read_bytes()
    viz.draw_genotype(published("PDARTS"), path)
    assert path.read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.png"]
    assert path.stat().st_mode & 0o777 == 0o666 & ~style.umask()  # the mode open() would give, not 0600


# -- draw_cell --------------------------------------------------------------------------------------------
def _drawn_cell(cell: CellArch) -> tuple[Figure, object]:
    w, h = cells.panel_size(cells.layout_cell(cell))
    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    viz.draw_cell(ax, cell, "cell")
    fig.canvas.draw()
    return fig, ax


CELLS = [published("DARTS_V2").normal, published("DARTS_V2").reduce, published("NASNet").normal,
         published("NASNet").reduce, published("AmoebaNet").reduce, published("PDARTS").normal,
         *unshared_genotype().cells]


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: f"{c.name}-{len(c.edges)}edges")
def test_draw_cell_labels_do_not_overlap(cell: CellArch) -> None:
    fig, ax = _drawn_cell(cell)
    renderer = fig.canvas.get_renderer()
    labels = [t for t in ax.texts if t.get_bbox_patch() is not None]
    assert sorted(t.get_text() for t in labels) == sorted(e.op for e in cell.edges)  # one label per edge
    label_boxes = [t.get_bbox_patch().get_window_extent(renderer).expanded(0.98, 0.9) for t in labels]
    node_boxes = [p.get_window_extent(renderer) for p in ax.patches if isinstance(p, FancyBboxPatch)]
    for (i, a), (j, b) in itertools.combinations(enumerate(label_boxes), 2):
        assert not a.overlaps(b), f"labels {labels[i].get_text()!r} and {labels[j].get_text()!r} overlap"
    for lab, box in zip(labels, label_boxes):
        for node in node_boxes:
            assert not box.overlaps(node), f"label {lab.get_text()!r} covers a node"
    fig_box = fig.bbox
    for box in label_boxes + node_boxes:  # nothing cut off at the figure edge
        assert box.x0 >= fig_box.x0 - 1 and box.x1 <= fig_box.x1 + 1
        assert box.y0 >= fig_box.y0 - 1 and box.y1 <= fig_box.y1 + 1


def test_draw_cell_one_arc_per_edge_and_parallel_arcs_apart() -> None:
    cell = unshared_genotype().cells[2]
    fig, ax = _drawn_cell(cell)
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    assert len(arrows) == len(cell.edges) + len(cell.concat)
    nodes = [p for p in ax.patches if isinstance(p, FancyBboxPatch)]
    assert len(nodes) == cell.n_inputs + cell.n_nodes + 1
    # The three ops on 1 -> 3 are three different curves whose midpoints are a label height apart.
    lay = cells.layout_cell(cell)
    mids = sorted(r.offset for r in lay.routes if (r.src, r.dst) == (1, 3))
    assert len(mids) == 3
    assert min(b - a for a, b in zip(mids, mids[1:])) >= cells.label_size("Xg")[1]


def test_draw_cell_on_a_foreign_axes_and_one_input_cell() -> None:
    cell = CellArch(edges=(E(0, 1, "sep_conv_3x3"), E(0, 2, "skip_connect"), E(1, 2, "max_pool_3x3"),
                           E(1, 2, "avg_pool_3x3")), concat=(0, 1, 2), n_inputs=1, name="one")
    fig = Figure(figsize=(4, 3))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    viz.draw_cell(ax, cell, "tiny axes")
    fig.canvas.draw()
    assert ax.get_title() == "tiny axes"
    assert any(t.get_text() == r"$c_{k-1}$" for t in ax.texts)
    assert not any(t.get_text() == r"$c_{k-2}$" for t in ax.texts)


def test_op_colors_fixed_and_stable() -> None:
    assert viz.op_color("sep_conv_3x3") == viz.OP_COLORS["sep_conv_3x3"]
    assert len(set(viz.OP_COLORS.values())) == len(viz.OP_COLORS)
    assert viz.op_color("my_new_op") == viz.op_color("my_new_op")


# -- heat map ---------------------------------------------------------------------------------------------
OPS = ["none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
       "dil_conv_5x5"]


def test_heatmap_with_nan(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    normal = rng.dirichlet(np.ones(len(OPS)), size=14)
    reduce = rng.dirichlet(np.ones(len(OPS)), size=14)
    reduce[:, [0, 2]] = np.nan  # P-DARTS dropped these ops
    reduce[3, 5] = np.nan
    out = viz.draw_weights_heatmap({"normal": normal, "reduce": reduce}, OPS, tmp_path / "w.png", title="alphas")
    img = check_png(out, min_w=600, min_h=300)
    assert img.shape[1] > img.shape[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.png"]


def test_heatmap_labels_and_errors(tmp_path: Path) -> None:
    assert plots.default_edge_labels(14)[:3] == ["0→2", "1→2", "0→3"]
    assert plots.default_edge_labels(14)[-1] == "4→5"
    assert plots.default_edge_labels(4) == ["edge 0", "edge 1", "edge 2", "edge 3"]
    w = np.full((3, 2), np.nan)  # all NaN still draws
    viz.draw_weights_heatmap({"cell 0": w}, ["a", "b"], tmp_path / "nan.png",
                             edge_labels={"cell 0": ["x", "y", "z"]})
    check_png(tmp_path / "nan.png", min_w=150, min_h=150)
    with pytest.raises(ValueError, match="shape"):
        viz.draw_weights_heatmap({"normal": np.zeros((14, 7))}, OPS, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="labels"):
        viz.draw_weights_heatmap({"normal": np.zeros((2, 8))}, OPS, tmp_path / "bad.png",
                                 edge_labels={"normal": ["only one"]})
    assert not (tmp_path / "bad.png").exists()


# -- curves and Pareto -------------------------------------------------------------------------------------
def test_plot_curves_skips_incomplete_rows(tmp_path: Path) -> None:
    rows = [{"epoch": e, "train_acc": 50 + e, "val_acc": 45 + e} for e in range(10)]
    rows += [{"event": "done"}, {"epoch": 10, "train_acc": 61.0}, {"epoch": 11, "val_acc": None},
             {"epoch": "x", "val_acc": 3.0}]
    out = viz.plot_curves(rows, "epoch", ["train_acc", "val_acc", "never_logged"], tmp_path / "c.png", title="t")
    check_png(out)
    viz.plot_curves([], "epoch", ["val_acc"], tmp_path / "empty.png")  # nothing logged yet: still a figure
    check_png(tmp_path / "empty.png", min_w=100)


def test_plot_pareto_by_id_and_by_index(tmp_path: Path) -> None:
    pts = [{"id": f"a{i}", "params": p, "acc": a}
           for i, (p, a) in enumerate([(1.0, 90.0), (2.0, 93.0), (3.0, 92.0), (4.0, 95.0), (2.5, 91.0)])]
    pts.append({"id": "broken", "params": 1.0})  # lacks acc: skipped
    check_png(viz.plot_pareto(pts, "params", "acc", ["a0", "a1", "a3"], tmp_path / "p.png"))
    no_ids = [{k: v for k, v in p.items() if k != "id"} for p in pts]
    check_png(viz.plot_pareto(no_ids, "params", "acc", [0, 1, 3], tmp_path / "q.png"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png", "q.png"]


# -- import cost ------------------------------------------------------------------------------------------
def test_import_does_not_load_matplotlib() -> None:
    code = "import sys, nasforge.viz; assert 'matplotlib' not in sys.modules, 'matplotlib imported eagerly'"
    env = dict(os.environ, PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
