"""ROC curves of a method's scores or sweep against a ground-truth circuit.

Conventions (also in the README of the evaluations):

* **Scores** (:func:`roc_from_scores`): every distinct score is a threshold (scikit-learn's
  ``roc_curve(drop_intermediate=False)``); a name is predicted positive when its score is >= the
  threshold. Names of the universe that are missing from ``scores`` (or whose score is NaN) rank
  **below every scored name** (score ``-inf``), all tied with each other. Ties form one ROC point
  (a diagonal segment), so the trapezoid AUROC counts a tied positive/negative pair as 1/2, exactly
  ``roc_auc_score``. ``absolute=True`` ranks by ``|score|``.
* **Sweeps** (:func:`roc_from_sweep`): one (FPR, TPR) point per circuit, closed with (0, 0) and
  (1, 1), sorted by FPR then TPR; AUROC is the trapezoid over those points.
* ``pessimistic_auc`` (InterpBench / ACDC): drop non-Pareto points (scanning by FPR then TPR, a
  point whose TPR is below the last kept one is dropped), close with (0, 0) and (1, 1), then the
  staircase area ``sum_i (1 - x_i) * (y_i - y_{i-1})`` that credits a TPR gain only from its FPR on.
* Degenerate truths (no positive or no negative in the universe) give NaN AUCs and a ``reason``.
* **q/k/v**: when the ground truth and the scores are not both split, the three ``<q>/<k>/<v>``
  receivers are merged into one name whose score is the one with the largest ``|score|`` (sign kept;
  with ``absolute=True`` this is ``max |score|``), as the interface contract says.
* **Nodes from edges**: without node scores, a node's score is the largest ``|score|`` of the edges
  it sends or receives (the node is in the circuit thresholded at t iff one of its edges is).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from core.circuit import ENDPOINTS, Circuit
from core.naming import merge_qkv, parse_edge
from core.results import finite, floor_dust
from evaluations.faithfulness import trapezoid

NAN = float("nan")


# ---- the curve ----------------------------------------------------------------------------------------
@dataclass
class RocCurve:
    fpr: list[float]
    tpr: list[float]
    auroc: float
    pessimistic_auc: float
    n_pos: int
    n_neg: int
    thresholds: list[float] | None = None   # from scores: the threshold of each point (inf for (0, 0))
    params: list[float | None] | None = None  # from a sweep: each point's hyper-parameter (None: closure)
    reason: str | None = None                # why the AUCs are NaN, else None
    source: str = "scores"                   # "scores" | "sweep"
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        """Plain JSON (NaN and inf become null), in the ``result.json`` ``roc`` layout."""
        d = {"fpr": self.fpr, "tpr": self.tpr, "auroc": self.auroc, "pessimistic_auc": self.pessimistic_auc,
             "n_pos": self.n_pos, "n_neg": self.n_neg, "source": self.source, "reason": self.reason}
        if self.thresholds is not None:
            d["thresholds"] = self.thresholds
        if self.params is not None:
            d["params"] = self.params
        if self.info:
            d["info"] = self.info
        return finite(d)


# ---- areas ----------------------------------------------------------------------------------------------
def pareto_front(xs: Sequence[float], ys: Sequence[float]) -> tuple[list[float], list[float]]:
    """Sort by (x, y) and drop every point whose y is below the last kept point's y."""
    pts = sorted(zip(map(float, xs), map(float, ys)))
    out_x, out_y = [], []
    for x, y in pts:
        if out_y and y < out_y[-1]:
            continue
        out_x.append(x)
        out_y.append(y)
    return out_x, out_y


def pessimistic_auc(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Staircase area ``sum_i (1 - x_i) (y_i - y_{i-1})`` over points sorted by (x, y).

    The points must already be monotone (use :func:`pareto_front` first); they are not closed here,
    so pass (0, 0) and (1, 1) yourself. ``pessimistic_auc([0, 0.5, 1], [0, 0.5, 1]) == 0.25``.
    """
    if len(xs) != len(ys):
        raise ValueError(f"xs and ys differ in length ({len(xs)} vs {len(ys)})")
    order = np.lexsort((np.asarray(ys, float), np.asarray(xs, float)))
    x = np.asarray(xs, float)[order]
    y = np.asarray(ys, float)[order]
    dy = np.diff(y)
    if np.any(dy < 0):
        raise ValueError("pessimistic_auc needs y non-decreasing in x (drop non-Pareto points first)")
    return float(np.sum((1.0 - x[1:]) * dy))


def _staircase(fpr: Sequence[float], tpr: Sequence[float]) -> float:
    px, py = pareto_front(list(fpr) + [0.0, 1.0], list(tpr) + [0.0, 1.0])
    return pessimistic_auc(px, py)


def _degenerate(n_pos: int, n_neg: int) -> str | None:
    if n_pos == 0 and n_neg == 0:
        return "empty universe"
    if n_pos == 0:
        return "the ground truth has no positives in the universe (TPR undefined)"
    if n_neg == 0:
        return "every name of the universe is in the ground truth (FPR undefined)"
    return None


def _check_names(truth: set[str], universe: list[str], what: str) -> None:
    unknown = set(truth) - set(universe)
    if unknown:
        raise ValueError(f"{what} names outside the universe: {sorted(unknown)[:5]}")


# ---- ROC from scores and from sweeps --------------------------------------------------------------------
def roc_from_scores(scores: Mapping[str, float], truth: Iterable[str], universe: Sequence[str],
                    absolute: bool = True) -> RocCurve:
    """ROC of thresholding ``scores`` (higher = more important) against ``truth`` over ``universe``.

    Missing (or NaN) names rank below every scored name. Names in ``scores`` or ``truth`` that are not
    in ``universe`` raise ``ValueError``.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    universe = list(dict.fromkeys(universe))
    truth = set(truth)
    _check_names(truth, universe, "ground-truth")
    _check_names(set(scores), universe, "scored")
    raw = np.array([float(scores.get(n, NAN)) for n in universe], dtype=float)
    if absolute:
        raw = np.abs(raw)
    missing = ~np.isfinite(raw) & ~(raw == np.inf)
    finite = raw[~missing & np.isfinite(raw)]
    floor = (finite.min() if finite.size else 0.0) - 1.0
    vals = np.where(missing, floor, raw)
    vals = np.where(vals == np.inf, np.finfo(float).max, vals)
    vals = np.where(vals == -np.inf, floor, vals)
    y = np.array([n in truth for n in universe], dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    info = {"absolute": absolute, "n_missing": int(missing.sum()), "missing_score": "-inf (below every scored name)"}
    reason = _degenerate(n_pos, n_neg)
    if reason:
        return RocCurve([], [], NAN, NAN, n_pos, n_neg, thresholds=[], reason=reason, source="scores", info=info)
    fpr, tpr, thr = roc_curve(y, vals, drop_intermediate=False)
    thr = [(-math.inf if t == floor and missing.any() else float(t)) for t in thr]
    fpr, tpr = [float(v) for v in fpr], [float(v) for v in tpr]
    return RocCurve(fpr, tpr, float(roc_auc_score(y, vals)), _staircase(fpr, tpr), n_pos, n_neg,
                    thresholds=thr, source="scores", info=info)


def roc_from_sweep(circuits: Sequence[tuple[float, Iterable[str]]], truth: Iterable[str],
                   universe: Sequence[str]) -> RocCurve:
    """One (FPR, TPR) point per (param, predicted names) pair, closed at (0, 0) and (1, 1)."""
    universe = list(dict.fromkeys(universe))
    uni, truth = set(universe), set(truth)
    _check_names(truth, universe, "ground-truth")
    n_pos, n_neg = len(truth), len(uni) - len(truth)
    reason = _degenerate(n_pos, n_neg)
    if reason:
        return RocCurve([], [], NAN, NAN, n_pos, n_neg, params=[], reason=reason, source="sweep")
    pts = [(0.0, 0.0, None), (1.0, 1.0, None)]
    for param, names in circuits:
        names = set(names)
        _check_names(names, universe, "predicted")
        tp, fp = len(names & truth), len(names - truth)
        pts.append((fp / n_neg, tp / n_pos, None if param is None else float(param)))
    pts.sort(key=lambda p: (p[0], p[1]))
    fpr, tpr, params = [p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts]
    return RocCurve(fpr, tpr, trapezoid(fpr, tpr), _staircase(fpr, tpr), n_pos, n_neg,
                    params=params, source="sweep")


# ---- from a method's output ----------------------------------------------------------------------------
def _get(output: Any, key: str):
    """``output.edge_scores`` / ``output["edge_scores"]`` / result.json ``output["scores"]["edges"]``."""
    if isinstance(output, Mapping):
        if key in output:
            return output[key]
        alias = {"edge_scores": "edges", "node_scores": "nodes"}.get(key)
        if alias and isinstance(output.get("scores"), Mapping):
            return output["scores"].get(alias)
        return None
    return getattr(output, key, None)


def _absolute_default(output: Any, absolute: bool | None) -> bool:
    if absolute is not None:
        return absolute
    info = _get(output, "info") or {}
    return bool(info.get("absolute", True)) if isinstance(info, Mapping) else True


def _sweep_circuits(sweep) -> list[tuple[float, Circuit]]:
    out = []
    for param, c in sweep or []:
        if isinstance(c, Mapping):
            c = Circuit.from_json(c)
        elif not isinstance(c, Circuit):
            c = Circuit.from_edges(c)
        out.append((param, c))
    return out


def merge_qkv_scores(scores: Mapping[str, float]) -> dict[str, float]:
    """Merge ``<q>/<k>/<v>`` receivers: the merged score is the one with the largest ``|score|``."""
    out: dict[str, float] = {}
    for name, s in scores.items():
        m = merge_qkv(name)
        s = float(s)
        if m not in out or (math.isnan(out[m]) and not math.isnan(s)) or abs(s) > abs(out[m]):
            out[m] = s
    return out


def _should_merge(truth: Circuit, scored_split: bool, merge: bool | None) -> bool:
    if merge is not None:
        return merge
    return not (truth.is_split and scored_split)


def edge_roc(output: Any, truth: Circuit, graph, absolute: bool | None = None,
             merge: bool | None = None) -> RocCurve:
    """Edge ROC of a method output (``MethodOutput``, a dict with ``edge_scores``/``sweep``, or a
    result document with ``scores.edges``) against ``truth`` over ``graph.edges``.

    Scores win over a sweep when both are present. ``merge``: force (True) or forbid (False) q/k/v
    merging; by default merge unless both the truth and the scores are split.
    """
    absolute = _absolute_default(output, absolute)
    scores, sweep = _get(output, "edge_scores"), _sweep_circuits(_get(output, "sweep"))
    universe = list(graph.edges)
    if scores:
        scored_split = any(parse_edge(e).qkv for e in scores)
        if _should_merge(truth, scored_split, merge):
            universe = list(dict.fromkeys(merge_qkv(e) for e in universe))
            scores, t = merge_qkv_scores(scores), truth.merged()
        else:
            t = truth
        roc = roc_from_scores(scores, t.edges, universe, absolute=absolute)
        roc.info["merged_qkv"] = t is not truth
        return roc
    if sweep:
        scored_split = any(c.is_split for _, c in sweep)
        do = _should_merge(truth, scored_split, merge)
        if do:
            universe = list(dict.fromkeys(merge_qkv(e) for e in universe))
            truth, sweep = truth.merged(), [(p, c.merged()) for p, c in sweep]
        roc = roc_from_sweep([(p, c.edges) for p, c in sweep], truth.edges, universe)
        roc.info["merged_qkv"] = do
        return roc
    return RocCurve([], [], NAN, NAN, 0, 0, reason="the output has neither edge scores nor a sweep")


def node_scores_from_edges(edge_scores: Mapping[str, float]) -> dict[str, float]:
    """A node's score: the largest ``|score|`` of the edges it sends or receives."""
    out: dict[str, float] = {}
    for name, s in edge_scores.items():
        s = abs(float(s))
        if math.isnan(s):
            continue
        p = parse_edge(name)
        for n in (p.sender, p.receiver):
            out[n] = max(out.get(n, -math.inf), s)
    return out


def node_roc(output: Any, truth: Circuit, graph, include_endpoints: bool = True,
             absolute: bool | None = None) -> RocCurve:
    """Node ROC: node scores if the output has them, else node scores from edge scores
    (:func:`node_scores_from_edges`), else the nodes of each sweep circuit.

    ``include_endpoints=False`` drops ``input``/``pos``/``logits`` from the universe, the truth and
    the predictions (they are in every non-empty circuit and inflate the TPR).
    """
    absolute = _absolute_default(output, absolute)
    universe = list(graph.nodes)
    if not include_endpoints:
        universe = [n for n in universe if n not in ENDPOINTS]
    keep = set(universe)
    t = set(truth.nodes) & keep if not include_endpoints else set(truth.nodes)
    nscores, escores = _get(output, "node_scores"), _get(output, "edge_scores")
    sweep = _sweep_circuits(_get(output, "sweep"))
    if nscores or escores:
        derived = not nscores
        scores = node_scores_from_edges(escores) if derived else dict(nscores)
        scores = {n: s for n, s in scores.items() if n in keep}
        if not derived and include_endpoints and scores:
            # methods score heads and MLPs; input/pos/logits belong to every circuit: rank them first
            top = max(abs(v) for v in scores.values() if not math.isnan(v)) + 1.0
            scores.update({n: top for n in ENDPOINTS & keep if n not in scores})
        roc = roc_from_scores(scores, t, universe, absolute=absolute or derived)
        roc.info.update(node_scores="from edge scores (max |edge score|)" if derived else "method node scores",
                        include_endpoints=include_endpoints)
        return roc
    if sweep:
        roc = roc_from_sweep([(p, set(c.nodes) & keep) for p, c in sweep], t, universe)
        roc.info["include_endpoints"] = include_endpoints
        return roc
    return RocCurve([], [], NAN, NAN, 0, 0, reason="the output has neither scores nor a sweep")


DEFAULT_SCORE_FLOOR = 1e-6


def floored_edge_roc(doc: Mapping[str, Any], rel: float = DEFAULT_SCORE_FLOOR) -> RocCurve | None:
    """The edge ROC of a result document's scores with every ``|score| <= rel * max |score|`` set to 0,
    so that float dust (gradients of 1e-10 through saturated tracr MLPs) ties with the exact zeros
    instead of ranking above them. q/k/v are merged first when the stored ROC merged them (as
    :func:`edge_roc` does). None for ROCs built from a sweep (ACDC, SP): they have no scores to floor."""
    roc = (doc.get("roc") or {}).get("edges") or {}
    if roc.get("source") != "scores" or not (doc.get("scores") or {}).get("edges"):
        return None
    info = roc.get("info") or {}
    scores = {k: (math.nan if v is None else float(v)) for k, v in doc["scores"]["edges"].items()}
    truth = list(doc["ground_truth"]["edges"])
    if info.get("merged_qkv"):
        scores = merge_qkv_scores(scores)
        truth = list(dict.fromkeys(merge_qkv(e) for e in truth))
    floored = dict(zip(scores, floor_dust(scores.values(), rel)))
    return roc_from_scores(floored, truth, list(scores), absolute=info.get("absolute", True))
