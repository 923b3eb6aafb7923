"""PNG plots: ROC curves of several methods on one case, faithfulness curves. matplotlib (Agg) is
imported lazily; files are written atomically (temporary file in the same folder, then rename)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from core.results import atomic_write


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    finally:
        _plt().close(fig)


def _field(obj: Any, key: str):
    return obj[key] if isinstance(obj, Mapping) else getattr(obj, key)


def _optional(obj: Any, key: str):
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


def fmt(x) -> str:
    """A number with three decimals; ``nan`` for None, NaN or an infinity."""
    return "nan" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.3f}"


# one style per curve (colour, line style and marker all change), so that curves lying on top of each other
# stay visible: later curves of a tie are drawn thinner, with smaller markers, over the earlier ones
LINE_STYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "v", "D", "x", "+", "*", "P", "h")


def _style(i: int, tie_rank: int) -> dict[str, Any]:
    return {"color": f"C{i % 10}", "ls": LINE_STYLES[i % len(LINE_STYLES)], "marker": MARKERS[i % len(MARKERS)],
            "lw": max(0.8, 2.4 - 0.5 * tie_rank), "ms": max(2.5, 6.0 - 1.0 * tie_rank), "zorder": 2 + tie_rank}


def _same(a, b) -> bool:
    if len(a) != len(b):
        return False
    return all((math.isnan(x) and math.isnan(y)) or abs(x - y) <= 1e-12 for x, y in zip(a, b))


def _ties(points: dict[str, tuple[list[float], list[float]]]) -> dict[str, list[str]]:
    """For each curve, the earlier curves it coincides with (same points)."""
    out: dict[str, list[str]] = {}
    names = list(points)
    for i, name in enumerate(names):
        x, y = points[name]
        out[name] = [o for o in names[:i] if x and _same(x, points[o][0]) and _same(y, points[o][1])]
    return out


def _tie_note(tied: list[str]) -> str:
    return f", tied with {tied[0]}" if tied else ""  # the first of them: the others are equal to it too


def _legend(ax) -> None:
    """Below the axes, so that it never hides a curve however many there are."""
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.14), fontsize=7, frameon=False)


def _floats(xs) -> list[float]:
    return [math.nan if v is None else float(v) for v in xs]


def plot_roc(curves: Mapping[str, Any], path: str | os.PathLike, title: str = "") -> Path:
    """``curves``: label (a method variant, ``benchmark.variants``) -> RocCurve (or its JSON dict). One PNG
    with one line per label; coinciding curves get distinct styles and "tied with X" in the legend."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1)
    points = {name: (_floats(_field(c, "fpr") or []), _floats(_field(c, "tpr") or [])) for name, c in curves.items()}
    ties = _ties(points)
    for i, (name, c) in enumerate(curves.items()):
        fpr, tpr = points[name]
        label = f"{name} (AUROC {fmt(_field(c, 'auroc'))}{_tie_note(ties[name])})"
        if fpr:
            ax.plot(fpr, tpr, label=label, **_style(i, len(ties[name])))
        else:
            ax.plot([], [], label=label + " - " + str(_field(c, "reason")), **_style(i, 0))
    ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), xlabel="FPR", ylabel="TPR", title=title or "ROC")
    _legend(ax)
    return _save(fig, path)


def _n_edges(curves: Mapping[str, Any]) -> int | None:
    """The graph's edge count, from a curve's requested counts (``int(p * n_edges)``) at its largest
    fraction; None when no curve says."""
    best = None
    for c in curves.values():
        fr, req = list(_field(c, "fractions") or []), list(_optional(c, "requested") or [])
        if fr and len(fr) == len(req) and max(fr) > 0:
            i = max(range(len(fr)), key=lambda j: fr[j])
            n = int(round(req[i] / fr[i]))
            best = max(best or 0, n)
    return best or None


def plot_faithfulness(curves: Mapping[str, Any], path: str | os.PathLike, title: str = "",
                      log_x: bool = True) -> Path:
    """``curves``: label (a method variant) -> FaithfulnessCurve (or its JSON dict). f against requested
    fraction, one line per label; coinciding curves as in :func:`plot_roc`."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.axhline(1.0, ls=":", color="grey", lw=1)
    ax.axhline(0.0, ls=":", color="grey", lw=1)
    n_edges = _n_edges(curves)
    points = {}
    for name, c in curves.items():
        x, f = _floats(_field(c, "fractions")), _floats(_field(c, "faithfulness"))
        req = list(_optional(c, "requested") or [])
        if log_x and n_edges and len(req) == len(x):  # a log axis starts at one edge: fewer is the empty circuit
            x, f = [a for a, r in zip(x, req) if r >= 1], [b for b, r in zip(f, req) if r >= 1]
        points[name] = (x, f)
    ties = _ties(points)
    for i, (name, c) in enumerate(curves.items()):
        x, f = points[name]
        ax.plot(x, f, label=f"{name} (CPR {fmt(_field(c, 'cpr'))}, CMD {fmt(_field(c, 'cmd'))}"
                            f"{_tie_note(ties[name])})", **_style(i, len(ties[name])))
    xlabel = "fraction of edges (requested)"
    if log_x:
        ax.set_xscale("log")
        if n_edges:  # the axis spans one edge .. all edges, whatever fractions were requested
            ax.set_xlim(0.8 / n_edges, 1.25)
            xlabel += f"; {n_edges} edges, axis from 1 edge"
    ax.set(xlabel=xlabel, ylabel="faithfulness f", title=title or "Faithfulness")
    _legend(ax)
    return _save(fig, path)


# ---- the faithfulness study's plots (benchmark.study) ------------------------------------------------
def plot_pareto(doc: Mapping[str, Any], path: str | os.PathLike, reference: str = "exact",
                small_graph: int = 128) -> str:
    """The faithfulness study's pareto plot: f against edges kept, one curve per method (``reference``
    dashed), sweep points and the ground truth; a symlog axis above ``small_graph`` edges."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.axhline(1.0, ls=":", color="grey", lw=1)
    ax.axhline(0.0, ls=":", color="grey", lw=1)
    for spec, row in doc["methods"].items():
        if "kept" in row:
            pts = sorted(zip(row["kept"], row["faithfulness"]))
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=2.5, lw=1.8 if spec == reference else 1.2,
                    ls="--" if spec == reference else "-",
                    label=f"{spec} (CPR {fmt(row.get('cpr'))}, CMD {fmt(row.get('cmd'))})")
        if row.get("points"):
            ax.scatter([p["kept"] for p in row["points"]], [p["faithfulness"] for p in row["points"]], s=14,
                       label=f"{spec} (sweep)")
    gt = doc.get("ground_truth") or {}
    if gt.get("kept") is not None:
        ax.scatter([gt["kept"]], [gt["faithfulness"]], marker="*", s=120, color="black", zorder=5, label="ground truth")
    if doc["n_edges"] > small_graph:
        ax.set_xscale("symlog", linthresh=1)
    ax.set(xlabel="edges kept (after pruning)", ylabel="normalised faithfulness f",
           title=f"case {doc['case']} ({doc['model']}): {doc['policy']} selection, {doc['metric']}")
    ax.legend(fontsize=7)
    return str(_save(fig, path))


AGREEMENT_BARS = (("topk_eff", "top-k_eff"), ("ao_eff", "AO@k_eff"), ("top5", "top-5%"), ("pearson", "Pearson"),
                  ("spearman", "Spearman"), ("kendall", "Kendall τ-b"))


def bar_value(row: Mapping[str, Any], key: str) -> float:
    """One bar of an agreement row: a statistic, or ``top5`` (the top-5 % overlap); NaN when missing."""
    if key == "top5":
        v = next((t["overlap"] for t in row.get("topk", []) if abs(t["fraction"] - 0.05) < 1e-9), math.nan)
    else:
        v = row.get(key, math.nan)
    return math.nan if v is None else v


def plot_agreement(doc: Mapping[str, Any], scatter: Mapping[str, Any], exact, path: str | os.PathLike) -> str:
    """The agreement study's bars (one group per statistic, one bar per method) and per-edge scatter of
    each method's scores (``scatter``: spec -> [E]) against exact patching's (``exact``)."""
    plt = _plt()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    names = [m for m, r in doc["methods"].items() if "pearson" in r]
    width = 0.8 / max(1, len(names))
    for i, m in enumerate(names):
        vals = [bar_value(doc["methods"][m], k) for k, _ in AGREEMENT_BARS]
        ax.bar(np.arange(len(AGREEMENT_BARS)) + i * width, np.nan_to_num(vals), width, label=m)
    ax.set_xticks(np.arange(len(AGREEMENT_BARS)) + width * (len(names) - 1) / 2)
    ax.set_xticklabels([lab for _, lab in AGREEMENT_BARS], fontsize=8)
    ax.set(ylim=(-0.2, 1.05), ylabel="agreement with exact patching",
           title=f"case {doc['case']} ({doc['model']}), {'signed' if doc['signed'] else '|scores|'}")
    ax.axhline(0, color="grey", lw=0.8)  # legend: the scatter's (same colours, same order)
    tr = (lambda x: x) if doc["signed"] else np.abs
    for m, vec in scatter.items():
        ax2.scatter(tr(exact), tr(vec), s=8, alpha=0.6, label=m)
    lim = [np.nanmin(tr(exact)), np.nanmax(tr(exact))]
    ax2.plot(lim, lim, ls=":", color="grey", lw=1)
    ax2.set(xlabel="exact patching score" + ("" if doc["signed"] else " (abs)"),
            ylabel="method score" + ("" if doc["signed"] else " (abs)"), title="per-edge scores")
    ax2.legend(fontsize=7)
    return str(_save(fig, path))


def _step_axis(ax, steps) -> None:
    from matplotlib.ticker import NullLocator

    ax.set_xscale("log")
    ax.set_xticks(steps)
    ax.set_xticklabels([str(x) for x in steps])
    ax.xaxis.set_minor_locator(NullLocator())


def plot_ig_steps(doc: Mapping[str, Any], path: str | os.PathLike) -> str:
    """The IG-steps study: agreement with exact patching and CPR / CMD against the step count."""
    plt = _plt()
    rows = [r for r in doc["rows"] if r["steps"] > 0]
    eap = next((r for r in doc["rows"] if r["steps"] == 0), None)
    x = [r["steps"] for r in rows]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for key, lab in (("topk_eff", "top-k_eff overlap"), ("ao_eff", "AO@k_eff"), ("pearson", "Pearson |s|"),
                     ("kendall", "Kendall τ-b |s|")):
        line, = ax.plot(x, [np.nan if r[key] is None else r[key] for r in rows], marker="o", label=lab)
        if eap and eap[key] is not None:
            ax.axhline(eap[key], color=line.get_color(), ls=":", lw=1)
    _step_axis(ax, x)
    ax.set(xlabel="integrated-gradient steps", ylabel="agreement with exact patching", ylim=(-0.2, 1.05),
           title=f"case {doc['case']} ({doc['model']}), EAP-IG {doc['variant']} (dotted: EAP)")
    ax.legend(fontsize=7)
    ax2.plot(x, [r["cpr"] for r in rows], marker="o", label="CPR")
    ax2.plot(x, [r["cmd"] for r in rows], marker="s", label="CMD")
    ref = doc.get("reference") or {}
    if ref.get("cpr") is not None:
        ax2.axhline(ref["cpr"], color="black", ls="--", lw=1, label="exact CPR")
    for r in rows:
        ax2.annotate(f"{r['method_seconds']:.1f}s", (r["steps"], r["cpr"] if r["cpr"] is not None else 0), fontsize=6,
                     textcoords="offset points", xytext=(0, 5))
    _step_axis(ax2, x)
    ax2.set(xlabel="integrated-gradient steps", ylabel="area", title=f"CPR / CMD ({doc['policy']}, method seconds)")
    ax2.legend(fontsize=7)
    return str(_save(fig, path))


def plot_overlap(doc: Mapping[str, Any], path: str | os.PathLike) -> str:
    """The cross-case study's heatmaps: faithfulness F[eval][circuit] and edge IoU."""
    plt = _plt()
    labels = doc["settings"]
    k = len(labels)
    fig, axes = plt.subplots(1, 2, figsize=(5 + 1.1 * k, 2.5 + 0.5 * k))
    for ax, key, title in ((axes[0], "F", "faithfulness F[eval][circuit]"), (axes[1], "edge_iou", "edge IoU")):
        M = np.array([[np.nan if v is None else v for v in row] for row in doc[key]], dtype=float)
        finite = np.isfinite(M).any()
        im = ax.imshow(M, vmin=min(0.0, np.nanmin(M)) if finite else 0, vmax=max(1.0, np.nanmax(M)) if finite else 1,
                       cmap="viridis")
        for i in range(k):
            for j in range(k):
                ax.text(j, i, fmt(float(M[i, j])), ha="center", va="center", fontsize=7,
                        color="black" if np.isfinite(M[i, j]) and M[i, j] > 0.6 else "white")
        ax.set_xticks(range(k))
        ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(k))
        ax.set_yticklabels(labels if key == "F" else [], fontsize=7)
        ax.set(xlabel="circuit found on", ylabel="evaluated on" if key == "F" else "", title=title)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"{doc['method']} circuits ({doc['policy']}, target f {doc['target']})", fontsize=9)
    return str(_save(fig, path))
