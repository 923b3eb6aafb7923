"""Agreement of a method's per-edge scores with exact patching, and overlap between circuits.

Score agreement (:func:`score_agreement`), for a method's scores ``s_M`` and the exact patching scores
``s_X`` on the same edges (both in the graph's edge order):

* **top-k overlap first** (reference §1.6: global rank statistics over all edges are dominated by the
  many near-zero edges, so lead with top-k measures). ``overlap@k = |top_k(M) ∩ T_k(X)| / k`` where
  ``top_k(M)`` are the method's k highest edges (ties broken by edge order) and ``T_k(X)`` is the
  exact top-k *with ties*: every edge whose exact value is at least the k-th largest exact value
  (minus a tolerance of ``tie_tol * max|s_X|``); the count is capped at k. The reference side is
  tie-aware because exact scores of compiled (Tracr) models have many exact ties (often at 0), where
  an arbitrary tie-break would punish a method for nothing. k takes the values ``ceil(p * E)`` for
  ``p`` in ``fractions`` (default 1 %, 5 %, 10 %, 20 %) and ``k_eff`` = the number of edges whose
  exact effect is non-negligible, ``|s_X| > rel_tol * max|s_X|`` (default ``rel_tol`` = 0.01, i.e.
  1 % of the largest effect). ``AO@k`` (average overlap, (1/k) Σ_{i<=k} overlap@i) is reported at
  ``k_eff`` too.
* Pearson r, Spearman ρ and Kendall τ-b over all edges, and Kendall τ-b restricted to the exact top
  ``k_eff`` edges (report the global τ with the warning above; do not gate on it).
* ``score_floor`` (off by default): every ``|s| <= score_floor * max|s|`` of either side is set to 0
  before any statistic, the float-dust rule of :func:`evaluations.roc.floored_edge_roc`. Exact
  patching's "no effect" is ``metric(patched) - metric(clean)`` of two forwards that differ in summation
  order, so its zeros come out as ±1e-15 dust in float64 while a gradient method's are exact zeros; the
  rank statistics (Spearman, Kendall) would rank that dust. The floor used is in the output.

Everything is computed on absolute values by default (``signed=False``: ranking by |effect|, as
circuit selection does); ``signed=True`` compares the signed scores (top-k then takes the largest
signed values). Undefined statistics (constant vectors, fewer than two edges, k_eff = 0) are NaN,
with the reason under ``reasons``.

Circuit overlap (:func:`circuit_overlap`): node IoU (``input``, ``pos`` and ``logits`` excluded),
edge IoU, the directional recalls ``|a∩b|/|a|`` and ``|a∩b|/|b|``, and, given the number of edges
in the graph, the hypergeometric p-value ``P(X >= |a∩b|)`` of an overlap at least this large for
random circuits of the same sizes (the reference's script computes ``P(X > x)``, an off-by-one).

Imports only ``core``, numpy and scipy.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from core.circuit import ENDPOINTS, Circuit
from core.results import floor_dust

TOPK_FRACTIONS = (0.01, 0.05, 0.1, 0.2)
REL_TOL = 0.01
TIE_TOL = 1e-9


def as_vector(scores: Any, edges: Sequence[str] | None = None) -> np.ndarray:
    """A float64 vector from an array / tensor / list, or from ``{edge: score}`` in ``edges`` order
    (missing edges -> NaN)."""
    if isinstance(scores, Mapping):
        if edges is None:
            raise ValueError("scores given as a mapping need the edge order (edges=...)")
        return np.array([float(scores.get(e, math.nan)) for e in edges], dtype=np.float64)
    if hasattr(scores, "detach"):
        scores = scores.detach().cpu().double().numpy()
    return np.asarray(scores, dtype=np.float64).reshape(-1)


def _constant(x: np.ndarray) -> bool:
    return x.size < 2 or bool(np.all(x == x[0]))


def _corr(kind: str, a: np.ndarray, b: np.ndarray) -> tuple[float, str | None]:
    from scipy import stats

    if a.size < 2:
        return math.nan, f"{kind}: fewer than two edges"
    if _constant(a) or _constant(b):
        which = "method" if _constant(a) else "exact"
        return math.nan, f"{kind}: the {which} scores are constant"
    if kind == "pearson":
        a0, b0 = a - a.mean(), b - b.mean()
        den = math.sqrt(float((a0 ** 2).sum()) * float((b0 ** 2).sum()))
        return (float((a0 * b0).sum() / den) if den > 0 else math.nan), (None if den > 0 else f"{kind}: zero variance")
    if kind == "spearman":
        return float(stats.spearmanr(a, b).statistic), None
    return float(stats.kendalltau(a, b, variant="b").statistic), None


def _floored(x: np.ndarray, rel: float) -> np.ndarray:
    """``x`` with every ``|x| <= rel * max|x|`` set to 0 (the float-dust rule, ``core.results.floor_dust``)."""
    return np.asarray(floor_dust(x.tolist(), rel), dtype=float)


def top_k(x: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values (NaN last, ties by index order)."""
    key = np.where(np.isnan(x), -np.inf, x)
    order = np.argsort(-key, kind="stable")
    return order[:max(0, min(k, x.size))]


def topk_overlap(method: np.ndarray, exact: np.ndarray, k: int, tie_tol: float = TIE_TOL) -> float:
    """``|top_k(method) ∩ T_k(exact)| / k`` with the exact side tie-aware (see the module doc)."""
    if k <= 0 or exact.size == 0:
        return math.nan
    k = min(k, exact.size)
    ex = np.where(np.isnan(exact), -np.inf, exact)
    kth = np.sort(ex)[::-1][k - 1]
    scale = float(np.nanmax(np.abs(exact))) if np.isfinite(exact).any() else 0.0
    ref = ex >= kth - tie_tol * max(scale, 1e-300)
    hits = int(ref[top_k(method, k)].sum())
    return min(hits, k) / k


def average_overlap(method: np.ndarray, exact: np.ndarray, k: int, tie_tol: float = TIE_TOL) -> float:
    """AO@k = (1/k) Σ_{i=1..k} overlap@i (reference §1.6)."""
    if k <= 0:
        return math.nan
    return float(np.mean([topk_overlap(method, exact, i, tie_tol) for i in range(1, min(k, exact.size) + 1)]))


def score_agreement(method: Any, exact: Any, edges: Sequence[str] | None = None, *, signed: bool = False,
                    fractions: Sequence[float] = TOPK_FRACTIONS, rel_tol: float = REL_TOL,
                    tie_tol: float = TIE_TOL, score_floor: float | None = None) -> dict[str, Any]:
    """Agreement of a method's edge scores with exact patching scores (see the module doc).

    ``method``/``exact``: vectors in the same edge order, or ``{edge: score}`` with ``edges``.
    Edges that either side did not score (NaN) are dropped (their count is reported).
    """
    a, b = as_vector(method, edges), as_vector(exact, edges)
    if a.shape != b.shape:
        raise ValueError(f"{a.size} method scores vs {b.size} exact scores")
    ok = ~(np.isnan(a) | np.isnan(b))
    a, b = a[ok], b[ok]
    if score_floor is not None:
        a, b = _floored(a, score_floor), _floored(b, score_floor)
    if not signed:
        a, b = np.abs(a), np.abs(b)
    E = int(a.size)
    reasons: dict[str, str] = {}
    out: dict[str, Any] = {"n_edges": E, "n_dropped": int((~ok).sum()), "signed": bool(signed),
                           "rel_tol": rel_tol, "score_floor": score_floor}
    for kind in ("pearson", "spearman", "kendall"):
        v, why = _corr(kind, a, b)
        out[kind] = v
        if why:
            reasons[kind] = why
    scale = float(np.abs(b).max()) if E else 0.0
    k_eff = int((np.abs(b) > rel_tol * scale).sum()) if scale > 0 else 0
    out["k_eff"] = k_eff
    topk = []
    for p in fractions:
        k = max(1, math.ceil(p * E)) if E else 0
        topk.append({"k": k, "fraction": float(p), "overlap": topk_overlap(a, b, k, tie_tol)})
    out["topk"] = topk
    if k_eff > 0:
        out["topk_eff"] = topk_overlap(a, b, k_eff, tie_tol)
        out["ao_eff"] = average_overlap(a, b, k_eff, tie_tol)
        idx = top_k(b, k_eff)
        v, why = _corr("kendall", a[idx], b[idx])
        out["kendall_top_eff"] = v
        if why:
            reasons["kendall_top_eff"] = why + f" (on the exact top {k_eff})"
    else:
        out["topk_eff"] = out["ao_eff"] = out["kendall_top_eff"] = math.nan
        reasons["topk_eff"] = "no edge has a non-negligible exact effect"
    out["mean_abs_diff"] = float(np.abs(a - b).mean()) if E else math.nan
    out["reasons"] = reasons
    return out


# ---- circuits ---------------------------------------------------------------------------------------------
def _edges_nodes(c: Circuit | Iterable[str]) -> tuple[frozenset[str], frozenset[str]]:
    if isinstance(c, Circuit):
        return frozenset(c.edges), frozenset(c.nodes) - ENDPOINTS
    edges = frozenset(c)
    return edges, frozenset(Circuit.from_edges(edges).nodes) - ENDPOINTS


def _ratio(num: int, den: int) -> float:
    return num / den if den else math.nan


def circuit_overlap(a: Circuit | Iterable[str], b: Circuit | Iterable[str],
                    n_edges: int | None = None) -> dict[str, Any]:
    """Node IoU (endpoints excluded), edge IoU, directional recalls and (with ``n_edges``, the graph's edge
    count) the hypergeometric p-value P(X >= |a∩b|). Circuits or iterables of edge names. IoU of two
    empty sets is NaN."""
    ea, na = _edges_nodes(a)
    eb, nb = _edges_nodes(b)
    inter = len(ea & eb)
    out = {"edges_a": len(ea), "edges_b": len(eb), "edges_both": inter,
           "edge_iou": _ratio(inter, len(ea | eb)), "node_iou": _ratio(len(na & nb), len(na | nb)),
           "recall_a": _ratio(inter, len(ea)),   # |a∩b| / |a|: how much of a is in b
           "recall_b": _ratio(inter, len(eb)),   # |a∩b| / |b|
           "p_value": math.nan}
    if n_edges is not None and n_edges > 0:
        from scipy import stats

        out["p_value"] = float(stats.hypergeom.sf(inter - 1, n_edges, len(ea), len(eb)))
    return out
