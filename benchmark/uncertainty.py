"""Error bars and paired tests on the leaderboard (issue 22), from ``evaluations.stats``.

Per variant (a ``leaderboard.Row``): the mean over cases of each per-case seed mean, with a 95%
two-stage bootstrap interval (cases, then the runs of a case over data and model seeds; ``stats.N_BOOT`` replicates, fixed seed
``stats.BOOTSTRAP_SEED``) for the edge AUROC, the node AUROC, the floored edge AUROC (scores with
``|s| <= floor * max|s|`` tied to 0, ``roc.floored_edge_roc``; sweep methods, which have no scores,
keep their AUROC), CPR and CMD (where ``eval faithfulness`` wrote them) and the method's seconds. Within
each model kind: the best variant by edge AUROC, which others are tied with it (paired Wilcoxon over
common cases, Holm-adjusted p >= ``stats.ALPHA``), every pair's paired comparison on edge AUROC, node
AUROC, CPR and CMD (Holm-adjusted per model kind and metric) and the rank stability.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any, Mapping

from core.results import RunResult
from evaluations import stats
from evaluations.roc import DEFAULT_SCORE_FLOOR, floored_edge_roc

EXTRA = ("floored_edge_auroc", "method_seconds", "cpr", "cmd")
# (summary name, where the per-case values come from: an index of Row.by_case or a key of Row.extra)
METRICS = (("edge_auroc", 0), ("node_auroc", 1), ("floored_edge_auroc", "floored_edge_auroc"), ("cpr", "cpr"),
           ("cmd", "cmd"), ("method_seconds", "method_seconds"))


def _f(x) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else math.nan


def add_extras(row, path: Path, doc: Mapping[str, Any] | RunResult, score_floor: float | None) -> dict[str, float]:
    """Record one finished run's floored edge AUROC, method seconds, CPR and CMD on ``row`` (per case);
    returns them for the run's detail row."""
    r = doc if isinstance(doc, RunResult) else RunResult.from_json(doc)
    floor = DEFAULT_SCORE_FLOOR if score_floor is None else score_floor
    floored = floored_edge_roc(r.to_json(), floor)
    value = {"floored_edge_auroc": floored.auroc if floored is not None else _f(r.roc_level("edges").get("auroc")),
             "method_seconds": _f(r.seconds("method_seconds"))}
    faith = r.extra.get("faithfulness")  # a reference record carries it inline
    if faith is None:
        faith = read_faithfulness(path)
    value["cpr"] = _f((faith or {}).get("cpr"))
    value["cmd"] = _f((faith or {}).get("cmd"))
    case = str(r.case)
    for k, v in value.items():
        row.extra.setdefault(k, {}).setdefault(case, []).append(v)
    return value


def read_faithfulness(path: Path) -> dict[str, Any] | None:
    """``{"cpr", "cmd"}`` of ``eval faithfulness``'s ``faithfulness.json`` next to a result (None without one)."""
    fpath = Path(path).parent / "faithfulness.json"
    if not fpath.is_file():
        return None
    try:
        doc = json.loads(fpath.read_text())
    except (OSError, ValueError):
        return None
    curve = doc.get("curve") if isinstance(doc, dict) else None
    if not isinstance(curve, dict):
        return None
    return {"cpr": curve.get("cpr"), "cmd": curve.get("cmd")}


def values(row, source) -> dict[str, list[float]]:
    """``{case: [value per run]}`` of one metric of a row."""
    if isinstance(source, int):
        return {c: [run[source] for run in runs] for c, runs in row.by_case.items()}
    return {c: list(v) for c, v in row.extra.get(source, {}).items()}


def _ci_text(iv: stats.Interval, digits: int = 3) -> str:
    if math.isnan(iv.low):
        return "-"
    return f"[{iv.low:.{digits}f}, {iv.high:.{digits}f}]"


# the metrics of the paired comparisons: edge AUROC (``pairwise``, also the tie-with-best marks) and the
# others (``pairwise_metrics``), each only over the variants that have it
PAIR_METRICS = tuple((name, source) for name, source in METRICS if name in ("edge_auroc", "node_auroc", "cpr", "cmd"))


def _pairs(model: str, group: list, metric: str, source) -> list[dict[str, Any]]:
    """Every pair of ``group``'s variants with common cases on one metric, Holm-adjusted as one family."""
    vals = {r.variant: values(r, source) for r in group}
    vals = {v: x for v, x in vals.items() if stats.case_means(x)}
    comps = [stats.paired_comparison(vals[a], vals[b], (a, b)) for a, b in itertools.combinations(sorted(vals), 2)]
    comps = [c for c in comps if c.n_cases]
    adjusted = stats.holm([c.p_value for c in comps])
    return [{"model": model, "metric": metric, **c.to_json(), "p_holm": q} for c, q in zip(comps, adjusted)]


def _marks(group: list, alpha: float, n_boot: int, seed: int) -> dict[int, dict[str, Any]]:
    """Per row of one model kind: tied with the best (on Holm-adjusted p over the comparisons with the
    best), the raw and adjusted p, and the rank stability."""
    edge = {r.variant: values(r, 0) for r in group}
    best, vs_best = stats.tied_with_best(edge, alpha)
    others = sorted(vs_best)
    adjusted = dict(zip(others, stats.holm([vs_best[v].p_value for v in others])))
    ranks = stats.rank_stability(edge, n_boot, seed)
    marks = {}
    for r in group:
        m: dict[str, Any] = {"tied_with_best": None, "p_vs_best": None, "p_vs_best_holm": None, "rank": None,
                             "rank_changed": None, "rank_low": None, "rank_high": None}
        if best is not None and r.variant == best:
            m["tied_with_best"] = "best"
        elif r.variant in vs_best:
            cmp = vs_best[r.variant]
            m["tied_with_best"] = "yes" if stats.is_tied(cmp, alpha, adjusted[r.variant]) else "no"
            m["p_vs_best"], m["p_vs_best_holm"] = cmp.p_value, adjusted[r.variant]
        if r.variant in ranks:
            rs = ranks[r.variant]
            m.update(rank=rs.rank, rank_changed=rs.changed, rank_low=rs.low, rank_high=rs.high)
        marks[id(r)] = m
    return marks


def analyse(rows: Mapping[Any, Any], alpha: float = stats.ALPHA, n_boot: int = stats.N_BOOT,
            seed: int = stats.BOOTSTRAP_SEED, score_floor: float = DEFAULT_SCORE_FLOOR) -> dict[str, Any]:
    """Summary rows with intervals, tie-with-best marks and rank stability; the pairwise comparisons
    (per model kind, every pair of variants: on edge AUROC in ``pairwise``, on node AUROC, CPR and CMD in
    ``pairwise_metrics``); the per-case seed spread; the methods used."""
    rows = list(rows.values()) if isinstance(rows, Mapping) else list(rows)
    out, pairwise, pairwise_metrics, per_case = [], [], [], []
    by_model: dict[str, list] = {}
    for r in rows:
        by_model.setdefault(r.model, []).append(r)
    marks: dict[int, dict[str, Any]] = {}
    for model, group in by_model.items():
        marks.update(_marks(group, alpha, n_boot, seed))
        for metric, source in PAIR_METRICS:
            (pairwise if metric == "edge_auroc" else pairwise_metrics).extend(_pairs(model, group, metric, source))
    for r in rows:
        s = r.summary()
        for name, source in METRICS:
            iv = stats.bootstrap_ci(values(r, source), n_boot=n_boot, seed=seed)
            s[name if name != "method_seconds" else "case_mean_method_seconds"] = iv.mean
            s[f"{name}_low"], s[f"{name}_high"] = iv.low, iv.high
            s[f"{name}_ci"] = _ci_text(iv, 4 if name == "method_seconds" else 3)
        s.update(marks.get(id(r), {}))
        out.append(s)
        for case, spread in stats.seed_spread(values(r, 0)).items():
            per_case.append({"model": r.model, "variant": r.variant, "case": case, **spread})
    out.sort(key=lambda s: (s["model"], -(s["edge_auroc"] if s["edge_auroc"] == s["edge_auroc"] else -1.0),
                            s["variant"]))
    return {"summary": out, "pairwise": pairwise, "pairwise_metrics": pairwise_metrics, "per_case": per_case,
            "method": {"interval": stats.CI_METHOD, "level": stats.LEVEL, "n_boot": n_boot, "bootstrap_seed": seed,
                       "test": stats.TEST_METHOD, "alpha": alpha, "tie_tol": stats.TIE_TOL,
                       "correction": stats.CORRECTION,
                       "tied_with_best": "per model kind, on edge AUROC: paired test against the best variant, "
                                         f"tied when the Holm-adjusted p (the family: every comparison with the "
                                         f"best of that model kind) is >= {alpha}",
                       "p_holm": "pairwise p-values Holm-adjusted per model kind and metric (every pair one family)",
                       "score_floor": score_floor,
                       "floored_edge_auroc": f"edge AUROC with |score| <= {score_floor:g} * max|score| set to 0 "
                                             "(sweep methods, without scores, keep their AUROC)"}}


def legend(method: Mapping[str, Any]) -> str:
    """One paragraph stating how the intervals, tests and floored AUROC were computed."""
    return (f"CI: {int(method['level'] * 100)}% {method['interval']}, {method['n_boot']} replicates, bootstrap seed "
            f"{method['bootstrap_seed']}. tied_with_best / p_vs_best (raw) / p_vs_best_holm: "
            f"{method['tied_with_best']}; test: {method['test']}; {method['p_holm']}. rank_changed: fraction of "
            "case resamples in which the variant's rank differs. "
            f"floored_edge_auroc: {method['floored_edge_auroc']} (--score-floor).")


# ---- compare two variants --------------------------------------------------------------------------------
def find_rows(rows: Mapping[Any, Any], label: str) -> list:
    """The rows whose variant label (or ``model:label``) is ``label``."""
    rows = list(rows.values()) if isinstance(rows, Mapping) else list(rows)
    return [r for r in rows if label in (r.variant, f"{r.model}:{r.variant}")]


def compare(rows: Mapping[Any, Any], a: str, b: str, metric: str = "edge_auroc") -> list[dict[str, Any]]:
    """Per model kind holding both: the paired comparison of ``a`` against ``b`` on ``metric`` (one of
    :data:`PAIR_METRICS`), with the per-case seed means and differences. Raises ValueError (a usage error)
    naming a missing variant or metric."""
    sources = dict(PAIR_METRICS)
    if metric not in sources:
        raise ValueError(f"unknown metric {metric!r} (known: {', '.join(sources)})")
    ra, rb = find_rows(rows, a), find_rows(rows, b)
    known = sorted({f"{r.model}:{r.variant}" for r in (rows.values() if isinstance(rows, Mapping) else rows)})
    for name, found in ((a, ra), (b, rb)):
        if not found:
            raise ValueError(f"no variant {name!r} in these results (known: {', '.join(known)})")
    out = []
    for x in ra:
        for y in rb:
            if x.model != y.model or x is y:
                continue
            va, vb = values(x, sources[metric]), values(y, sources[metric])
            ma, mb = stats.case_means(va), stats.case_means(vb)
            cases = [{"case": c, "a": ma[c], "b": mb[c], "diff": ma[c] - mb[c]}
                     for c in sorted(set(ma) & set(mb), key=_case_order)]
            out.append({"model": x.model, "metric": metric,
                        **stats.paired_comparison(va, vb, (x.variant, y.variant)).to_json(), "cases": cases})
    if not out:
        raise ValueError(f"variants {a!r} and {b!r} share no model kind (compare variants of one model kind)")
    return out


def _case_order(c: str):
    return (0, int(c), "") if c.isdigit() else (1, 0, c)


def compare_markdown(comparisons: list[dict[str, Any]]) -> str:
    lines = []
    for c in comparisons:
        lines += [f"## {c['a']} vs {c['b']} ({c['model']}, {c['metric']})", "",
                  f"{c['n_cases']} common cases; mean difference {c['mean_diff']:.4f}, median {c['median_diff']:.4f}; "
                  f"win/tie/loss {c['wins']}/{c['ties']}/{c['losses']}; Wilcoxon W = {c['statistic']:.1f}, "
                  f"p = {c['p_value']:.4g} ({c['test']}).", "",
                  f"| case | {c['a']} | {c['b']} | difference |", "|---|---|---|---|"]
        lines += [f"| {x['case']} | {x['a']:.4f} | {x['b']:.4f} | {x['diff']:+.4f} |" for x in c["cases"]]
        lines.append("")
    return "\n".join(lines)


# the leaderboard's columns with uncertainty: after the plain ones (whose positions stay), in md the
# intervals as "[low, high]" text, in csv as numbers
MD_EXTRA = ["edge_auroc_ci", "node_auroc_ci", "floored_edge_auroc", "floored_edge_auroc_ci", "cpr", "cpr_ci", "cmd",
            "cmd_ci", "method_seconds_ci", "tied_with_best", "p_vs_best", "p_vs_best_holm", "rank", "rank_changed"]
CSV_EXTRA = ["edge_auroc_low", "edge_auroc_high", "node_auroc_low", "node_auroc_high", "floored_edge_auroc",
             "floored_edge_auroc_low", "floored_edge_auroc_high", "cpr", "cpr_low", "cpr_high", "cmd", "cmd_low",
             "cmd_high", "case_mean_method_seconds", "method_seconds_low", "method_seconds_high", "tied_with_best",
             "p_vs_best", "p_vs_best_holm", "rank", "rank_changed", "rank_low", "rank_high"]


# ---- intervals and paired tests on the per-case AUROC tables of EXPERIMENTS.md (benchmarks/uncertainty_tables.py)
TABLE_COMPARE = ("ACDC", "EAP", "EAP-IG inputs", "exact", "node SP")


def read_auroc_tables(text: str) -> list[tuple[list[str], dict[str, dict[str, float]]]]:
    """The per-case edge-AUROC Markdown tables in ``text`` whose first row starts with ``| case | ACDC | node SP``:
    (header cells, ``{method: {case: AUROC}}``) each, the ``paper`` columns and non-case rows left out."""
    out, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("| case | ACDC | node SP"):
            continue
        head = [c.strip() for c in line.strip("|").split("|")]
        cols = {m: {} for m in head[1:] if not m.startswith("paper")}
        for row in lines[i + 2:]:
            if not row.startswith("|"):
                break
            cells = [c.strip() for c in row.strip("|").split("|")]
            if not cells[0].isdigit():
                continue
            for m, v in zip(head[1:], cells[1:]):
                if m in cols:
                    cols[m][cells[0]] = float(v)
        out.append((head, cols))
    return out


def auroc_table_report(cols: dict[str, dict[str, float]]) -> str:
    """Markdown: each method's mean with its 95% bootstrap interval over cases, then the paired Wilcoxon
    tests of the :data:`TABLE_COMPARE` methods against each other (``evaluations.stats``)."""
    lines = ["| method | cases | mean edge AUROC | 95% CI |", "|---|---|---|---|"]
    for m, v in cols.items():
        iv = stats.bootstrap_ci({c: [x] for c, x in v.items()})
        lines.append(f"| {m} | {iv.n_cases} | {iv.mean:.3f} | [{iv.low:.3f}, {iv.high:.3f}] |")
    lines += ["", "| a | b | mean a-b | win/tie/loss | p (Wilcoxon) |", "|---|---|---|---|---|"]
    for a, b in itertools.combinations([m for m in TABLE_COMPARE if m in cols], 2):
        p = stats.paired_comparison({c: [x] for c, x in cols[a].items()}, {c: [x] for c, x in cols[b].items()}, (a, b))
        lines.append(f"| {a} | {b} | {p.mean_diff:+.3f} | {p.wins}/{p.ties}/{p.losses} | {p.p_value:.3g} |")
    return "\n".join(lines) + "\n"
