"""Metrics over the positions a case scores (``mask``), with the reduction made explicit.

Every function takes logits ``[..., n, seq, vocab]`` (leading dims, e.g. one per circuit, are kept)
and a boolean ``mask [n, seq]``; the reduction is the mean over masked positions (each masked
position counts once, whatever the number per row). Categorical labels use -100 for "no label",
numerical labels NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

IGNORE = -100


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x [..., n, seq]`` over the positions where ``mask [n, seq]`` is true."""
    m = mask.to(x.dtype)
    return (x * m).sum((-2, -1)) / m.sum().clamp_min(1)


def kl_divergence(logits: torch.Tensor, ref_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(ref || model) per position, averaged over masked positions. ``ref`` is usually the clean model."""
    logp = F.log_softmax(logits.float(), -1)
    ref_logp = F.log_softmax(ref_logits.float(), -1)
    kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1)
    return masked_mean(kl, mask)


def _squeeze_numerical(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``[..., n, seq, 1]`` numerical logits -> ``[..., n, seq]``."""
    if outputs.shape[-1] == 1 and tuple(outputs.shape[-3:-1]) == tuple(targets.shape[-2:]):
        return outputs[..., 0]
    return outputs


def mse(outputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Squared error of numerical outputs (``[..., n, seq, 1]`` logits or ``[..., n, seq]``) against
    targets ``[n, seq]`` (NaN = no target), averaged over masked positions that have a target."""
    outputs = _squeeze_numerical(outputs, targets)
    keep = mask & ~torch.isnan(targets)
    err = (outputs.float() - torch.nan_to_num(targets.float())) ** 2
    return masked_mean(err, keep)


def accuracy(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Fraction of masked, labelled positions whose argmax is the label."""
    keep = mask & (labels != IGNORE)
    return masked_mean((logits.argmax(-1) == labels).float(), keep)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean negative log-probability of the label over masked, labelled positions."""
    keep = mask & (labels != IGNORE)
    logp = F.log_softmax(logits.float(), -1)
    nll = -logp.gather(-1, labels.clamp_min(0).expand(logits.shape[:-1]).unsqueeze(-1))[..., 0]
    return masked_mean(nll, keep)


def atol_accuracy(outputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, atol: float = 0.05) -> torch.Tensor:
    """Fraction of masked positions whose numerical output is within ``atol`` of the target."""
    outputs = _squeeze_numerical(outputs, targets)
    keep = mask & ~torch.isnan(targets)
    return masked_mean(((outputs - targets).abs() < atol).float(), keep)


def logit_diff(logits: torch.Tensor, labels: torch.Tensor, wrong: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of logit[label] - logit[wrong] over masked positions (e.g. IOI: IO minus S)."""
    keep = mask & (labels != IGNORE) & (wrong != IGNORE)
    lab = labels.clamp_min(0).expand(logits.shape[:-1]).unsqueeze(-1)
    wr = wrong.clamp_min(0).expand(logits.shape[:-1]).unsqueeze(-1)
    d = logits.gather(-1, lab)[..., 0] - logits.gather(-1, wr)[..., 0]
    return masked_mean(d, keep)


def faithfulness_loss(logits: torch.Tensor, ref_logits: torch.Tensor, mask: torch.Tensor, output_type: str) -> torch.Tensor:
    """The default loss a discovery method minimises: KL to the reference (categorical) or MSE (numerical)."""
    if output_type == "categorical":
        return kl_divergence(logits, ref_logits, mask)
    if output_type == "numerical":
        return masked_mean(((logits.float() - ref_logits.float()) ** 2).sum(-1), mask)
    raise ValueError(f"unknown output type {output_type!r} (expected categorical or numerical)")


# ---------------------------------------------------------------------------------------------------
# The losses attribution methods (EAP, EAP-IG, AtP*, node attribution) differentiate. These keep the
# model's precision when it is float64 (:func:`wide`), so exactness tests are not limited by the metric.
# ---------------------------------------------------------------------------------------------------

ATTRIBUTION_METRICS = ("auto", "ce", "kl", "mse", "logit")
LossFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class AttributionLoss:
    fn: LossFn          # logits [K, n, pos, vocab] -> [K]
    name: str           # the resolved metric ("ce", "kl", "mse", "logit", "task-ce", "task-mse", "logit-diff")
    description: str


def wide(x: torch.Tensor) -> torch.Tensor:
    """At least float32 (float64 models keep float64, so exactness tests are not limited by the metric)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def target_cross_entropy(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """:func:`cross_entropy`, in the model's precision when that is float64."""
    keep = mask & (target != IGNORE)
    logp = torch.log_softmax(wide(logits), -1)
    nll = -logp.gather(-1, target.clamp_min(0).expand(logits.shape[:-1]).unsqueeze(-1))[..., 0]
    return masked_mean(nll, keep)


def check_attribution_metric(metric: str) -> str:
    if metric not in ATTRIBUTION_METRICS:
        raise ValueError(f"unknown attribution_metric {metric!r}; expected one of {', '.join(ATTRIBUTION_METRICS)}")
    return metric


def _ablated_logits(engine) -> torch.Tensor:
    """The model's output with every edge ablated (the corrupted run for resample ablation)."""
    if engine.corrupted_logits is not None:
        return engine.corrupted_logits
    with torch.no_grad():
        return engine.run(torch.zeros(engine.graph.n_edges, device=engine.device))[0]


def attribution_loss(problem: Any, metric: str = "auto") -> AttributionLoss:
    """The loss attribution methods attribute, ``logits -> [K]``, lower = closer to the clean model.
    ``problem`` is a :class:`core.protocols.Problem` (not imported: protocols sits above metrics).

    ``auto``: the problem's own loss when ``problem.metric`` is ``task`` (CE / MSE to the labels) or
    ``logit-diff`` (minus the answer-vs-wrong-answer logit difference);
    otherwise ``ce`` for categorical and ``logit`` for numerical outputs.
    ``ce``: mean -log p(target) over scored positions; target = the label for the task metric, the clean
    model's argmax otherwise. ``kl`` / ``mse``: KL / squared error to the clean output (the faithfulness
    losses; their gradient vanishes at the clean point, so plain EAP scores are ~0 with them).
    ``logit``: mean over scored positions of <y_clean - y, d>, d = y_clean - y_ablated (centred over the
    vocabulary for categorical outputs): the output projected on the clean-minus-ablated direction,
    0 at the clean model, linear in the output.
    """
    check_attribution_metric(metric)
    engine = problem.engine()
    mask, clean = engine.mask, engine.clean_logits
    categorical = problem.output_type == "categorical"
    if metric == "auto":
        if problem.metric == "logit-diff":
            return AttributionLoss(problem.loss_fn(), "logit-diff",
                                   "-(logit[answer] - logit[wrong answer]), mean over scored positions (MIB's metric)")
        if problem.metric == "task":
            kind = "ce" if categorical else "mse"
            return AttributionLoss(problem.loss_fn(), f"task-{kind}",
                                   f"the problem's task loss ({kind} to the labels)")
        metric = "ce" if categorical else "logit"
    if metric == "ce":
        if not categorical:
            raise ValueError("attribution_metric 'ce' needs categorical outputs; use 'logit' or 'mse'")
        if problem.metric == "task":
            target, what = problem.data.clean_labels.to(engine.device), "the labels"
        else:
            target, what = clean.argmax(-1), "the clean model's argmax"
        return AttributionLoss(lambda logits: target_cross_entropy(logits, target, mask), "ce",
                               f"cross-entropy to {what}, mean over scored positions")
    if metric == "kl":
        if not categorical:
            raise ValueError("attribution_metric 'kl' needs categorical outputs; use 'mse'")
        ref_logp = torch.log_softmax(wide(clean), -1)
        return AttributionLoss(
            lambda logits: masked_mean(
                (ref_logp.exp() * (ref_logp - torch.log_softmax(wide(logits), -1))).sum(-1), mask), "kl",
            "KL(clean || model), mean over scored positions (zero gradient at the clean point)")
    if metric == "mse":
        return AttributionLoss(
            lambda logits: masked_mean(((wide(logits) - wide(clean)) ** 2).sum(-1), mask), "mse",
            "squared error to the clean output, mean over scored positions (zero gradient at the clean point)")
    direction = wide(clean - _ablated_logits(engine))
    if categorical:
        direction = direction - direction.mean(-1, keepdim=True)  # softmax ignores constant shifts
    return AttributionLoss(
        lambda logits: masked_mean(((wide(clean) - wide(logits)) * direction).sum(-1), mask), "logit",
        "<y_clean - y, y_clean - y_ablated> (categorical: direction centred over the vocabulary), "
        "mean over scored positions")
