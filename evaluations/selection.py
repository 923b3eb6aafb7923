"""Circuit selection: which edges a circuit of n edges keeps, given a method's edge scores.

Policies (:data:`POLICIES`):

* ``greedy``: the reference's ``apply_greedy`` (§1.5): grow from ``logits``, repeatedly adding the
  highest-|score| edge whose receiver is already in the circuit; the circuit of budget n is the first n
  edges of that order (:func:`greedy_order`).
* ``topk-abs``: the global top n by |score| (MIB); ``topk-signed``: the top n by signed score.

Unscored edges (NaN) come last; ties go by the graph's edge order. A circuit is then pruned by default
(``Graph.prune``: edges not reachable from the input or not reaching the logits are dropped).
*Budgets* (:func:`budgets_for`): every n in 0..E for graphs with at most :data:`SMALL_GRAPH` edges,
otherwise 0, E and :data:`N_BUDGETS` log-spaced values.
"""

from __future__ import annotations

import heapq
import math
from typing import Mapping, Sequence

import numpy as np
import torch

POLICIES = ("greedy", "topk-abs", "topk-signed")
TOPK_POLICIES = ("topk-abs", "topk-signed")
SMALL_GRAPH = 128
N_BUDGETS = 40


def check_policy(policy: str, allowed: Sequence[str] = POLICIES) -> None:
    if policy not in allowed:
        raise ValueError(f"unknown selection policy {policy!r}; expected one of {', '.join(allowed)}")


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
    if policy not in TOPK_POLICIES:
        raise ValueError(f"unknown policy {policy!r}; expected one of {', '.join(TOPK_POLICIES)}")
    key = scores.abs() if policy == "topk-abs" else scores.clone()
    key = torch.nan_to_num(key, nan=-math.inf)
    order = torch.sort(key, descending=True, stable=True).indices
    mask = torch.zeros(scores.numel())
    mask[order[:max(0, min(n, scores.numel()))]] = 1.0
    return mask


def greedy_order(graph, scores: np.ndarray) -> list[int]:
    """Edge indices in the order the reference's ``apply_greedy`` adds them: start at ``logits``, always
    take the highest-|score| candidate edge whose receiver node is in the circuit; a sender that enters
    makes its own input edges candidates. NaN scores come last; ties by edge order."""
    senders, receivers = graph.edge_sender_receiver()
    into: dict[str, list[int]] = {}
    for e, r in enumerate(receivers):
        into.setdefault(r, []).append(e)
    key = np.where(np.isnan(scores), -np.inf, np.abs(scores))
    heap = [(-key[e], e) for e in into.get("logits", [])]
    heapq.heapify(heap)
    inside, order = {"logits"}, []
    while heap:
        _, e = heapq.heappop(heap)
        order.append(e)
        s = senders[e]
        if s not in inside:
            inside.add(s)
            for e2 in into.get(s, []):
                heapq.heappush(heap, (-key[e2], e2))
    return order


def budgets_for(n_edges: int, n_points: int = N_BUDGETS) -> list[int]:
    """The edge budgets of a curve over a graph of ``n_edges`` edges (see the module doc)."""
    if n_edges <= SMALL_GRAPH:
        return list(range(n_edges + 1))
    grid = np.unique(np.round(np.geomspace(1, n_edges, n_points)).astype(int))
    return sorted({0, n_edges, *grid.tolist()})


def circuit_masks(graph, scores, budgets: Sequence[int], policy: str = "greedy",
                  prune: bool = True) -> list[torch.Tensor]:
    """One 0/1 edge mask per requested budget (pruned unless ``prune=False``); ``scores`` ``[E]`` (NaN =
    unscored), a numpy array or a tensor."""
    check_policy(policy)
    E = graph.n_edges
    arr = np.asarray(scores.detach().cpu() if isinstance(scores, torch.Tensor) else scores, dtype=np.float64)
    vec = torch.as_tensor(arr)
    order = greedy_order(graph, arr) if policy == "greedy" else None
    masks = []
    for n in budgets:
        if order is not None:
            m = torch.zeros(E)
            m[order[:max(0, min(int(n), E))]] = 1.0
        else:
            m = select_top(vec, int(n), policy)
        masks.append(graph.prune(m) if prune else m)
    return masks
