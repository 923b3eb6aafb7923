"""The IOI correspondence (HL node -> LL component) and the LL ground-truth circuit.

Correspondence (as InterpBench's IOI case, interpbench.md §2.3, with the input node on MLP0):

==============  =========================  ==========================================
HL node         LL node                    LL location (patched by SIIT)
==============  =========================  ==========================================
input           ``m0``                     ``blocks.0.hook_mlp_out``
duplicate       ``a1.h1``                  ``blocks.1.attn.hook_z`` head 1
s_inhibition    ``a2.h1``                  ``blocks.2.attn.hook_z`` head 1
name_mover      ``a4.h1``                  ``blocks.4.attn.hook_z`` head 1
==============  =========================  ==========================================

Interchanging the HL input node replaces MLP0's output (at every position) by the source's, so the
trained model reads token identity through ``m0``; positions are the same for every prompt (all
prompts are 16 tokens) and come from ``input`` (the positional embedding is part of
``blocks.0.hook_resid_pre``).

Ground truth, in the graph's naming (q/k/v split; a head's q/k/v edge is in the circuit when the
HL mechanism reads that sender through that input):

- ``input->m0``: MLP0 re-encodes the token (the HL input node).
- duplicate head ``a1.h1`` ("where did my token occur before?"): query = the current token
  (``m0``, ``input``), key = earlier tokens and their positions (``m0``, ``input``), value = the
  position it found (``input``: the positional embedding), i.e. the pointer ``dup[s]``.
- S-inhibition head ``a2.h1`` ("which name did the duplicate head flag?"): query = the current
  position (``input``), key = the duplicate flag (``a1.h1``) and whether a name sits there (``m0``,
  ``input``), value = the name there (``m0``, ``input``).
- name-mover head ``a4.h1`` (at the last position, "which name is not inhibited?"): query = the
  inhibited name (``a2.h1``, at the same position, as in real IOI) and the position (``input``),
  key = which name each position holds (``m0``, ``input``), value = that name (``m0``, ``input``).
- ``a4.h1->logits``: the name mover writes the answer.
"""

from __future__ import annotations

from core import naming
from core.circuit import Circuit
from training.correspondence import Correspondence, NodeLoc, component_loc, ll_components

# HL node name -> hook name in the HL model (cases/ioi/hl_model.py; the SIIT correspondence uses these).
HL_NODES: dict[str, str] = {
    "input": "hook_input",
    "duplicate": "hook_duplicate",
    "s_inhibition": "hook_s_inhibition",
    "name_mover": "hook_name_mover",
}
# HL edges (sender -> receiver) of the causal graph.
HL_EDGES: tuple[tuple[str, str], ...] = (
    ("input", "duplicate"), ("input", "s_inhibition"), ("input", "name_mover"),
    ("duplicate", "s_inhibition"), ("s_inhibition", "name_mover"), ("name_mover", "output"),
)
CIRCUIT_NODES: dict[str, str] = {  # HL node -> LL node
    "input": "m0",
    "duplicate": "a1.h1",
    "s_inhibition": "a2.h1",
    "name_mover": "a4.h1",
}
DUP, INH, NM, MLP0 = "a1.h1", "a2.h1", "a4.h1", "m0"
INPUT, LOGITS = naming.INPUT, naming.LOGITS

# (sender, receiver, q/k/v or None), with the reason in the module doc.
_EDGES: tuple[tuple[str, str, str | None], ...] = (
    (INPUT, MLP0, None),
    (INPUT, DUP, "q"), (MLP0, DUP, "q"), (INPUT, DUP, "k"), (MLP0, DUP, "k"), (INPUT, DUP, "v"),
    (INPUT, INH, "q"), (DUP, INH, "k"), (MLP0, INH, "k"), (INPUT, INH, "k"), (INPUT, INH, "v"), (MLP0, INH, "v"),
    (INH, NM, "q"), (INPUT, NM, "q"), (INPUT, NM, "k"), (MLP0, NM, "k"),
    (INPUT, NM, "v"), (MLP0, NM, "v"),
    (NM, LOGITS, None),
)


def ground_truth() -> Circuit:
    """The LL ground-truth circuit (q/k/v split edges; merge with ``Circuit.merged()``)."""
    edges = frozenset(naming.edge(s, r, q) for s, r, q in _EDGES)
    return Circuit(frozenset({INPUT, MLP0, DUP, INH, NM, LOGITS}), edges)


def hl_graph() -> dict:
    """The HL nodes and edges with their LL names (for ``cases show``)."""
    return {"nodes": {k: {"hook": v, "ll": CIRCUIT_NODES.get(k, LOGITS)} for k, v in HL_NODES.items()},
            "edges": [f"{s}->{r}" for s, r in HL_EDGES]}


def correspondence(n_layers: int = 6, n_heads: int = 4):
    """The SIIT correspondence for an LL HookedTransformer of this size.

    The shared ``Correspondence`` sorts HL nodes by graph name, so its HL keys are the graph names of
    the roles (``input``, ``a1.h1``, ``a2.h1``, ``a4.h1``); ``meta["hl_names"]`` gives the semantic
    names (duplicate, s_inhibition, name_mover) and the HL hooks are in ``hl_locs``.
    """
    if n_layers < 5 or n_heads < 2:
        raise ValueError(f"the IOI circuit needs >= 5 layers and >= 2 heads (a4.h1), got {n_layers} x {n_heads}")
    key = {hl: (INPUT if hl == "input" else ll) for hl, ll in CIRCUIT_NODES.items()}
    ll_locs = {n: component_loc(n, "z") for n in ll_components(n_layers, n_heads)}
    return Correspondence(hl_locs={key[k]: NodeLoc(HL_NODES[k]) for k in CIRCUIT_NODES},
                          mapping={key[k]: (v,) for k, v in CIRCUIT_NODES.items()}, ll_locs=ll_locs,
                          meta={"kind": "ioi", "hl_names": {key[k]: k for k in CIRCUIT_NODES}})
