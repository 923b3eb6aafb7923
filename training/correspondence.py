"""HL <-> LL correspondence for SIIT: which low-level components implement each high-level node.

A *node location* (:class:`NodeLoc`) is a TransformerLens hook name plus an optional head index into
dimension 2 of that hook (``blocks.1.attn.hook_result`` head 0). Interchanging a node means: run the
source input, take the node's value at its location, write it into the base run at the same place.
Everything here is generic over ``HookedRootModule``: a hand-written HL model (IOI) only has to name
its node locations.

For Tracr cases (:func:`tracr_correspondence`):

- HL nodes are the compiled model's components that hold RASP expressions (``component_of``):
  ``a{l}.h{h}`` at ``blocks.l.attn.hook_result[:, :, h]`` and ``m{l}`` at ``blocks.l.hook_mlp_out``.
- The LL model keeps the HL layer structure: HL layer ``l`` maps to LL layer ``layer_map[l]``
  (identity by default, since the LL has ``max(2, L)`` layers). The HL layer indices come from
  tracr's own module allocation (``layer_k/attn``, ``layer_k/mlp``), so two adjacent attention
  blocks (tracr leaves the MLP half-layer between them empty, cases 81, 88, 126) land in two
  different layers, ``a2.h0`` and ``a3.h0``; InterpBench counted layers only after MLP blocks and
  put both in layer 2 (interpbench.md §3.3, §8.2). :meth:`Correspondence.check_order` verifies that
  every HL edge runs forward in the LL model, which that bug would violate.
- LL head ``h`` implements HL head ``h`` unless ``head_map`` says otherwise (InterpBench's case-3
  override puts ``a1.h0`` on LL head 2; we keep the identity unless asked).
- LL head locations default to ``hook_z[:, :, h]``: patching a head's z is patching its output
  (result = z W_O), and the LL needs no ``use_attn_result`` while training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from core import naming
from core.naming import NodeLoc
from core.circuit import Circuit

# InterpBench's LL-size rule (interpbench.md §2.2 "LL" column): residual-compressed cases and ratios.
RESID_COMPRESSION_CASES = frozenset({"5", "18", "21", "25", "26", "29", "34", "35", "36", "37", "9", "7", "23",
                                     "22", "28"})
COMPRESSION_RATIO = {"5": 1.8, "18": 1.6, "21": 1.3, "25": 1.5, "34": 1.5, "35": 3, "36": 2.5, "37": 2.2,
                     "9": 2, "7": 1.5, "23": 1.5, "24": 1.2, "6": 1.2}
DEFAULT_RATIO = 2.0


def component_loc(node: str, head_output: str = "result") -> NodeLoc:
    """The location of a graph node (``a1.h0`` / ``m0``) in a HookedTransformer (:func:`core.naming.hook_of`;
    ``head_output``: ``result`` or ``z``)."""
    if node in (naming.INPUT, naming.POS, naming.LOGITS):
        raise ValueError(f"{node!r} is not a head or an MLP")
    return naming.hook_of(node, head_output)


def ll_components(n_layers: int, n_heads: int, has_mlp: bool = True) -> list[str]:
    """Every head and MLP of an LL HookedTransformer, in forward order."""
    out = []
    for layer in range(n_layers):
        out += [naming.head(layer, h) for h in range(n_heads)]
        if has_mlp:
            out.append(naming.mlp(layer))
    return out


@dataclass
class Correspondence:
    """HL node -> LL nodes, plus where every node lives in its model.

    ``hl_locs``: HL node name -> location in the HL model. ``mapping``: HL node name -> LL node names.
    ``ll_locs``: *every* LL component (circuit or not) -> location in the LL model; the strict loss
    patches the ones no HL node maps to (:attr:`non_circuit`).
    """

    hl_locs: dict[str, NodeLoc]
    mapping: dict[str, tuple[str, ...]]
    ll_locs: dict[str, NodeLoc]
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mapping = {k: tuple(v) for k, v in self.mapping.items()}
        missing = set(self.mapping) - set(self.hl_locs)
        if missing:
            raise ValueError(f"HL nodes without a location: {sorted(missing)}")
        unknown = {n for v in self.mapping.values() for n in v} - set(self.ll_locs)
        if unknown:
            raise ValueError(f"LL nodes not in the LL model: {sorted(unknown)}")
        seen: dict[str, str] = {}
        for hl, lls in self.mapping.items():
            if not lls:
                raise ValueError(f"HL node {hl} maps to no LL node")
            for ll in lls:
                if ll in seen:
                    raise ValueError(f"LL node {ll} implements two HL nodes ({seen[ll]}, {hl})")
                seen[ll] = hl

    @property
    def hl_nodes(self) -> list[str]:
        return sorted(self.mapping, key=_node_key)

    @property
    def circuit_ll(self) -> list[str]:
        return sorted({n for v in self.mapping.values() for n in v}, key=_node_key)

    @property
    def non_circuit(self) -> list[str]:
        inside = set(self.circuit_ll)
        return [n for n in self.ll_locs if n not in inside]

    def ll_of(self, node: str) -> tuple[str, ...]:
        """LL nodes of an HL node; the endpoints ``input``/``pos``/``logits`` map to themselves."""
        if node in (naming.INPUT, naming.POS, naming.LOGITS):
            return (node,)
        return self.mapping[node]

    def ll_ground_truth(self, hl_truth: Circuit) -> Circuit:
        """The LL circuit (interpbench.md §3.4, fixed): mapped HL nodes plus input/logits, and every HL
        edge mapped through the correspondence (q/k/v kept where the receiver is a head)."""
        edges = set()
        for e in hl_truth.edges:
            p = naming.parse_edge(e)
            for s in self.ll_of(p.sender):
                for r in self.ll_of(p.receiver):
                    edges.add(naming.edge(s, r, p.qkv if naming.is_head(r) else None))
        nodes = {n for hl in hl_truth.nodes for n in self.ll_of(hl)} | {naming.INPUT, naming.LOGITS}
        return Circuit(frozenset(nodes), frozenset(edges))

    def check_order(self, hl_truth: Circuit) -> None:
        """Every HL edge must run forward in the LL model (sender strictly before receiver)."""
        for e in hl_truth.edges:
            p = naming.parse_edge(e)
            for s in self.ll_of(p.sender):
                for r in self.ll_of(p.receiver):
                    if not naming.node_layer(s) < naming.node_layer(r):
                        raise ValueError(f"HL edge {e} maps to {s}->{r}, which does not run forward in the LL model")

    def to_json(self) -> dict:
        return {"schema": 1,
                "hl_locs": {k: v.to_json() for k, v in sorted(self.hl_locs.items())},
                "mapping": {k: list(v) for k, v in sorted(self.mapping.items())},
                "ll_locs": {k: v.to_json() for k, v in self.ll_locs.items()},
                "meta": self.meta}

    @classmethod
    def from_json(cls, d: dict) -> "Correspondence":
        return cls(hl_locs={k: NodeLoc.from_json(v) for k, v in d["hl_locs"].items()},
                   mapping={k: tuple(v) for k, v in d["mapping"].items()},
                   ll_locs={k: NodeLoc.from_json(v) for k, v in d["ll_locs"].items()},
                   meta=dict(d.get("meta", {})))


def _node_key(n: str):
    return naming.node_layer(n), n


# ---------------------------------------------------------------------------------------------------
# LL model size
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LLSize:
    n_layers: int
    n_heads: int
    d_model: int
    d_head: int
    d_mlp: int


def ll_size(case_id: str, hl_config: Mapping, ratio: float | None = None, same_size: bool = False,
            min_heads: int = 4, min_layers: int = 2) -> LLSize:
    """InterpBench's LL size (interpbench.md §2.2): heads max(4, H), layers max(2, L), d_model compressed
    by ``ratio`` (residual-compressed cases) or d_head compressed (the rest); d_mlp = 4 d_model.
    ``same_size`` keeps the HL heads and layers (d_model is still compressed, as in InterpBench)."""
    cid = str(case_id)
    ratio = float(ratio if ratio is not None else COMPRESSION_RATIO.get(cid, DEFAULT_RATIO))
    if ratio <= 0:
        raise ValueError(f"compression ratio must be > 0, got {ratio}")
    L, H = int(hl_config["n_layers"]), int(hl_config["n_heads"])
    n_heads = H if same_size else max(min_heads, H)
    n_layers = L if same_size else max(min_layers, L)
    if cid in RESID_COMPRESSION_CASES:
        d_model = max(2, math.floor(hl_config["d_model"] / ratio))
        d_head = max(1, d_model // n_heads)
    else:
        d_head = max(1, math.floor(hl_config["d_head"] / ratio))
        d_model = n_heads * d_head
    return LLSize(n_layers, n_heads, d_model, d_head, 4 * d_model)


def ll_config(case_id: str, hl_config: Mapping, seed: int = 0, size: LLSize | None = None,
              act_fn: str = "gelu", **size_kwargs) -> dict:
    """HookedTransformerConfig arguments of the LL model (vocab, context and masking from the HL)."""
    size = size or ll_size(case_id, hl_config, **size_kwargs)
    return dict(n_layers=size.n_layers, n_heads=size.n_heads, d_model=size.d_model, d_head=size.d_head,
                d_mlp=size.d_mlp, d_vocab=int(hl_config["d_vocab"]), d_vocab_out=int(hl_config["d_vocab_out"]),
                n_ctx=int(hl_config["n_ctx"]), act_fn=act_fn, normalization_type=None,
                attention_dir=hl_config.get("attention_dir", "causal"), seed=int(seed),
                positional_embedding_type="standard", default_prepend_bos=False)


# ---------------------------------------------------------------------------------------------------
# Tracr correspondence
# ---------------------------------------------------------------------------------------------------

def hl_components(component_of: Mapping[str, Iterable[str]]) -> list[str]:
    """The HL nodes of a compiled Tracr model: every head/MLP that holds a RASP expression."""
    comps = {c for cs in component_of.values() for c in cs if c not in (naming.INPUT, naming.POS, naming.LOGITS)}
    return sorted(comps, key=_node_key)


def tracr_correspondence(component_of: Mapping[str, Iterable[str]], ll_n_layers: int, ll_n_heads: int,
                         layer_map: Mapping[int, int] | None = None, head_map: Mapping[str, int] | None = None,
                         hl_head_output: str = "result", ll_head_output: str = "z") -> Correspondence:
    """The correspondence for a compiled Tracr model (see the module docstring).

    ``layer_map``: HL layer -> LL layer (default identity; must be increasing). ``head_map``:
    HL head name -> LL head index (default: the same index). ``hl_head_output``/``ll_head_output``:
    where heads are patched in each model, ``result`` or ``z`` (:func:`core.naming.hook_of`).
    """
    nodes = hl_components(component_of)
    hl_layers = sorted({naming.node_layer(n)[0] for n in nodes})
    layer_map = dict(layer_map or {layer: layer for layer in hl_layers})
    ordered = [layer_map[layer] for layer in hl_layers]
    if any(b <= a for a, b in zip(ordered, ordered[1:])):
        raise ValueError(f"layer_map must be strictly increasing over the HL layers {hl_layers}: {layer_map}")
    if ordered and (ordered[-1] >= ll_n_layers or ordered[0] < 0):
        raise ValueError(f"layer_map {layer_map} does not fit an LL model with {ll_n_layers} layers")
    head_map = dict(head_map or {})
    mapping: dict[str, tuple[str, ...]] = {}
    for n in nodes:
        layer, kind = naming.node_layer(n)
        ll_layer = layer_map[layer]
        if naming.is_head(n):
            h = head_map.get(n, int(n.split(".h")[1]))
            if not 0 <= h < ll_n_heads:
                raise ValueError(f"HL head {n} maps to LL head {h}, the LL has {ll_n_heads} heads")
            mapping[n] = (naming.head(ll_layer, h),)
        else:
            mapping[n] = (naming.mlp(ll_layer),)
    hl_locs = {n: component_loc(n, hl_head_output) for n in nodes}
    ll_locs = {n: component_loc(n, ll_head_output) for n in ll_components(ll_n_layers, ll_n_heads)}
    return Correspondence(hl_locs=hl_locs, mapping=mapping, ll_locs=ll_locs,
                          meta={"layer_map": {str(k): v for k, v in layer_map.items()},
                                "head_map": head_map, "kind": "tracr"})
