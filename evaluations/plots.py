"""PNG plots: ROC curves of several methods on one case, faithfulness curves. matplotlib (Agg) is
imported lazily; files are written atomically (temporary file in the same folder, then rename)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping

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


def _fmt(x) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


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
        label = f"{name} (AUROC {_fmt(_field(c, 'auroc'))}{_tie_note(ties[name])})"
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
        ax.plot(x, f, label=f"{name} (CPR {_fmt(_field(c, 'cpr'))}, CMD {_fmt(_field(c, 'cmd'))}"
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
