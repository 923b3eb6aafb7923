"""The one graph naming scheme, shared by methods, ground truth, evaluations and plots.

Nodes: ``input`` (token + position embedding, read at ``blocks.0.hook_resid_pre``), ``pos`` (only when a
case keeps the positional embedding apart), ``a{layer}.h{head}`` for attention heads, ``m{layer}`` for
MLPs, ``logits``. Edges: ``SENDER->RECEIVER``; receivers that split head inputs carry a suffix
``<q>``, ``<k>`` or ``<v>`` (``a0.h1->a1.h0<q>``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

INPUT = "input"
POS = "pos"
LOGITS = "logits"
QKV = ("q", "k", "v")

_HEAD = re.compile(r"^a(\d+)\.h(\d+)$")
_MLP = re.compile(r"^m(\d+)$")
_EDGE = re.compile(r"^(?P<sender>[^<>\s]+)->(?P<receiver>[^<>\s]+?)(?:<(?P<qkv>[qkv])>)?$")


def head(layer: int, h: int) -> str:
    return f"a{layer}.h{h}"


def mlp(layer: int) -> str:
    return f"m{layer}"


def edge(sender: str, receiver: str, qkv: str | None = None) -> str:
    if qkv is not None and qkv not in QKV:
        raise ValueError(f"qkv must be one of {QKV}, got {qkv!r}")
    return f"{sender}->{receiver}" + (f"<{qkv}>" if qkv else "")


@dataclass(frozen=True)
class EdgeName:
    sender: str
    receiver: str
    qkv: str | None = None

    def __str__(self) -> str:
        return edge(self.sender, self.receiver, self.qkv)

    @property
    def merged(self) -> str:
        """The name without the q/k/v suffix."""
        return edge(self.sender, self.receiver)


def parse_edge(name: str) -> EdgeName:
    m = _EDGE.match(name)
    if not m:
        raise ValueError(f"not an edge name: {name!r} (expected 'SENDER->RECEIVER' or 'SENDER->aL.hH<q|k|v>')")
    if m["qkv"] and not _HEAD.match(m["receiver"]):
        raise ValueError(f"only head receivers take <q>/<k>/<v>: {name!r}")
    return EdgeName(m["sender"], m["receiver"], m["qkv"])


def merge_qkv(name: str) -> str:
    """``a0.h0->a1.h1<q>`` -> ``a0.h0->a1.h1``; names without a suffix are returned unchanged."""
    return parse_edge(name).merged


def node_layer(node: str) -> tuple[int, int]:
    """A sort key in topological order: (layer, 0 for heads / 1 for MLPs); input first, logits last."""
    if node in (INPUT, POS):
        return (-1, 0)
    if node == LOGITS:
        return (10**9, 0)
    if m := _HEAD.match(node):
        return (int(m[1]), 0)
    if m := _MLP.match(node):
        return (int(m[1]), 1)
    raise ValueError(f"not a node name: {node!r} (expected input, pos, aL.hH, mL or logits)")


def is_head(name: str) -> bool:
    return bool(_HEAD.match(name))


def is_node(name: str) -> bool:
    try:
        node_layer(name)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class NodeLoc:
    """Where a node's output lives: a hook name and, for per-head hooks, the head index (dim 2)."""

    hook: str
    head: int | None = None

    def to_json(self) -> list:
        return [self.hook, self.head]

    @classmethod
    def from_json(cls, x) -> "NodeLoc":
        return cls(str(x[0]), None if x[1] is None else int(x[1]))
