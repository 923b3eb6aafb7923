"""Aggregate result files into a leaderboard: one row per (model kind, method), with per-case detail."""

from __future__ import annotations

import csv
import html
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.results import iter_results


def _num(x) -> float:
    return float(x) if isinstance(x, (int, float)) and x is not None else math.nan


def _mean(xs: list[float]) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return sum(xs) / len(xs) if xs else math.nan


@dataclass
class Row:
    model: str
    method: str
    cases: list[str] = field(default_factory=list)
    edge_auroc: list[float] = field(default_factory=list)
    node_auroc: list[float] = field(default_factory=list)
    edge_pessimistic: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    errors: int = 0

    def summary(self) -> dict[str, Any]:
        return {"model": self.model, "method": self.method, "n_cases": len(set(self.cases)),
                "edge_auroc": _mean(self.edge_auroc), "node_auroc": _mean(self.node_auroc),
                "edge_pessimistic_auc": _mean(self.edge_pessimistic), "mean_seconds": _mean(self.seconds),
                "errors": self.errors}


def collect(out: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(summary rows, per-run detail rows) from every result under ``out``."""
    rows: dict[tuple[str, str], Row] = {}
    detail = []
    for path, doc in iter_results(out):
        key = (str(doc.get("model")), str(doc.get("method")))
        row = rows.setdefault(key, Row(*key))
        if doc.get("status") != "ok":
            row.errors += 1
            detail.append({"case": doc.get("case"), "model": key[0], "method": key[1], "status": "error",
                           "error": doc.get("error"), "path": str(path)})
            continue
        roc = doc.get("roc") or {}
        e, n = roc.get("edges") or {}, roc.get("nodes") or {}
        row.cases.append(str(doc.get("case")))
        row.edge_auroc.append(_num(e.get("auroc")))
        row.node_auroc.append(_num(n.get("auroc")))
        row.edge_pessimistic.append(_num(e.get("pessimistic_auc")))
        row.seconds.append(_num((doc.get("timing") or {}).get("seconds")))
        detail.append({"case": doc.get("case"), "model": key[0], "method": key[1], "status": "ok",
                       "edge_auroc": _num(e.get("auroc")), "node_auroc": _num(n.get("auroc")),
                       "seconds": _num((doc.get("timing") or {}).get("seconds")), "path": str(path)})
    summary = sorted((r.summary() for r in rows.values()), key=lambda r: (r["model"], -_nan_low(r["edge_auroc"])))
    return summary, detail


def _nan_low(x: float) -> float:
    return -1.0 if math.isnan(x) else x


COLUMNS = ["model", "method", "n_cases", "edge_auroc", "node_auroc", "edge_pessimistic_auc", "mean_seconds", "errors"]


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def to_markdown(summary: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in COLUMNS) + " |" for r in summary]
    return "\n".join(lines) + "\n"


def to_csv(summary: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    w.writeheader()
    for r in summary:
        w.writerow({c: _fmt(r[c]) for c in COLUMNS})
    return buf.getvalue()


DETAIL_COLUMNS = ["case", "model", "method", "status", "edge_auroc", "node_auroc", "seconds", "error"]

_CSS = ("body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
        "table{border-collapse:collapse;margin-bottom:2em}caption{text-align:left;font-weight:bold;padding:4px 0}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f3f3f3}"
        "td:nth-child(-n+3),th:nth-child(-n+3){text-align:left}tr.error td{background:#fde8e8}"
        ".plots{display:flex;flex-wrap:wrap;gap:1.5em}figure{margin:0}"
        "img{max-width:640px;border:1px solid #ddd}figcaption{font-size:90%;color:#555;max-width:640px}")


def to_html(summary: list[dict[str, Any]], detail: list[dict[str, Any]], images: dict[str, str] | None = None) -> str:
    """A self-contained page (no external resources): the leaderboard (one row per model kind and
    method), the per-run detail, and ``images`` (``{caption: data URI}``) as captioned figures."""
    def cell(v):
        return f"<td>{html.escape(_fmt(v if v is not None else ''))}</td>"

    def table(rows, cols, ident, caption):
        head = "".join(f'<th scope="col">{html.escape(c)}</th>' for c in cols)
        body = "".join(f'<tr class="{html.escape(str(r.get("status", "ok")))}">' + "".join(cell(r.get(c)) for c in cols)
                       + "</tr>" for r in rows)
        return (f'<table id="{ident}" class="{ident}"><caption>{html.escape(caption)}</caption>'
                f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

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
            f"<p>{n_runs} run(s), {n_err} failed. AUROCs are means over cases (nan: undefined for every case).</p>"
            + table(summary, COLUMNS, "leaderboard", "Methods (one row per model kind and method)")
            + "<h2>Runs</h2>" + table(detail, DETAIL_COLUMNS, "runs", "Per-run detail")
            + plots + "</body></html>\n")
