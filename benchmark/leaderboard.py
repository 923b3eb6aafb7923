"""Aggregate result files into a leaderboard: one row per variant (model kind, method and the
hyper-parameters that tell its runs apart, ``benchmark.variants``), with per-run detail.

AUROCs are means over cases (the runs of one case, e.g. several seeds, averaged first); times are means
over runs of the method's own seconds (``timing.method_seconds``) and of the set-up's (building or
reusing model, data and activations: ``timing.setup_seconds``). A variant with a run that did not
record them (results written before they existed) shows ``-``: the whole job's time is never used
in their place."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark import variants
from benchmark.uncertainty import add_extras
from core.results import iter_results
from evaluations.tables import csv_table, html_table, markdown_table


def _num(x) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else math.nan


def _mean(xs: list[float]) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return sum(xs) / len(xs) if xs else math.nan


def _mean_time(xs: list[float | None]) -> float | None:
    """Mean over runs; None when any run lacks the figure (or there are none)."""
    return sum(xs) / len(xs) if xs and all(x is not None for x in xs) else None


@dataclass
class Row:
    model: str
    method: str
    variant: str
    params: dict[str, Any]
    by_case: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)
    method_seconds: list[float | None] = field(default_factory=list)
    setup_seconds: list[float | None] = field(default_factory=list)
    errors: int = 0
    # per case, per run (like ``by_case``): the floored edge AUROC, the method's seconds, CPR and CMD
    # (from ``eval faithfulness``'s faithfulness.json next to the result; NaN without one)
    extra: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def _case_mean(self, i: int) -> float:
        return _mean([_mean([run[i] for run in runs]) for runs in self.by_case.values()])

    def summary(self) -> dict[str, Any]:
        return {"model": self.model, "method": self.method, "variant": self.variant,
                "params": variants.describe(self.params), "n_cases": len(self.by_case),
                "n_runs": sum(len(r) for r in self.by_case.values()),
                "edge_auroc": self._case_mean(0), "node_auroc": self._case_mean(1),
                "edge_pessimistic_auc": self._case_mean(2),
                "mean_method_seconds": _mean_time(self.method_seconds),
                "mean_setup_seconds": _mean_time(self.setup_seconds), "errors": self.errors}


def collect(out: str | Path, score_floor: float | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(summary rows, one per variant; per-run detail rows) from every result under ``out``."""
    rows, detail = collect_rows(out, score_floor)
    summary = sorted((r.summary() for r in rows.values()),
                     key=lambda r: (r["model"], -_nan_low(r["edge_auroc"]), r["variant"]))
    return summary, detail


def collect_rows(out: str | Path, score_floor: float | None = None,
                 docs: list | None = None) -> tuple[dict[tuple[str, str, str], Row], list[dict[str, Any]]]:
    """({variant key: Row}, per-run detail rows) from every result under ``out`` (or ``docs``: result
    documents or reference records)."""
    docs = [(path, variants.as_result(doc)) for path, doc in (iter_results(out) if docs is None else docs)]
    keys = [variants.variant_key(r) for _, r in docs]
    labels = variants.label_variants(keys)
    rows: dict[tuple[str, str, str], Row] = {}
    detail = []
    for (path, r), key in zip(docs, keys):
        row = rows.get(key)
        if row is None:
            params = {k: v for k, v in variants.variant_of(r).items() if not k.startswith("@")}
            row = rows[key] = Row(key[0], key[1], labels[key], params)
        base = {"case": r.case, "model": key[0], "method": key[1], "variant": row.variant,
                "params": variants.describe(r.params), "seed": r.seed, "model_seed": r.model_seed,
                "n": r.data.n,
                "method_seconds": r.seconds("method_seconds"), "setup_seconds": r.seconds("setup_seconds"),
                "seconds": r.seconds("seconds"), "path": str(path)}
        if not r.ok:
            row.errors += 1
            detail.append({**base, "status": "error", "error": r.error})
            continue
        e, n = r.roc_level("edges"), r.roc_level("nodes")
        run = (_num(e.get("auroc")), _num(n.get("auroc")), _num(e.get("pessimistic_auc")))
        row.by_case.setdefault(str(r.case), []).append(run)
        row.method_seconds.append(base["method_seconds"])
        row.setup_seconds.append(base["setup_seconds"])
        detail.append({**base, "status": "ok", "edge_auroc": run[0], "node_auroc": run[1],
                       **add_extras(row, path, r, score_floor)})
    return rows, detail


def _nan_low(x: float) -> float:
    return -1.0 if math.isnan(x) else x


COLUMNS = ["model", "method", "variant", "n_cases", "n_runs", "edge_auroc", "node_auroc", "edge_pessimistic_auc",
           "mean_method_seconds", "mean_setup_seconds", "errors"]


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def _cell(r: dict[str, Any], c: str) -> str:
    return _fmt(r[c])


def to_markdown(summary: list[dict[str, Any]]) -> str:
    return markdown_table(summary, COLUMNS, _cell)


def to_csv(summary: list[dict[str, Any]]) -> str:
    return csv_table(summary, COLUMNS, _cell, lineterminator="\r\n")


DETAIL_COLUMNS = ["case", "model", "method", "variant", "params", "status", "seed", "model_seed", "edge_auroc",
                  "node_auroc", "method_seconds", "setup_seconds", "seconds", "error"]
# times that a result may lack (written before they were recorded): shown as "-", never replaced
TIME_COLUMNS = {"mean_method_seconds", "mean_setup_seconds", "method_seconds", "setup_seconds"}

_CSS = ("body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
        "table{border-collapse:collapse;margin-bottom:2em}caption{text-align:left;font-weight:bold;padding:4px 0}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f3f3f3}"
        "td:nth-child(-n+3),th:nth-child(-n+3),#runs td:nth-child(-n+5),#runs th:nth-child(-n+5){text-align:left}"
        "#runs td:nth-child(5){max-width:28em;font-size:85%}tr.error td{background:#fde8e8}"
        ".plots{display:flex;flex-wrap:wrap;gap:1.5em}figure{margin:0}"
        "img{max-width:640px;border:1px solid #ddd}figcaption{font-size:90%;color:#555;max-width:640px}")


def to_html(summary: list[dict[str, Any]], detail: list[dict[str, Any]], images: dict[str, str] | None = None) -> str:
    """A self-contained page (no external resources): the leaderboard (one row per variant), the per-run
    detail with each run's parameters, and ``images`` (``{caption: data URI}``) as captioned figures."""
    def cell(r, col):
        v = r.get(col)
        return _fmt(v) if v is not None or col in TIME_COLUMNS else ""

    def table(rows, cols, ident, caption):
        return html_table(rows, cols, cell, attrs=f' id="{ident}" class="{ident}"', caption=caption,
                          row_attrs=lambda r: f' class="{html.escape(str(r.get("status", "ok")))}"')

    figures = "".join(f'<figure><img alt="{html.escape(k, quote=True)}" src="{html.escape(v, quote=True)}">'
                      f"<figcaption>{html.escape(k)}</figcaption></figure>" for k, v in (images or {}).items())
    plots = (f'<h2>Plots</h2><div id="plots" class="plots">{figures}</div>' if figures else
             '<h2>Plots</h2><p id="plots">No plots yet: run <code>eval roc</code> / <code>eval faithfulness</code> '
             "on the results, then rebuild this page.</p>")
    n_runs = len(detail)
    n_err = sum(1 for r in detail if r.get("status") != "ok")
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>circuit-bench leaderboard</title>"
            f"<style>{_CSS}</style></head><body>"
            "<h1>circuit-bench leaderboard</h1>"
            f"<p>{n_runs} run(s), {n_err} failed. One row per variant: model kind, method and the parameters that "
            "differ between its runs. AUROCs are means over cases (nan: undefined for every case); times are "
            "mean seconds per run of the method itself and of the set-up (model, data, activations; "
            "-: not recorded by these results).</p>"
            + table(summary, COLUMNS, "leaderboard", "Methods (one row per model kind, method and variant)")
            + "<h2>Runs</h2>" + table(detail, DETAIL_COLUMNS, "runs", "Per-run detail")
            + plots + "</body></html>\n")
