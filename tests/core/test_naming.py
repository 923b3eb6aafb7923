"""The one hook-name builder (core.naming), the graph's sender/receiver records, and the one
strict-accuracy definition (core.patching.strict_accuracy) against the engine's per-node ablation."""

from __future__ import annotations

import pytest
import torch

from core import naming
from core.data import CaseData
from core.graph import Graph
from core.naming import NodeLoc
from core.patching import PatchEngine, capture, patched_forward, sender_groups, strict_accuracy
from tests.helpers import random_data, random_model


def test_act_name_is_transformer_lens_scheme():
    from transformer_lens.utils import get_act_name

    for name in ("resid_pre", "resid_post", "q_input", "k_input", "v_input", "mlp_in", "mlp_out", "result", "z",
                 "q", "k", "v", "pattern", "attn_scores", "pre", "post"):
        for layer in (0, 3):
            assert naming.act_name(name, layer) == get_act_name(name, layer)
    assert naming.act_name("embed") == get_act_name("embed") == "hook_embed"
    assert naming.act_name("pos_embed") == get_act_name("pos_embed") == "hook_pos_embed"


def test_hook_of_senders_and_receivers():
    assert naming.hook_of("input") == NodeLoc("blocks.0.hook_resid_pre")
    assert naming.hook_of("input", separate_pos=True) == NodeLoc("hook_embed")
    assert naming.hook_of("pos") == NodeLoc("hook_pos_embed")
    assert naming.hook_of("a2.h3") == NodeLoc("blocks.2.attn.hook_result", 3)
    assert naming.hook_of("a2.h3", "z") == NodeLoc("blocks.2.attn.hook_z", 3)
    assert naming.hook_of("m1") == NodeLoc("blocks.1.hook_mlp_out")
    assert naming.receiver_hook_of("a1.h0", 2, "k") == NodeLoc("blocks.1.hook_k_input", 0)
    assert naming.receiver_hook_of("m1", 2) == NodeLoc("blocks.1.hook_mlp_in")
    assert naming.receiver_hook_of("logits", 2) == NodeLoc("blocks.1.hook_resid_post")
    for bad in (lambda: naming.hook_of("logits"), lambda: naming.hook_of("a0.h0", "pattern"),
                lambda: naming.receiver_hook_of("a0.h0", 2), lambda: naming.receiver_hook_of("m0", 2, "q"),
                lambda: naming.receiver_hook_of("input", 2)):
        with pytest.raises(ValueError):
            bad()
    assert naming.hook_layer("blocks.3.attn.hook_result") == 3 and naming.hook_layer("hook_embed") == -1


@pytest.mark.parametrize("separate_pos,attn_only", [(False, False), (True, False), (False, True)])
def test_graph_sender_records(separate_pos, attn_only):
    g = Graph(2, 3, has_mlp=not attn_only, separate_pos=separate_pos)
    assert [r.name for r in g.sender_records] == g.senders
    for r in g.sender_records:
        assert NodeLoc(r.hook, r.head) == naming.hook_of(r.name, separate_pos=separate_pos)
    for r in g.receivers:
        loc = naming.receiver_hook_of(r.node, g.n_layers, r.qkv)
        assert (r.hook, r.head) == (loc.hook, loc.head)
    groups = sender_groups(g)
    assert sum(gr.size for gr in groups) == len(g.senders)
    for gr in groups:
        assert {r.hook for r in g.sender_records[gr.start:gr.start + gr.size]} == {gr.hook}
        assert gr.per_head == (gr.size > 1 or g.sender_records[gr.start].head is not None)


def _labelled(model, data):
    """The clean model's own argmax as labels (so the full model is 100% accurate)."""
    with torch.no_grad():
        labels = model(data.clean).argmax(-1)
    return CaseData(data.clean, data.corrupted, labels, labels, data.mask)


def test_strict_accuracy_matches_engine_resample_per_node():
    """Interchanging one node's output from the corrupted input (site patch) is resample-ablating all
    its outgoing edges (engine): the same accuracy per node, and the joint run is every node at once."""
    model = random_model("LN", n_layers=2, n_heads=2, dtype=torch.float64)
    data = _labelled(model, random_data(n=8))
    graph = Graph.from_model(model)
    engine = PatchEngine(model, graph, data, "categorical", ablation="corrupted")
    nodes = [s for s in graph.senders if s != "input"]
    senders, _ = graph.edge_sender_receiver()
    masks = torch.ones(len(nodes), graph.n_edges, dtype=torch.float64)
    for i, n in enumerate(nodes):
        masks[i, [e for e, s in enumerate(senders) if s == n]] = 0.0
    with torch.no_grad():
        ablated = engine.run(masks).argmax(-1)
    locs = {r.name: NodeLoc(r.hook, r.head) for r in graph.sender_records if r.name in nodes}
    agree = lambda out, t: out.argmax(-1) == t  # noqa: E731
    got = strict_accuracy(model, data.clean, data.corrupted, locs, agree, data.clean_labels, data.mask, chunk=3)
    for i, n in enumerate(nodes):
        assert got.per_node[n] == pytest.approx(float((ablated[i] == data.clean_labels).float().mean()))
    assert got.mean == pytest.approx(sum(got.per_node.values()) / len(nodes))
    assert got.min == min(got.per_node.values())
    _, cache = capture(model, data.corrupted, [loc.hook for loc in locs.values()])
    with torch.no_grad():
        joint = patched_forward(model, data.clean, [(loc, slice(None), cache[loc.hook]) for loc in locs.values()])
    assert got.joint == pytest.approx(float((joint.argmax(-1) == data.clean_labels).float().mean()))
    # captured source activations give the same numbers as source tokens
    same = strict_accuracy(model, data.clean, cache, locs, agree, data.clean_labels, data.mask)
    assert same == got
    empty = strict_accuracy(model, data.clean, data.corrupted, {}, agree, data.clean_labels, data.mask)
    assert (empty.mean, empty.min, empty.joint) == (1.0, 1.0, 1.0)
