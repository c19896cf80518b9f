"""NAO-V2's sections of ``report.md``: per-iteration table, the pool's accuracy distribution per iteration, the
controller's predictor and decoder quality, Kendall τ against NAS-Bench-201 (V2 and V1-style side by side when
``compare`` is on), the re-ranking and the finalists' cells. Figures come from :mod:`nasforge.viz`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["nao_report_sections", "histogram_rows"]

_BINS = 20


def histogram_rows(per_iteration: Sequence[Sequence[float]], bins: int = _BINS) -> list[dict[str, float]]:
    """Rows ``{"accuracy": bin centre, "iteration k": share of the pool in that bin}`` over common bins, so
    :func:`nasforge.viz.plot_curves` draws one frequency polygon per iteration."""
    values = [v for vs in per_iteration for v in vs]
    if not values:
        return []
    lo, hi = float(min(values)), float(max(values))
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    rows = [{"accuracy": float((edges[b] + edges[b + 1]) / 2)} for b in range(bins)]
    for k, vs in enumerate(per_iteration):
        counts, _ = np.histogram(np.asarray(vs, dtype=np.float64), bins=edges)
        for b in range(bins):
            rows[b][f"iteration {k + 1}"] = float(counts[b]) / max(len(vs), 1)
    return rows


def _f(v: Any, digits: int = 3) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def nao_report_sections(strategy: Any, run_dir: Any) -> list[str]:
    """Markdown (and figures written into ``run_dir``) for a NAO-V2 run."""
    from .. import viz

    res = strategy.results()
    if not res:
        return []
    run_dir = Path(run_dir)
    recs = res["iterations"]
    flags = recs[-1]["flags"]
    label = {k: ("V2" if f["balanced"] and f["independent"] else
                 "V1-style" if not f["balanced"] and not f["independent"] else
                 f"balanced={f['balanced']}, independent={f['independent']}") for k, f in flags.items()}
    lines = [f"## NAO-V2 ({label['main']}) on the {res['space']} space\n",
             f"{len(recs)} iterations; {recs[-1]['n_evaluated']} architectures evaluated in all.\n",
             "| iteration | pool | evaluated | best acc | mean acc | Kendall τ | τ " + label.get("compare", "—")
             + " | predictor pairwise acc | decoder token acc | decoder val Hamming | generated | step size |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in recs:
        lines.append(f"| {r['iteration']} | {r['n_pool']} | {r['n_evaluated']} | {_f(r['best_acc'], 2)} | "
                     f"{_f(r['mean_acc'], 2)} | {_f(r.get('kendall_tau'))} | {_f(r.get('kendall_tau_compare'))} | "
                     f"{_f(r.get('predictor_pairwise_acc'))} | {_f(r.get('decoder_token_acc'))} | "
                     f"{_f(r.get('decoder_val_hamming'), 2)} | {r.get('n_generated', '')} | "
                     f"{r.get('max_step_used', '')} |")
    lines.append("")
    if "kendall_tau" in recs[-1]:
        lines.append("Kendall τ: supernet accuracies of every evaluated architecture against the NB201 table's "
                     "200-epoch test accuracy"
                     + (f"; the {label['compare']} supernet trained on the same pools and batches." if "compare"
                        in label else ".") + "\n")
        ys = ["kendall_tau"] + (["kendall_tau_compare"] if "compare" in label else [])
        viz.plot_curves(recs, "iteration", ys, run_dir / "nao_kendall_tau.png",
                        title=f"Kendall tau vs NB201 ({' vs '.join(label[k] for k in label)})")
        lines.append("![Kendall tau per iteration](nao_kendall_tau.png)\n")
    viz.plot_curves(histogram_rows([r["pool_acc"] for r in recs]), "accuracy",
                    [f"iteration {r['iteration']}" for r in recs], run_dir / "nao_pool_accuracy.png",
                    title="share of the evaluated pool per supernet-accuracy bin")
    lines.append("![pool accuracy distribution per iteration](nao_pool_accuracy.png)\n")
    if any("predictor_pairwise_acc" in r for r in recs):
        viz.plot_curves(recs, "iteration", ["predictor_pairwise_acc", "decoder_token_acc"],
                        run_dir / "nao_controller.png", title="controller: held-out ranking, reconstruction")
        lines.append("![controller quality per iteration](nao_controller.png)\n")
    if res["finalists"]:
        lines += [f"### Final re-ranking ({res['rerank']})\n", "| finalist | value | chosen | cell drawing |",
                  "|---|---|---|---|"]
        for i, seq in enumerate(res["finalists"]):
            g = strategy.genotype(tuple(seq))
            name = f"nao_finalist{i + 1}.png"
            viz.draw_genotype(g, run_dir / name, title=f"finalist {i + 1} ({g.hash()[:8]})")
            value = res["rerank_acc"][i] if i < len(res["rerank_acc"]) else None
            lines.append(f"| {i + 1} | {_f(value, 2)} | {'**yes**' if res['chosen'] == seq else ''} | "
                         f"![finalist {i + 1}]({name}) |")
        lines.append("")
    if "benchmark" in res:
        b = res["benchmark"]
        lines.append(f"Chosen cell: NB201 #{res['nb201_index']}, test accuracy CIFAR-10 {b['cifar10_test']:.2f}%, "
                     f"CIFAR-100 {b['cifar100_test']:.2f}%, ImageNet16-120 {b['imagenet16_test']:.2f}%.\n")
    return ["\n".join(lines) + "\n"]
