"""A circuit is a set of node names and a set of edge names, and its comparison with a ground truth."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from core.naming import INPUT, LOGITS, POS, merge_qkv, parse_edge

ENDPOINTS = frozenset({INPUT, POS, LOGITS})


@dataclass(frozen=True)
class Circuit:
    nodes: frozenset[str] = field(default_factory=frozenset)
    edges: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", frozenset(self.nodes))
        object.__setattr__(self, "edges", frozenset(self.edges))
        for e in self.edges:
            parse_edge(e)  # validates names

    @classmethod
    def from_edges(cls, edges, extra_nodes=()) -> "Circuit":
        """Nodes are the endpoints of the edges (plus ``extra_nodes``)."""
        edges = frozenset(edges)
        nodes = set(extra_nodes)
        for e in edges:
            p = parse_edge(e)
            nodes.update((p.sender, p.receiver))
        return cls(frozenset(nodes), edges)

    def merged(self) -> "Circuit":
        """The same circuit with q/k/v receivers merged (``a->b<q>`` and ``a->b<k>`` both become ``a->b``)."""
        return Circuit(self.nodes, frozenset(merge_qkv(e) for e in self.edges))

    @property
    def is_split(self) -> bool:
        return any(parse_edge(e).qkv for e in self.edges)

    def to_json(self) -> dict:
        return {"nodes": sorted(self.nodes), "edges": sorted(self.edges)}

    @classmethod
    def from_json(cls, d: dict) -> "Circuit":
        return cls(frozenset(d["nodes"]), frozenset(d["edges"]))


@dataclass(frozen=True)
class Confusion:
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def tpr(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else math.nan

    @property
    def fpr(self) -> float:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else math.nan

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else math.nan

    def to_json(self) -> dict:
        return {"tp": self.tp, "fp": self.fp, "tn": self.tn, "fn": self.fn,
                "tpr": self.tpr, "fpr": self.fpr, "precision": self.precision}


def confusion(predicted: set[str] | frozenset[str], truth: set[str] | frozenset[str],
              universe: set[str] | frozenset[str]) -> Confusion:
    """TP/FP/TN/FN of ``predicted`` against ``truth`` over ``universe`` (every candidate name)."""
    predicted, truth, universe = set(predicted), set(truth), set(universe)
    unknown = (predicted | truth) - universe
    if unknown:
        raise ValueError(f"names outside the graph: {sorted(unknown)[:5]}")
    tp = len(predicted & truth)
    fp = len(predicted - truth)
    fn = len(truth - predicted)
    return Confusion(tp, fp, len(universe) - tp - fp - fn, fn)


@dataclass(frozen=True)
class CircuitComparison:
    edges: Confusion
    nodes: Confusion
    nodes_no_endpoints: Confusion

    def to_json(self) -> dict:
        return {"edges": self.edges.to_json(), "nodes": self.nodes.to_json(),
                "nodes_no_endpoints": self.nodes_no_endpoints.to_json()}


def compare(predicted: Circuit, truth: Circuit, all_nodes, all_edges, merge: bool | None = None) -> CircuitComparison:
    """Compare at node and edge level over the graph's nodes and edges.

    ``merge``: compare q/k/v-merged edges (``a->b<q>`` and ``a->b<k>`` both count as ``a->b``). By
    default edges are merged unless both circuits split q/k/v, as the interface contract says.
    """
    all_edges = set(all_edges)
    if merge is None:
        merge = not (predicted.is_split and truth.is_split)
    if merge:
        predicted, truth = predicted.merged(), truth.merged()
        all_edges = {merge_qkv(e) for e in all_edges}
    all_nodes = set(all_nodes)
    inner = all_nodes - ENDPOINTS
    return CircuitComparison(
        edges=confusion(predicted.edges, truth.edges, all_edges),
        nodes=confusion(predicted.nodes, truth.nodes, all_nodes),
        nodes_no_endpoints=confusion(predicted.nodes & inner, truth.nodes & inner, inner),
    )
