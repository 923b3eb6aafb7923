"""Normalised faithfulness of circuits, and MIB-style faithfulness curves (CPR / CMD).

For a value v of a circuit C (a loss, lower = better, such as the engine's default KL/MSE to the
clean model; or a task metric, higher = better, such as accuracy or logit difference):

    f(C) = (v(C) - v(empty)) / (v(full) - v(empty))

The formula is the same for losses and metrics (negating v leaves it unchanged). With the default
loss, v(full) = 0 (the full mask reproduces the clean model), so f(C) = 1 - L(C) / L(empty).
``empty`` is the all-zero edge mask (every edge ablated: for ``corrupted`` ablation the corrupted run)
and ``full`` the all-one mask. f is not clipped: it can exceed 1 or be negative. When
v(full) == v(empty) f is NaN (and ``reason`` says so).

Curves (:func:`faithfulness_curve`) follow MIB: for each requested fraction p, keep the top
``int(p * n_edges)`` edges (by |score| or by signed score; ties broken by the graph's edge order),
optionally prune dangling edges (``graph.prune``), evaluate every circuit in one batched
``engine.evaluate`` call, and integrate f over the *requested* fractions on a linear axis:
CPR = trapezoid area under f, CMD = trapezoid area under |1 - f|.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch

from core import metrics
from evaluations._common import finite, trapezoid

MIB_FRACTIONS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
POLICIES = ("topk-abs", "topk-signed")
TASK_METRICS = ("loss", "accuracy", "logit_diff")


def task_metric(engine, name: str = "loss") -> Callable[[torch.Tensor], torch.Tensor]:
    """A value function ``logits [K, n, seq, vocab] -> [K]`` for f.

    ``loss``: the engine's default loss (KL / MSE to the clean model). ``accuracy``: argmax accuracy
    against the clean labels (numerical: within 0.05). ``logit_diff``: logit of the clean label minus
    logit of the case's wrong answer (``CaseData.wrong_labels``) where the case has one, else of the
    corrupted label, on positions where they differ (categorical only).
    """
    labels = engine.data.clean_labels.to(engine.device)
    if name == "loss":
        return engine.default_loss()
    if name == "accuracy":
        if engine.output_type == "numerical":
            return lambda logits: metrics.atol_accuracy(logits, labels, engine.mask)
        return lambda logits: metrics.accuracy(logits, labels, engine.mask)
    if name == "logit_diff":
        if engine.output_type != "categorical":
            raise ValueError("logit_diff needs a categorical output")
        if engine.data.wrong_labels is not None:  # the case's own wrong answers (IOI's S, a file case's 'wrong')
            wrong = engine.data.wrong_labels.to(engine.device)
        else:
            wrong = engine.data.corrupted_labels.to(engine.device).clone()
            wrong[wrong == labels] = metrics.IGNORE
        return lambda logits: metrics.logit_diff(logits, labels, wrong, engine.mask)
    raise ValueError(f"unknown metric {name!r}; expected one of {', '.join(TASK_METRICS)}")


def _normalise(v: torch.Tensor, v_full: float, v_empty: float) -> tuple[list[float], str | None]:
    denom = v_full - v_empty
    if not math.isfinite(denom) or abs(denom) <= 1e-12 * max(1.0, abs(v_full), abs(v_empty)):
        return [math.nan] * v.numel(), f"v(full) == v(empty) ({v_full:.6g}): the ablation changes nothing"
    return [float((x - v_empty) / denom) + 0.0 for x in v.tolist()], None


@torch.no_grad()
def circuit_faithfulness(engine, mask: torch.Tensor, loss_fn=None):
    """f(C) of one edge mask ``[E]`` (returns a float) or of K masks ``[K, E]`` (a list of floats).

    ``loss_fn``: any ``logits -> [K]`` value (loss or metric; default ``engine.default_loss()``).
    Everything runs in one batched ``engine.evaluate`` call together with the full and empty masks.
    """
    single = mask.dim() == 1
    masks = mask.unsqueeze(0) if single else mask
    E = engine.graph.n_edges
    masks = masks.to(engine.device, torch.float32)
    allm = torch.cat([masks, torch.ones(1, E, device=engine.device), torch.zeros(1, E, device=engine.device)])
    v = engine.evaluate(allm, loss_fn).float().cpu()
    f, _ = _normalise(v[:-2], float(v[-2]), float(v[-1]))
    return f[0] if single else f


@dataclass
class FaithfulnessCurve:
    fractions: list[float]
    requested: list[int]        # edges asked for at each fraction: int(p * n_edges)
    kept: list[int]             # edges left after pruning
    values: list[float]         # v(C_p): the raw loss or metric
    faithfulness: list[float]   # f(C_p)
    v_full: float
    v_empty: float
    cpr: float                  # trapezoid area under f over the requested fractions (linear axis)
    cmd: float                  # trapezoid area under |1 - f|
    average: float              # mean of f
    policy: str
    prune: bool
    ablation: str
    metric: str
    reason: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        return finite(dict(self.__dict__))

    def __getitem__(self, key):  # dict-style access: curve["cpr"]
        return getattr(self, key)


def edge_score_vector(graph, edge_scores: Mapping[str, float]) -> torch.Tensor:
    """Scores on the graph's edges ``[E]``; unscored edges get NaN. An unsplit name on a split graph
    scores its three q/k/v edges; split names on an unsplit graph merge by largest |score|."""
    vec = torch.full((graph.n_edges,), math.nan, dtype=torch.float64)
    for name, s in edge_scores.items():
        s = float(s)
        idx = [graph.edge_index[name]] if name in graph.edge_index else \
            [graph.edge_index[e] for e in graph.edge_names([name])]
        for i in idx:
            cur = float(vec[i])
            if math.isnan(cur) or abs(s) > abs(cur):
                vec[i] = s
    return vec


def select_top(scores: torch.Tensor, n: int, policy: str = "topk-abs") -> torch.Tensor:
    """0/1 mask of the top ``n`` edges; NaN (unscored) last; ties by edge order (stable sort)."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; expected one of {', '.join(POLICIES)}")
    key = scores.abs() if policy == "topk-abs" else scores.clone()
    key = torch.nan_to_num(key, nan=-math.inf)
    order = torch.sort(key, descending=True, stable=True).indices
    mask = torch.zeros(scores.numel())
    mask[order[:max(0, min(n, scores.numel()))]] = 1.0
    return mask


@torch.no_grad()
def faithfulness_curve(engine, graph, edge_scores: Mapping[str, float] | torch.Tensor,
                       fractions: Sequence[float] = MIB_FRACTIONS, policy: str = "topk-abs",
                       prune: bool = True, metric: str = "loss", loss_fn=None) -> FaithfulnessCurve:
    """f at each fraction of the top-scored edges, with CPR and CMD (see the module doc).

    ``metric``: ``loss`` (default engine loss), ``accuracy`` or ``logit_diff`` (see :func:`task_metric`);
    ``loss_fn`` overrides it. The engine's ablation is recorded in the result.
    """
    fractions = [float(p) for p in fractions]
    if any(b < a for a, b in zip(fractions, fractions[1:])):
        raise ValueError("fractions must be increasing")
    if isinstance(edge_scores, torch.Tensor):
        vec = edge_scores.detach().double().cpu().flatten()
        if vec.numel() != graph.n_edges:
            raise ValueError(f"{vec.numel()} scores for {graph.n_edges} edges")
    else:
        vec = edge_score_vector(graph, edge_scores)
    E = graph.n_edges
    requested = [int(p * E) for p in fractions]
    masks = []
    for n in requested:
        m = select_top(vec, n, policy)
        masks.append(graph.prune(m) if prune else m)
    kept = [int(m.sum()) for m in masks]
    fn = loss_fn or task_metric(engine, metric)
    allm = torch.stack(masks + [torch.ones(E), torch.zeros(E)]).to(engine.device)
    v = engine.evaluate(allm, fn).float().cpu()
    v_full, v_empty = float(v[-2]), float(v[-1])
    f, reason = _normalise(v[:-2], v_full, v_empty)
    cpr = trapezoid(fractions, f) if not reason else math.nan
    cmd = trapezoid(fractions, [abs(1 - x) for x in f]) if not reason else math.nan
    return FaithfulnessCurve(fractions, requested, kept, [float(x) for x in v[:-2].tolist()], f, v_full, v_empty,
                             cpr, cmd, (sum(f) / len(f)) if f and not reason else math.nan, policy, prune,
                             engine.ablation, "custom" if loss_fn else metric, reason,
                             info={"n_edges": E, "axis": "requested fraction, linear",
                                   "n_unscored": int(torch.isnan(vec).sum())})
