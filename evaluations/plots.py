"""PNG plots: ROC curves of several methods on one case, faithfulness curves. matplotlib (Agg) is
imported lazily; files are written atomically (temporary file in the same folder, then rename)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping

from evaluations._common import atomic_write


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


def _fmt(x) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def plot_roc(curves: Mapping[str, Any], path: str | os.PathLike, title: str = "") -> Path:
    """``curves``: method name -> RocCurve (or its JSON dict). One PNG with one line per method."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1)
    for name, c in curves.items():
        fpr, tpr = _field(c, "fpr"), _field(c, "tpr")
        label = f"{name} (AUROC {_fmt(_field(c, 'auroc'))})"
        if fpr:
            ax.plot(fpr, tpr, marker="o", ms=3, lw=1.5, label=label)
        else:
            ax.plot([], [], label=label + " - " + str(_field(c, "reason")))
    ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), xlabel="FPR", ylabel="TPR", title=title or "ROC")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_faithfulness(curves: Mapping[str, Any], path: str | os.PathLike, title: str = "",
                      log_x: bool = True) -> Path:
    """``curves``: method name -> FaithfulnessCurve (or its JSON dict). f against requested fraction."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.axhline(1.0, ls=":", color="grey", lw=1)
    ax.axhline(0.0, ls=":", color="grey", lw=1)
    for name, c in curves.items():
        x, f = _field(c, "fractions"), [math.nan if v is None else v for v in _field(c, "faithfulness")]
        ax.plot(x, f, marker="o", ms=3, label=f"{name} (CPR {_fmt(_field(c, 'cpr'))}, CMD {_fmt(_field(c, 'cmd'))})")
    if log_x:
        ax.set_xscale("log")
    ax.set(xlabel="fraction of edges (requested)", ylabel="faithfulness f", title=title or "Faithfulness")
    ax.legend(fontsize=8)
    return _save(fig, path)
