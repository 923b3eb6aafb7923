"""The ground-truth circuit of a compiled Tracr program, read off tracr's own compilation.

Which component implements each RASP expression comes from the compiler itself, not from a
re-derivation: every graph node's ``MODEL_BLOCK`` (tracr.md §2.3) is located in the craft model that
tracr assembled (§2.4), and the craft model's blocks are mapped to layers with tracr's own
module-name allocation (the greedy ``layer_k/attn``, ``layer_k/mlp`` packing of §2.4 step 6).

- A head is found by identity: the ``AttentionHead`` object of an Aggregate (or the head of a
  SelectorWidth's residual block) is one of the heads of an attention block; its position there is
  the head index, in the order tracr writes the weights (so ``a{l}.h{h}`` matches the converted
  HookedTransformer).
- An MLP is found by the residual directions it writes: every RASP SOp owns its output directions,
  so the combined MLP layer whose output space contains them is the one.

Edges, for each expression B and child A, are ``producer(A) -> component(B)``:
- Aggregate: the selector's queries -> ``<q>``, its keys -> ``<k>``, the aggregated SOp -> ``<v>``;
- SelectorWidth: queries -> ``<q>``, keys -> ``<k>``, and ``input -> <v>``: the head's value space is
  just the BOS token direction (the width is read from how much attention BOS gets), then
  ``head -> MLP`` (the MLP decodes 1/(w+1) into w);
- Map / SequenceMap / LinearSequenceMap: every child -> the MLP;
- ``tokens`` and ``indices`` are produced by ``input``; the output SOp's producer -> ``logits``.

Reads of the constant directions (``one`` in every query and MLP, the BOS direction in every key,
the clean-BOS neuron of SelectorWidth's MLP) are machinery shared by all inputs and are not edges,
as in InterpBench. The SelectorWidth value read above is the exception because it carries the
head's whole output.
"""

from __future__ import annotations

from core import naming
from core.circuit import Circuit


def _layer_of_module(module_name: str) -> int:
    # "transformer/layer_3/attn" -> 3
    return int(module_name.split("/")[1].split("_")[1])


def locate_components(graph, craft_model) -> dict[str, list[str]]:
    """RASP label -> graph node names implementing it (a head, an MLP, or both for SelectorWidth).

    ``tokens`` and ``indices`` map to ``input``; selectors map to the heads that evaluate them.
    """
    from tracr.compiler import assemble, nodes
    from tracr.craft import transformers
    from tracr.rasp import rasp

    _, module_names = assemble._get_model_config_and_module_names(craft_model)
    layers = [_layer_of_module(m) for m in module_names]
    attn_blocks = [(layers[i], list(b.as_multi().heads())) for i, b in enumerate(craft_model.blocks)
                   if not isinstance(b, transformers.MLP)]
    mlp_blocks = [(layers[i], set(b.snd.output_space.basis)) for i, b in enumerate(craft_model.blocks)
                  if isinstance(b, transformers.MLP)]

    def find_head(head) -> str:
        for layer, heads in attn_blocks:
            for h, candidate in enumerate(heads):
                if candidate is head:
                    return naming.head(layer, h)
        raise RuntimeError("tracr head not found in the assembled model")

    def find_mlp(mlp, label: str) -> str:
        written = set(mlp.snd.output_space.basis)
        hits = [layer for layer, out in mlp_blocks if written and written <= out]
        if len(hits) != 1:
            raise RuntimeError(f"cannot place the MLP of {label!r} in the assembled model ({len(hits)} candidates)")
        return naming.mlp(hits[0])

    comp: dict[str, list[str]] = {}
    for label, node in graph.nodes.items():
        expr = node[nodes.EXPR]
        if expr is rasp.tokens or expr is rasp.indices or isinstance(expr, (rasp.TokensType, rasp.IndicesType)):
            comp[label] = [naming.INPUT]
            continue
        block = node.get(nodes.MODEL_BLOCK)
        if block is None:
            continue
        if isinstance(block, transformers.SeriesWithResiduals):
            attn, mlp = block.blocks
            comp[label] = [find_head(h) for h in attn.as_multi().heads()] + [find_mlp(mlp, label)]
        elif isinstance(block, transformers.MLP):
            comp[label] = [find_mlp(block, label)]
        else:
            comp[label] = [find_head(h) for h in block.as_multi().heads()]
    # Selectors are evaluated by the q/k of the heads that use them.
    for label, node in graph.nodes.items():
        expr = node[nodes.EXPR]
        if isinstance(expr, (rasp.Aggregate, rasp.SelectorWidth)):
            heads = [c for c in comp[label] if c.startswith("a")]
            sel = comp.setdefault(expr.selector.label, [])
            sel.extend(h for h in heads if h not in sel)
    return comp


def build_ground_truth(graph, sink_label: str, component_of: dict[str, list[str]]) -> Circuit:
    """The q/k/v-split ground-truth circuit (see the module docstring for the rules)."""
    from tracr.compiler import nodes
    from tracr.rasp import rasp

    def producer(expr) -> str:
        return component_of[expr.label][-1]

    def heads_of(label):
        return [c for c in component_of[label] if c.startswith("a")]

    edges: set[str] = set()
    for label, node in graph.nodes.items():
        expr = node[nodes.EXPR]
        if isinstance(expr, (rasp.Aggregate, rasp.SelectorWidth)):
            sel = expr.selector
            if not isinstance(sel, rasp.Select):
                raise NotImplementedError(f"{label}: only a single Select compiles, got {type(sel).__name__}")
            for head in heads_of(label):
                edges.add(naming.edge(producer(sel.queries), head, "q"))
                edges.add(naming.edge(producer(sel.keys), head, "k"))
                if isinstance(expr, rasp.Aggregate):
                    edges.add(naming.edge(producer(expr.sop), head, "v"))
                else:
                    edges.add(naming.edge(naming.INPUT, head, "v"))
                    edges.add(naming.edge(head, component_of[label][-1]))
        elif isinstance(expr, (rasp.Map, rasp.SequenceMap)):
            for child in expr.children:
                edges.add(naming.edge(producer(child), component_of[label][-1]))
    edges.add(naming.edge(component_of[sink_label][-1], naming.LOGITS))

    for e in edges:  # every edge runs forward through the model
        p = naming.parse_edge(e)
        if not naming.node_layer(p.sender) < naming.node_layer(p.receiver):
            raise RuntimeError(f"ground-truth edge {e} does not run forward; please report this program")
    components = {c for cs in component_of.values() for c in cs}
    return Circuit(frozenset(components | {naming.INPUT, naming.LOGITS}), frozenset(edges))


CONSTANT_DIRECTIONS = ("one", "tokens:BOS")


def receiver_weights(model, receiver: str):
    """The input weights ``[d_model, ...]`` through which a receiver reads the residual stream, or None
    for ``logits``: ``W_Q/W_K/W_V`` of one head for ``aL.hH<q|k|v>``, ``W_in`` for ``mL``."""
    import re

    m = re.fullmatch(r"a(\d+)\.h(\d+)<([qkv])>", receiver)
    if m:
        attn = model.blocks[int(m[1])].attn
        return {"q": attn.W_Q, "k": attn.W_K, "v": attn.W_V}[m[3]][int(m[2])]
    if re.fullmatch(r"m\d+", receiver):
        return model.blocks[int(receiver[1:])].mlp.W_in
    return None


def reads_only_constants(model, residual_labels: list[str], receiver: str) -> bool:
    """Whether a receiver reads only directions that are the same on every input and position: the
    ``one`` direction and the BOS token (BOS is always at position 0). A SelectorWidth head's value
    is such a read: it attends to BOS to count, and what it reads there never changes."""
    W = receiver_weights(model, receiver)
    if W is None:
        return False
    other = [i for i, lab in enumerate(residual_labels) if lab not in CONSTANT_DIRECTIONS]
    return bool(W[other].abs().max() == 0)


def without_constant_reads(compiled) -> Circuit:
    """The ground truth without ``input->X`` edges whose receiver reads only constant directions.
    Those edges carry no information: no corrupted input can change them, so no method can find them,
    and tracr's other constant reads (``one``, the BOS key) are left out of the ground truth already."""
    gt = compiled.ground_truth
    drop = {e for e in gt.edges if e.startswith("input->")
            and reads_only_constants(compiled.model, compiled.residual_labels, e.split("->", 1)[1])}
    return Circuit(gt.nodes, gt.edges - drop)
