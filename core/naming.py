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


# ---- hook names: TransformerLens's scheme (``transformer_lens.utils.get_act_name``), restated so that
# the core never imports transformer_lens; tests/core/test_naming.py checks it against get_act_name.
_ATTN_ACTS = frozenset({"q", "k", "v", "z", "result", "pattern", "attn_scores", "rot_q", "rot_k"})
_MLP_ACTS = frozenset({"pre", "post", "mid", "pre_linear"})
HEAD_OUTPUTS = ("result", "z")  # a head's output: per-head result (z W_O), or z (what it is linear in)


def act_name(name: str, layer: int | None = None) -> str:
    """The hook name of activation ``name`` in block ``layer`` (``act_name("q_input", 1)`` =
    ``blocks.1.hook_q_input``, ``act_name("z", 2)`` = ``blocks.2.attn.hook_z``, ``act_name("embed")`` =
    ``hook_embed``), as ``get_act_name`` spells it for its full (unaliased) names."""
    prefix = "" if layer is None else f"blocks.{layer}."
    if name in _ATTN_ACTS:
        prefix += "attn."
    elif name in _MLP_ACTS:
        prefix += "mlp."
    return f"{prefix}hook_{name}"


def hook_of(node: str, head_output: str = "result", separate_pos: bool = False) -> NodeLoc:
    """Where a sender node's output lives: ``input`` at ``blocks.0.hook_resid_pre`` (``hook_embed`` with
    ``separate_pos``), ``pos`` at ``hook_pos_embed``, ``aL.hH`` at ``blocks.L.attn.hook_result`` head H
    (``hook_z`` with ``head_output="z"``), ``mL`` at ``blocks.L.hook_mlp_out``."""
    if node == INPUT:
        return NodeLoc(act_name("embed") if separate_pos else act_name("resid_pre", 0))
    if node == POS:
        return NodeLoc(act_name("pos_embed"))
    if m := _HEAD.match(node):
        if head_output not in HEAD_OUTPUTS:
            raise ValueError(f"head_output must be one of {HEAD_OUTPUTS}, got {head_output!r}")
        return NodeLoc(act_name(head_output, int(m[1])), int(m[2]))
    if m := _MLP.match(node):
        return NodeLoc(act_name("mlp_out", int(m[1])))
    raise ValueError(f"not a sender node: {node!r} (expected input, pos, aL.hH or mL)")


def receiver_hook_of(node: str, n_layers: int, qkv: str | None = None) -> NodeLoc:
    """Where a receiver reads its input: head ``aL.hH`` at ``blocks.L.hook_{qkv}_input`` head H, ``mL`` at
    ``blocks.L.hook_mlp_in``, ``logits`` at ``blocks.{n_layers - 1}.hook_resid_post``."""
    if m := _HEAD.match(node):
        if qkv not in QKV:
            raise ValueError(f"a head receiver needs qkv in {QKV}, got {qkv!r}")
        return NodeLoc(act_name(f"{qkv}_input", int(m[1])), int(m[2]))
    if qkv is not None:
        raise ValueError(f"only head receivers take q/k/v: {node!r}")
    if m := _MLP.match(node):
        return NodeLoc(act_name("mlp_in", int(m[1])))
    if node == LOGITS:
        return NodeLoc(act_name("resid_post", n_layers - 1))
    raise ValueError(f"not a receiver node: {node!r} (expected aL.hH, mL or logits)")


def hook_layer(hook: str) -> int:
    """The block a hook sits in (``blocks.3.attn.hook_result`` -> 3); -1 for the embeddings."""
    return int(hook.split(".")[1]) if hook.startswith("blocks.") else -1
