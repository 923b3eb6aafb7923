"""The computational graph of a HookedTransformer, in the project's one naming scheme.

Senders (in forward order): ``input`` (``blocks.0.hook_resid_pre``: token + position; with
``separate_pos`` it becomes ``input`` = ``hook_embed`` and ``pos`` = ``hook_pos_embed``), then per layer
every head ``a{l}.h{h}`` (``blocks.l.attn.hook_result``) and the MLP ``m{l}`` (``blocks.l.hook_mlp_out``).
Receivers: every head's q/k/v input (``blocks.l.hook_{q,k,v}_input``), every MLP input
(``blocks.l.hook_mlp_in``) and ``logits`` (``blocks.{L-1}.hook_resid_post``). An edge joins every
sender to every later receiver; each receiver's senders are a prefix of the sender list.

With ``split_qkv=True`` (default) head receivers are ``a1.h0<q>``, ``<k>``, ``<v>`` and edges are
named ``a0.h0->a1.h0<q>``; with ``split_qkv=False`` one edge ``a0.h0->a1.h0`` drives all three.
The patching engine always works on the split receivers; an unsplit edge maps to three slots.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

import torch

from core import naming
from core.circuit import Circuit

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer


@dataclass(frozen=True)
class Sender:
    name: str           # "input", "pos", "a0.h1", "m0"
    hook: str           # TransformerLens hook name of its output (naming.hook_of)
    head: int | None    # index into the head dimension of the hook, for heads


@dataclass(frozen=True)
class Receiver:
    name: str           # "a1.h0<q>", "m1", "logits"
    node: str           # "a1.h0", "m1", "logits"
    hook: str           # TransformerLens hook name
    head: int | None    # index into the head dimension of the hook, for q/k/v receivers
    qkv: str | None
    n_senders: int      # senders [0, n_senders) feed this receiver


@dataclass
class Graph:
    n_layers: int
    n_heads: int
    has_mlp: bool = True
    split_qkv: bool = True
    separate_pos: bool = False
    senders: list[str] = field(init=False)
    receivers: list[Receiver] = field(init=False)
    edges: list[str] = field(init=False)
    sender_records: list[Sender] = field(init=False)  # senders[i] with its hook and head

    def __post_init__(self) -> None:
        L, H = self.n_layers, self.n_heads
        senders = [naming.INPUT] + ([naming.POS] if self.separate_pos else [])
        receivers: list[Receiver] = []
        for layer in range(L):
            prefix = len(senders)
            for qkv in naming.QKV:
                for h in range(H):
                    node = naming.head(layer, h)
                    loc = naming.receiver_hook_of(node, L, qkv)
                    receivers.append(Receiver(f"{node}<{qkv}>", node, loc.hook, loc.head, qkv, prefix))
            senders += [naming.head(layer, h) for h in range(H)]
            if self.has_mlp:
                node = naming.mlp(layer)
                receivers.append(Receiver(node, node, naming.receiver_hook_of(node, L).hook, None, None, len(senders)))
                senders.append(node)
        receivers.append(Receiver(naming.LOGITS, naming.LOGITS, naming.receiver_hook_of(naming.LOGITS, L).hook, None,
                                  None, len(senders)))
        self.senders, self.receivers = senders, receivers
        locs = [naming.hook_of(s, separate_pos=self.separate_pos) for s in senders]
        self.sender_records = [Sender(s, loc.hook, loc.head) for s, loc in zip(senders, locs)]
        self.sender_index = {s: i for i, s in enumerate(senders)}
        self.receiver_index = {r.name: i for i, r in enumerate(receivers)}

        # Edge list, and the (edge, sender, receiver) slots the engine scatters masks into.
        edges, slots = [], []
        for r_idx, r in enumerate(receivers):
            if r.qkv and not self.split_qkv:
                if r.qkv != "q":
                    continue  # the unsplit edge was created with its <q> slot; add k and v slots below
                for s_idx in range(r.n_senders):
                    e = len(edges)
                    edges.append(naming.edge(senders[s_idx], r.node))
                    for k in range(3):  # q, k, v receivers of the same head are H apart
                        slots.append((e, s_idx, r_idx + k * H))
                continue
            for s_idx in range(r.n_senders):
                slots.append((len(edges), s_idx, r_idx))
                edges.append(f"{senders[s_idx]}->{r.name}")
        self.edges = edges
        self.edge_index = {e: i for i, e in enumerate(edges)}
        self.slots = torch.tensor(slots, dtype=torch.long).reshape(-1, 3)
        self.nodes = senders + [naming.LOGITS]

    # ---- construction ---------------------------------------------------------------------------
    @classmethod
    def from_model(cls, model: "HookedTransformer", split_qkv: bool = True, separate_pos: bool = False) -> "Graph":
        cfg = model.cfg
        missing = [flag for flag in ("use_attn_result", "use_split_qkv_input", "use_hook_mlp_in")
                   if not getattr(cfg, flag) and not (flag == "use_hook_mlp_in" and cfg.attn_only)]
        if missing:
            raise ValueError(f"the model needs {', '.join(missing)} turned on (model.set_use_...(True))")
        if cfg.normalization_type not in (None, "LN", "LNPre", "RMS", "RMSPre"):
            raise ValueError(f"unsupported normalization {cfg.normalization_type!r}")
        if getattr(cfg, "parallel_attn_mlp", False):
            raise ValueError("parallel attention/MLP models are not supported yet")
        return cls(cfg.n_layers, cfg.n_heads, has_mlp=not cfg.attn_only, split_qkv=split_qkv, separate_pos=separate_pos)

    # ---- sizes and formula ------------------------------------------------------------------------
    @property
    def n_edges(self) -> int:
        return len(self.edges)

    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    @staticmethod
    def expected_edge_count(n_layers: int, n_heads: int, has_mlp: bool = True, split_qkv: bool = True) -> int:
        """The closed form of ../shared/reference/methods.md §1.5 (with MLPs, q/k/v split)."""
        L, H = n_layers, n_heads
        q = 3 if split_qkv else 1
        if not has_mlp:
            return sum(q * H * (1 + l * H) for l in range(L)) + 1 + L * H
        return (q * H + 1) * (L + (H + 1) * L * (L - 1) // 2) + L * (2 * H + 1) + 1

    # ---- circuits <-> masks -----------------------------------------------------------------------
    def edge_names(self, edges: Iterable[str]) -> list[str]:
        """Map edge names to this graph's naming (merging or keeping q/k/v); unknown names raise."""
        out = []
        for e in edges:
            p = naming.parse_edge(e)
            if not self.split_qkv:
                e = p.merged
            elif p.qkv is None and naming.is_head(p.receiver):
                out += [naming.edge(p.sender, p.receiver, q) for q in naming.QKV]
                continue
            if e not in self.edge_index:
                raise ValueError(f"edge {e!r} is not in the graph ({self.n_layers} layers, {self.n_heads} heads)")
            out.append(e)
        return out

    def mask_for(self, circuit: Circuit | Iterable[str]) -> torch.Tensor:
        """A 0/1 edge mask with 1 on the circuit's edges."""
        edges = circuit.edges if isinstance(circuit, Circuit) else circuit
        mask = torch.zeros(self.n_edges)
        idx = [self.edge_index[e] for e in self.edge_names(edges)]
        if idx:
            mask[idx] = 1.0
        return mask

    def circuit_from_mask(self, mask: torch.Tensor, threshold: float = 0.5) -> Circuit:
        keep = (mask.detach().flatten() > threshold).nonzero().flatten().tolist()
        return Circuit.from_edges([self.edges[i] for i in keep])

    def node_edge_mask(self, nodes: Iterable[str]) -> torch.Tensor:
        """Edge mask that keeps every edge whose sender is in ``nodes`` (node-level circuits).

        ``input``/``pos`` are kept implicitly only if listed; ``logits`` is a receiver only.
        """
        nodes = set(nodes)
        unknown = nodes - set(self.nodes)
        if unknown:
            raise ValueError(f"nodes not in the graph: {sorted(unknown)}")
        receivers_ok = {r.node for r in self.receivers if r.node in nodes or r.node == naming.LOGITS}
        mask = torch.zeros(self.n_edges)
        for e, name in enumerate(self.edges):
            p = naming.parse_edge(name)
            if p.sender in nodes and p.receiver in receivers_ok:
                mask[e] = 1.0
        return mask

    def edge_sender_receiver(self) -> tuple[list[str], list[str]]:
        """For each edge, its sender node and receiver node (q/k/v merged into the head)."""
        s, r = [], []
        for name in self.edges:
            p = naming.parse_edge(name)
            s.append(p.sender)
            r.append(p.receiver)
        return s, r

    def prune(self, mask: torch.Tensor) -> torch.Tensor:
        """Remove dangling edges: keep an edge only if its sender is reached from ``input`` (or ``pos``)
        through kept edges and its receiver reaches ``logits`` through kept edges."""
        keep = mask.detach().flatten() > 0.5
        senders, receivers = self.edge_sender_receiver()
        # forward reachability, in topological (sender index) order
        reached = {naming.INPUT, naming.POS}
        order = sorted(range(self.n_edges), key=lambda e: naming.node_layer(receivers[e]))
        changed = True
        while changed:
            changed = False
            for e in order:
                if keep[e] and senders[e] in reached and receivers[e] not in reached:
                    reached.add(receivers[e])
                    changed = True
        useful = {naming.LOGITS}
        changed = True
        while changed:
            changed = False
            for e in reversed(order):
                if keep[e] and receivers[e] in useful and senders[e] not in useful:
                    useful.add(senders[e])
                    changed = True
        out = torch.zeros(self.n_edges)
        for e in range(self.n_edges):
            if keep[e] and senders[e] in reached and receivers[e] in useful:
                out[e] = 1.0
        return out
