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
``int(p * n_edges)`` edges (by |score| or by signed score; ties broken by the graph's edge order; or
the reference's greedy growth from the logits: ``evaluations.selection``), optionally prune dangling edges (``graph.prune``), evaluate every circuit in one batched
``engine.evaluate`` call, and integrate f over the *requested* fractions on a linear axis:
CPR = trapezoid area under f, CMD = trapezoid area under |1 - f|.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch

from core import metrics
from core.results import finite
from evaluations.selection import POLICIES, circuit_masks, edge_score_vector, select_top

__all__ = ["MIB_FRACTIONS", "POLICIES", "TASK_METRICS", "FaithfulnessCurve", "MaskValues", "circuit_faithfulness",
           "cpr_cmd", "edge_score_vector", "edges_to_reach", "evaluate_masks", "faithfulness_curve", "normalise",
           "select_top", "task_metric", "trapezoid"]

MIB_FRACTIONS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
TASK_METRICS = ("loss", "accuracy", "logit_diff")


def trapezoid(x: Sequence[float], y: Sequence[float]) -> float:
    """Trapezoid area under y(x), x in the given (sorted) order; 0 for fewer than two points."""
    return float(sum((x[i + 1] - x[i]) * (y[i] + y[i + 1]) / 2 for i in range(len(x) - 1)))


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


def normalise(v: torch.Tensor, v_full: float, v_empty: float) -> tuple[list[float], str | None]:
    """f of each value in ``v`` given v(full) and v(empty) (the module doc's formula), and why f is NaN
    (None when it is defined)."""
    denom = v_full - v_empty
    if not math.isfinite(denom) or abs(denom) <= 1e-12 * max(1.0, abs(v_full), abs(v_empty)):
        return [math.nan] * v.numel(), f"v(full) == v(empty) ({v_full:.6g}): the ablation changes nothing"
    return [float((x - v_empty) / denom) + 0.0 for x in v.tolist()], None


@dataclass
class MaskValues:
    """The values of K circuits and their normalised faithfulness (:func:`evaluate_masks`)."""

    f: list[float]
    values: list[float]
    v_full: float
    v_empty: float
    reason: str | None = None

    def __getitem__(self, key):  # dict-style access: ev["f"]
        return getattr(self, key)


@torch.no_grad()
def evaluate_masks(engine, masks: Sequence[torch.Tensor] | torch.Tensor, metric: str = "loss", loss_fn=None,
                   dtype: torch.dtype = torch.float64) -> MaskValues:
    """v and f of each edge mask, in one batched ``engine.evaluate`` call together with the full and empty
    masks. ``metric``: see :func:`task_metric`; ``loss_fn`` overrides it. Values are read back as
    ``dtype`` (the study reads float64, the curves and :func:`circuit_faithfulness` float32)."""
    E = engine.graph.n_edges
    stacked = torch.stack([m.float() for m in masks]) if not isinstance(masks, torch.Tensor) else masks.float()
    allm = torch.cat([stacked.cpu(), torch.ones(1, E), torch.zeros(1, E)]).to(engine.device)
    v = engine.evaluate(allm, loss_fn or task_metric(engine, metric)).to(dtype).cpu()
    v_full, v_empty = float(v[-2]), float(v[-1])
    f, reason = normalise(v[:-2], v_full, v_empty)
    return MaskValues(f, [float(x) for x in v[:-2].tolist()], v_full, v_empty, reason)


@torch.no_grad()
def circuit_faithfulness(engine, mask: torch.Tensor, loss_fn=None):
    """f(C) of one edge mask ``[E]`` (returns a float) or of K masks ``[K, E]`` (a list of floats).

    ``loss_fn``: any ``logits -> [K]`` value (loss or metric; default ``engine.default_loss()``).
    Everything runs in one batched ``engine.evaluate`` call together with the full and empty masks.
    """
    single = mask.dim() == 1
    masks = mask.unsqueeze(0) if single else mask
    f = evaluate_masks(engine, masks, loss_fn=loss_fn or engine.default_loss(), dtype=torch.float32).f
    return f[0] if single else f


def _area(x: Sequence[float], y: Sequence[float]) -> float:
    """:func:`trapezoid`, NaN when a value is not finite (f undefined somewhere)."""
    return trapezoid(x, y) if all(math.isfinite(v) for v in y) else math.nan


def cpr_cmd(f: Sequence[float], fractions: Sequence[float] = MIB_FRACTIONS) -> tuple[float, float]:
    """MIB's CPR (area under f) and CMD (area under |1 - f|) over the requested ``fractions`` (linear axis)."""
    return _area(fractions, f), _area(fractions, [abs(1 - x) for x in f])


def edges_to_reach(kept: Sequence[int], f: Sequence[float], target: float) -> int | None:
    """Fewest kept edges among the curve's points with f >= target (None if never)."""
    hits = [k for k, x in zip(kept, f) if math.isfinite(x) and x >= target]
    return min(hits) if hits else None


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
    masks = circuit_masks(graph, vec, requested, policy, prune)
    kept = [int(m.sum()) for m in masks]
    ev = evaluate_masks(engine, masks, metric, loss_fn, dtype=torch.float32)
    f, reason = ev.f, ev.reason
    cpr, cmd = cpr_cmd(f, fractions) if not reason else (math.nan, math.nan)
    return FaithfulnessCurve(fractions, requested, kept, ev.values, f, ev.v_full, ev.v_empty,
                             cpr, cmd, (sum(f) / len(f)) if f and not reason else math.nan, policy, prune,
                             engine.ablation, "custom" if loss_fn else metric, reason,
                             info={"n_edges": E, "axis": "requested fraction, linear",
                                   "n_unscored": int(torch.isnan(vec).sum())})
