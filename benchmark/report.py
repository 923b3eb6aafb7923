"""The leaderboard with uncertainty (issue 22) in every format: md, csv, json and one self-contained HTML
page (inline CSS/JS/SVG, images as data URIs, nothing fetched) with a sortable method table (intervals,
tied-with-best marks, rank stability), the pairwise paired tests, a case x variant AUROC heatmap per
model kind, a cost-quality plot (method seconds, log axis, against mean edge AUROC with its interval),
the direction-method results, and the per-case seed spread and per-run detail behind a click."""

from __future__ import annotations

import html
import math
from typing import Any, Mapping, Sequence

from benchmark import leaderboard as lb
from benchmark import uncertainty as unc
from evaluations import direction as dlb
from evaluations.stats import case_means
from evaluations.tables import csv_table, html_table, markdown_table


P_COLUMNS = {"p_value", "p_vs_best", "p_vs_best_holm", "p_holm"}


def _fmt(v, col: str = "") -> str:
    if col in P_COLUMNS and isinstance(v, float) and not math.isnan(v) and v != 0 and abs(v) < 1e-3:
        return f"{v:.2e}"
    return lb._fmt(v)


def _reference_note(reference: Mapping[str, Any], quote) -> str:
    """The sentence naming the reference ranked against (``quote`` marks up its path) and what of it was
    used (``benchmark.reference.matching``): the cases and data seeds of these results when it holds more."""
    seeds = reference.get("seeds_used")
    scope = ((", on the cases of these results" if reference.get("cases_used") else "")
             + (f", data seeds {', '.join(map(str, seeds))} only (those of these results)" if seeds else ""))
    return f"Ranked against the reference {quote(str(reference.get('path')))} ({reference.get('n_runs')} runs{scope}; " \
           "rows marked [ref])."


def to_markdown(analysis: Mapping[str, Any], reference: Mapping[str, Any] | None = None) -> str:
    lines = [markdown_table(analysis["summary"], lb.COLUMNS + unc.MD_EXTRA, lambda r, c: _fmt(r.get(c), c)).removesuffix("\n"),
             "", unc.legend(analysis["method"]), ""]
    if reference:
        lines += [_reference_note(reference, lambda path: f"`{path}`"), ""]
    for title, pairs in (("edge AUROC", analysis["pairwise"]),
                         ("node AUROC, CPR, CMD", analysis["pairwise_metrics"])):
        if not pairs:
            continue
        lines += [f"### Paired comparisons ({title}, per model kind)", "",
                  "| model | metric | a | b | cases | mean a-b | win/tie/loss | W | p | p (Holm) |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {p['model']} | {p['metric']} | {p['a']} | {p['b']} | {p['n_cases']} | "
                  f"{_fmt(p['mean_diff'])} | {p['wins']}/{p['ties']}/{p['losses']} | {_fmt(p['statistic'])} | "
                  f"{_fmt(p['p_value'], 'p_value')} | {_fmt(p['p_holm'], 'p_holm')} |" for p in pairs]
        lines.append("")
    return "\n".join(lines)


def _csv_cell(r: Mapping[str, Any], c: str) -> str:
    return repr(r[c]) if isinstance(r.get(c), float) and c not in lb.COLUMNS else lb._fmt(r.get(c))


def to_csv(analysis: Mapping[str, Any]) -> str:
    return csv_table(analysis["summary"], lb.COLUMNS + unc.CSV_EXTRA, _csv_cell, lineterminator="\r\n")


_CSS = ("body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:100%}"
        "table{border-collapse:collapse;margin-bottom:1.5em;font-size:13px}caption{text-align:left;font-weight:bold;"
        "padding:4px 0}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right;white-space:nowrap}"
        "th{background:#f3f3f3;white-space:normal;vertical-align:bottom}th.sort{cursor:pointer}th.sort:after{content:' \\2195';color:#999}"
        "td.l,th.l{text-align:left}tr.error td{background:#fde8e8}tr.best td{background:#e6f4e6}"
        "tr.tied td{background:#f3faf3}.wrap{overflow-x:auto;max-width:100%}"
        ".heat td{padding:1px 4px;font-size:11px}.heat th{font-size:11px;white-space:normal;max-width:7em}"
        ".plots{display:flex;flex-wrap:wrap;gap:1.5em}figure{margin:0}img{max-width:640px;border:1px solid #ddd}"
        "figcaption{font-size:90%;color:#555;max-width:640px}details{margin:0.5em 0 1.5em}"
        "summary{cursor:pointer;font-weight:bold}p.legend{font-size:90%;color:#444;max-width:70em}")

_JS = """document.querySelectorAll('table.sortable').forEach(t => {
  t.querySelectorAll('th').forEach((th, i) => { th.classList.add('sort'); th.addEventListener('click', () => {
    const body = t.tBodies[0], rows = [...body.rows], dir = th.dataset.dir === 'a' ? -1 : 1;
    th.dataset.dir = dir === 1 ? 'a' : 'd';
    const key = r => { const c = r.cells[i]; const v = c.dataset.v !== undefined ? c.dataset.v : c.textContent;
      const x = parseFloat(v); return isNaN(x) ? v : x; };
    rows.sort((a, b) => { const x = key(a), y = key(b);
      if (typeof x === 'number' && typeof y === 'number') return dir * (x - y);
      if (typeof x === 'number') return -1; if (typeof y === 'number') return 1;
      return dir * String(x).localeCompare(String(y)); });
    rows.forEach(r => body.appendChild(r)); }); }); });"""

LEFT = {"model", "method", "variant", "case", "params", "status", "a", "b", "error", "tied_with_best"}


def _text(r: Mapping[str, Any], col: str) -> str:
    v = r.get(col)
    return _fmt(v, col) if v is not None or col in lb.TIME_COLUMNS else ""


def _td(r: Mapping[str, Any], col: str) -> str:
    v = r.get(col)
    num = f' data-v="{v!r}"' if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
    return (' class="l"' if col in LEFT else "") + num


def _table(rows: Sequence[Mapping[str, Any]], cols: Sequence[str], ident: str, caption: str, sortable: bool = True,
           row_class=None) -> str:
    def tr(r):
        return f' class="{html.escape(row_class(r) if row_class else str(r.get("status", "ok")))}"'

    table = html_table(rows, cols, _text, attrs=f' id="{ident}" class="{ident}{" sortable" if sortable else ""}"',
                       caption=caption, th_attrs=lambda c: ' scope="col"' + (" class=l" if c in LEFT else ""),
                       row_attrs=tr, td_attrs=_td, header_html=lambda t: t.replace("_", "_<wbr>"))
    return f'<div class="wrap">{table}</div>'  # <wbr>: long names wrap at their underscores, the text stays the name


def _colour(v: float) -> str:
    if v is None or math.isnan(v):
        return "#eee"
    v = min(1.0, max(0.0, v))  # 0 red, 0.5 yellow, 1 green
    return f"hsl({int(120 * v)},70%,{80 - 25 * abs(v - 0.5):.0f}%)"


def heatmaps(rows: Mapping[Any, Any]) -> str:
    """One case x variant table of per-case mean edge AUROC per model kind, cells coloured by value."""

    out = []
    by_model: dict[str, list] = {}
    for r in rows.values():
        by_model.setdefault(r.model, []).append(r)
    for model, group in sorted(by_model.items()):
        group.sort(key=lambda r: r.variant)
        means = {r.variant: case_means(unc.values(r, 0)) for r in group}
        cases = sorted({c for m in means.values() for c in m}, key=unc._case_order)
        head = '<th class="l">case</th>' + "".join(f"<th>{html.escape(r.variant)}</th>" for r in group)
        body = ""
        for c in cases:
            tds = ""
            for r in group:
                v = means[r.variant].get(c, math.nan)
                tds += (f'<td style="background:{_colour(v)}" data-v="{v!r}" title="{html.escape(r.variant)}, case '
                        f'{html.escape(c)}">{"" if math.isnan(v) else f"{v:.2f}"}</td>')
            body += f'<tr><td class="l">{html.escape(c)}</td>{tds}</tr>'
        ident = "heatmap-" + "".join(ch if ch.isalnum() else "-" for ch in model)
        out.append(f"<h3>Model {html.escape(model)}: edge AUROC per case (mean over seeds; red 0, yellow 0.5, "
                   f'green 1, grey: not run)</h3><div class="wrap"><table id="{ident}" class="heat heatmap sortable">'
                   f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")
    return "".join(out)


def cost_quality_svg(summary: Sequence[Mapping[str, Any]]) -> str:
    """Method seconds per run (log x) against mean edge AUROC with its interval; one point per variant."""
    pts = [r for r in summary if isinstance(r.get("mean_method_seconds"), float) and r["mean_method_seconds"] > 0
           and not math.isnan(r.get("edge_auroc", math.nan))]
    w, h, ml, mr, mt, mb = 760, 420, 60, 200, 20, 50
    if not pts:
        return '<p id="cost-quality">No variant recorded its method seconds: no cost-quality plot.</p>'
    xs = [math.log10(r["mean_method_seconds"]) for r in pts]
    lo, hi = math.floor(min(xs)), math.ceil(max(xs))
    hi = hi if hi > lo else lo + 1

    def X(s):
        return ml + (math.log10(s) - lo) / (hi - lo) * (w - ml - mr)

    def Y(a):
        return mt + (1 - min(1.0, max(0.0, a))) * (h - mt - mb)

    parts = [f'<svg id="cost-quality" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
             f'viewBox="0 0 {w} {h}" font-size="11" role="img"><title>cost-quality</title>',
             f'<rect x="{ml}" y="{mt}" width="{w - ml - mr}" height="{h - mt - mb}" fill="none" stroke="#999"/>']
    for k in range(lo, hi + 1):
        x = X(10.0 ** k)
        parts.append(f'<line x1="{x:.1f}" y1="{mt}" x2="{x:.1f}" y2="{h - mb}" stroke="#eee"/>'
                     f'<text x="{x:.1f}" y="{h - mb + 14}" text-anchor="middle">1e{k}</text>')
    for a in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{ml}" y1="{Y(a):.1f}" x2="{w - mr}" y2="{Y(a):.1f}" stroke="#eee"/>'
                     f'<text x="{ml - 6}" y="{Y(a) + 4:.1f}" text-anchor="end">{a:g}</text>')
    parts.append(f'<text x="{(ml + w - mr) / 2}" y="{h - 12}" text-anchor="middle">method seconds per run (log)</text>'
                 f'<text transform="rotate(-90)" x="{-(mt + h - mb) / 2}" y="16" text-anchor="middle">'
                 "mean edge AUROC (95% CI)</text>")
    models = sorted({r["model"] for r in pts})
    # labels listed top to bottom in the order of the points' AUROC, so that leader lines rarely cross
    for i, r in enumerate(sorted(pts, key=lambda r: (-r["edge_auroc"], r["mean_method_seconds"], r["variant"]))):
        colour = f"hsl({(i * 67) % 360},65%,42%)"
        x, y = X(r["mean_method_seconds"]), Y(r["edge_auroc"])
        if not math.isnan(r.get("edge_auroc_low", math.nan)):
            parts.append(f'<line x1="{x:.1f}" y1="{Y(r["edge_auroc_low"]):.1f}" x2="{x:.1f}" '
                         f'y2="{Y(r["edge_auroc_high"]):.1f}" stroke="{colour}" stroke-width="1.5"/>')
        shape = ("circle", "rect")[models.index(r["model"]) % 2]
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{colour}"/>' if shape == "circle" else
                     f'<rect x="{x - 5:.1f}" y="{y - 5:.1f}" width="10" height="10" fill="{colour}"/>')
        label = f"{r['variant']} ({r['model']})" if len(models) > 1 else r["variant"]
        ly = mt + 14 * (i + 1)
        parts.append(f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{w - mr + 4}" y2="{ly - 4}" stroke="{colour}" '
                     f'stroke-opacity="0.35"/><text x="{w - mr + 8}" y="{ly}" fill="{colour}">{html.escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _direction_section(drows) -> str:
    if not drows:
        return ""
    table = html_table(drows, dlb.COLUMNS, dlb.cell, dlb.HEADERS, attrs=' id="directions" class="sortable"',
                       caption="Known-direction cases")
    return f'<h2>Direction methods</h2><div class="wrap">{table}</div>'


def to_html(analysis: Mapping[str, Any], rows: Mapping[Any, Any], detail: list[dict[str, Any]],
            images: dict[str, str] | None = None, drows=None, reference: Mapping[str, Any] | None = None) -> str:
    method = analysis["method"]
    cols = lb.COLUMNS + unc.MD_EXTRA

    def cls(r):
        return {"best": "best", "yes": "tied"}.get(r.get("tied_with_best"), "ok")

    figures = "".join(f'<figure><img alt="{html.escape(k, quote=True)}" src="{html.escape(v, quote=True)}">'
                      f"<figcaption>{html.escape(k)}</figcaption></figure>" for k, v in (images or {}).items())
    plots = (f'<div id="plots" class="plots">{figures}</div>' if figures else
             '<p id="plots">No per-case plots yet: run <code>eval roc</code> / <code>eval faithfulness</code> '
             "on the results, then rebuild this page.</p>")
    pair_cols = ["model", "metric", "a", "b", "n_cases", "mean_diff", "median_diff", "wins", "ties", "losses",
                 "statistic", "p_value", "p_holm"]
    spread_cols = ["model", "variant", "case", "n_seeds", "mean", "std", "min", "max"]
    n_err = sum(1 for r in detail if r.get("status") != "ok")
    ref_note = (f"<p>{_reference_note(reference, lambda path: f'<code>{html.escape(path)}</code>')}</p>"
                if reference else "")
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>circuit-bench leaderboard</title>"
            f"<style>{_CSS}</style></head><body><h1>circuit-bench leaderboard</h1>"
            f"<p>{len(detail)} run(s), {n_err} failed. One row per variant: model kind, method and the parameters "
            "that differ between its runs. AUROCs are means over cases of the per-case mean over seeds (nan: "
            "undefined for every case); times are mean seconds per run of the method itself and of the set-up "
            "(-: not recorded). Click a column head to sort; green rows: the best variant of its model kind "
            "and those statistically tied with it.</p>" + ref_note
            + f'<p class="legend" id="legend">{html.escape(unc.legend(method))}</p>'
            + _table(analysis["summary"], cols, "leaderboard", "Methods (one row per model kind, method and variant)",
                     row_class=cls)
            + "<h2>Cost and quality</h2>" + cost_quality_svg(analysis["summary"])
            + "<h2>Per case</h2>" + heatmaps(rows)
            + "<h2>Paired comparisons</h2>"
            + (_table(analysis["pairwise"], pair_cols, "pairwise",
                      f"Every pair of variants of one model kind, edge AUROC per case (a - b): {method['test']}")
               if analysis["pairwise"] else "<p id=\"pairwise\">Fewer than two variants per model kind.</p>")
            + (_table(analysis["pairwise_metrics"], pair_cols, "pairwise-metrics",
                      "The same on node AUROC, and on CPR and CMD where eval faithfulness ran (CMD: lower is better)")
               if analysis["pairwise_metrics"] else "")
            + _direction_section(drows)
            + "<details><summary>Per-case spread over seeds</summary>"
            + (_table(analysis["per_case"], spread_cols, "spread", "Edge AUROC over seeds, per case and variant")
               if analysis["per_case"] else "<p>One seed per case: no spread.</p>") + "</details>"
            + "<details><summary>Per-run detail</summary>"
            + _table(detail, lb.DETAIL_COLUMNS + ["floored_edge_auroc", "cpr", "cmd"], "runs", "Per-run detail")
            + "</details><h2>Plots</h2>" + plots
            + f"<script>{_JS}</script></body></html>\n")
