"""Metrics over the positions a case scores (``mask``), with the reduction made explicit.

Every function takes logits ``[..., n, seq, vocab]`` (leading dims, e.g. one per circuit, are kept)
and a boolean ``mask [n, seq]``; the reduction is the mean over masked positions (each masked
position counts once, whatever the number per row). Categorical labels use -100 for "no label",
numerical labels NaN.
"""

from __future__ import annotations

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
