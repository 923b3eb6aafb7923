"""Node realism (InterpBench's "circuit score"): keep a hypothesis' nodes, ablate every other head
and MLP output, and measure the accuracy that is left.

All hypotheses run in one batched pass of the patching engine (one mask per hypothesis), on the
clean inputs only: no N^2 (base, source) pairs. The engine's ablation decides what an ablated node
writes: ``zero`` (InterpBench default), ``mean`` (per-position mean over the data, InterpBench
``--mean``) or ``corrupted``. The embeddings (``input``/``pos``) are always kept, as in InterpBench,
which only ablates heads and MLPs.

Score (categorical: argmax; numerical: within ``atol``):
* ``relative=True``: among the scored positions the full model gets right (against the data's clean
  labels), the fraction that stays right;
* ``relative=False``: the plain accuracy against the labels with the other nodes ablated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import torch

from core.circuit import Circuit
from core.metrics import IGNORE
from core.naming import INPUT, LOGITS, POS
from core.results import finite


@dataclass
class RealismRow:
    name: str
    n_nodes: int        # kept heads and MLPs
    score: float
    relative: bool
    ablation: str
    reason: str | None = None

    def to_json(self) -> dict:
        return finite(dict(self.__dict__))


def _correct(engine, logits: torch.Tensor, atol: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(correct [K, n, seq] bool, scored [n, seq] bool) against the clean labels."""
    labels = engine.data.clean_labels.to(engine.device)
    if engine.output_type == "numerical":
        out = logits[..., 0] if logits.shape[-1] == 1 else logits
        scored = engine.mask & ~torch.isnan(labels)
        return (out - torch.nan_to_num(labels)).abs() < atol, scored
    return logits.argmax(-1) == labels, engine.mask & (labels != IGNORE)


def _score_fn(engine, relative: bool, atol: float):
    full_ok, scored = _correct(engine, engine.clean_logits.unsqueeze(0), atol)
    keep = scored & full_ok[0] if relative else scored

    def fn(logits):
        ok, _ = _correct(engine, logits, atol)
        k = keep.float()
        return (ok.float() * k).sum((-2, -1)) / k.sum().clamp_min(1)
    return fn, int(keep.sum())


def hypothesis_mask(graph, nodes: Iterable[str]) -> torch.Tensor:
    """Edge mask that keeps the given nodes (plus the embeddings and logits) and ablates the rest."""
    keep = set(nodes) | {INPUT, LOGITS} | ({POS} if POS in graph.nodes else set())
    return graph.node_edge_mask(keep)


@torch.no_grad()
def node_realism(engine, hypotheses: Mapping[str, Circuit | Iterable[str]] | Sequence[Circuit | Iterable[str]],
                 relative: bool = True, atol: float = 0.05) -> list[RealismRow]:
    """One row per hypothesis (a Circuit or a set of node names), all in one batched pass."""
    items = list(hypotheses.items()) if isinstance(hypotheses, Mapping) else \
        [(str(i), h) for i, h in enumerate(hypotheses)]
    graph = engine.graph
    node_sets = [set(h.nodes) if isinstance(h, Circuit) else set(h) for _, h in items]
    masks = torch.stack([hypothesis_mask(graph, s) for s in node_sets]) if items else torch.zeros(0, graph.n_edges)
    fn, n_scored = _score_fn(engine, relative, atol)
    reason = None if n_scored else ("the full model gets no scored position right" if relative
                                    else "no scored position has a label")
    scores = engine.evaluate(masks, fn).tolist() if items else []
    inner = {INPUT, POS, LOGITS}
    return [RealismRow(name, len(s - inner), math.nan if reason else float(v), relative, engine.ablation, reason)
            for (name, _), s, v in zip(items, node_sets, scores)]


def gt_node_realism(engine, truth: Circuit, relative: bool = True, atol: float = 0.05) -> RealismRow:
    """:func:`node_realism` of the ground-truth nodes."""
    return node_realism(engine, {"ground_truth": truth}, relative=relative, atol=atol)[0]
