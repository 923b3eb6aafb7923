"""The engine's own forward (core/fastpath.py) against the TransformerLens-hook path and the brute-force
per-edge reference of tests/core/test_patching.py: values and gradients, on every entry point."""

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from core.graph import Graph
from core.patching import PatchEngine
from methods.acdc import ACDC, NaiveACDC, given_order
from methods.attribution import EAP, EAPIG
from tests.helpers import random_data, random_model
from tests.core.test_patching import brute_force, corrupted_acts


def engines(model, graph, data, ablation="corrupted"):
    fast = PatchEngine(model, graph, data, "categorical", ablation=ablation)
    slow = PatchEngine(model, graph, data, "categorical", ablation=ablation, fast=False)
    assert fast.fast is not None, fast.fast_reason
    assert slow.fast is None
    return fast, slow


def masks_for(graph, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.cat([(torch.rand(3, graph.n_edges, generator=g) > 0.5).float(),
                      torch.rand(2, graph.n_edges, generator=g)])

def same_values_and_gradients(fast, slow, graph):
    """Both paths on the same masks: equal logits and equal, non-zero mask gradients (to 1e-9)."""
    masks = masks_for(graph).requires_grad_(True)
    a, b = fast.run(masks), slow.run(masks)
    assert (a - b).abs().max() < 1e-9
    ga, = torch.autograd.grad(fast.default_loss()(a).sum(), masks)
    gb, = torch.autograd.grad(slow.default_loss()(b).sum(), masks)
    assert ga.abs().sum() > 0 and (ga - gb).abs().max() < 1e-9
    return masks, a



@pytest.mark.parametrize("normalization", [None, "LN", "LNPre", "RMS", "RMSPre"])
@pytest.mark.parametrize("attn_only", [False, True])
def test_fast_equals_hooks_and_brute_force(normalization, attn_only):
    model = random_model(normalization, n_layers=3, n_heads=3, attn_only=attn_only)
    graph = Graph.from_model(model)
    data = random_data()
    fast, slow = engines(model, graph, data)
    masks = masks_for(graph)
    with torch.no_grad():
        a, b = fast.run(masks), slow.run(masks)
        assert (a - b).abs().max() < 1e-9
        ref = brute_force(model, graph, data.clean, corrupted_acts(model, data.corrupted), masks[3])
        assert (a[3] - ref).abs().max() < 1e-9
        for acts_f, acts_s in zip(fast.ablated, slow.ablated):
            assert (acts_f - acts_s).abs().max() < 1e-9


@pytest.mark.parametrize("split_qkv", [True, False])
@pytest.mark.parametrize("ablation", ["corrupted", "mean", "zero"])
def test_mask_gradients_and_probes_equal(split_qkv, ablation):
    model = random_model("LN", n_layers=2, n_heads=3)
    graph = Graph.from_model(model, split_qkv=split_qkv)
    fast, slow = engines(model, graph, random_data(), ablation)
    m = masks_for(graph).requires_grad_(True)
    grads = []
    for e in (fast, slow):
        loss = e.default_loss()(e.run(m)).sum() + e.run(m[:1]).square().mean()
        grads.append(torch.autograd.grad(loss, m)[0])
    assert grads[0].abs().sum() > 0 and (grads[0] - grads[1]).abs().max() < 1e-9
    gf, gs = fast.receiver_gradients(), slow.receiver_gradients()
    assert gf.keys() == gs.keys()
    assert all(gf[h].shape == gs[h].shape and (gf[h] - gs[h]).abs().max() < 1e-9 for h in gf)
    assert max(float(g.abs().max()) for g in gf.values()) > 0


@pytest.mark.parametrize("normalization", [None, "LN", "LNPre", "RMS", "RMSPre"])
@pytest.mark.parametrize("split_qkv", [True, False])
def test_receiver_gradients_equal_on_every_norm(normalization, split_qkv):
    """receiver_gradients at the full mask (the fast path's probes are linearised around the unsplit
    projection) equal the hook path's, for a loss whose gradient at the clean point is not zero, and
    through EAP-IG's sender and input overrides."""
    model = random_model(normalization, n_layers=3, n_heads=3)
    graph = Graph.from_model(model, split_qkv=split_qkv)
    fast, slow = engines(model, graph, random_data())

    def loss(logits):  # [K, n, pos, vocab] -> [K], curved, with a gradient at the clean point
        return (logits[..., 0] - logits[..., 1]).mean((1, 2)) + logits.square().mean((1, 2, 3))
    blend = lambda x: 0.5 * x  # noqa: E731
    for kw in ({}, {"sender_override": {1: blend}}, {"input_override": fast.clean_acts[0][:, :, 0] * 0.3}):
        gf, gs = fast.receiver_gradients(loss, **kw), slow.receiver_gradients(loss, **kw)
        assert gf.keys() == gs.keys()
        sizes = [float(g.abs().max()) for g in gs.values()]
        assert min(sizes) > 0 and max(sizes) > 1e-3  # every receiver gets a gradient, not float noise
        assert all((gf[h] - gs[h]).abs().max() < 1e-9 for h in gf)


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_run_from_equal(layer):
    model = random_model("LN", n_layers=3, n_heads=2)
    graph = Graph.from_model(model)
    fast, slow = engines(model, graph, random_data())
    masks = masks_for(graph)
    masks[:, fast._edges_into_layers_below(layer)] = 1.0
    with torch.no_grad():
        a = fast.run_from(layer, masks)
        assert (a - slow.run_from(layer, masks)).abs().max() < 1e-9
        assert (a - fast.run(masks)).abs().max() < 1e-9


@pytest.mark.parametrize("ablation", ["corrupted", "mean", "zero"])
def test_run_nodes_equal(ablation):
    model = random_model("LN", n_layers=2, n_heads=3)
    graph = Graph.from_model(model)
    fast, slow = engines(model, graph, random_data(), ablation)
    g = torch.Generator().manual_seed(4)
    gates = torch.rand(3, len(graph.senders), generator=g).requires_grad_(True)
    outs = [e.run_nodes(gates) for e in (fast, slow)]
    assert (outs[0] - outs[1]).abs().max() < 1e-9
    ga, gb = (torch.autograd.grad(fast.default_loss()(o).sum(), gates)[0] for o in outs)
    assert ga.abs().sum() > 0 and (ga - gb).abs().max() < 1e-9


def test_ablation_source_stays_pluggable():
    """The fast path reads ``engine.ablated`` (result space) at every run: replacing it changes runs
    exactly as on the hook path (a new ablation source only has to set it)."""
    model = random_model("LN")
    graph = Graph.from_model(model)
    fast, slow = engines(model, graph, random_data())
    g = torch.Generator().manual_seed(5)
    for e in (fast, slow):
        e.ablated = [torch.randn(a.shape, generator=torch.Generator().manual_seed(i), dtype=a.dtype)
                     for i, a in enumerate(e.ablated)]
    masks = masks_for(graph)
    gates = torch.rand(2, len(graph.senders), generator=g)
    senders, _ = graph.edge_sender_receiver()
    col = torch.tensor([graph.sender_index[s] for s in senders])
    with torch.no_grad():
        assert (fast.run(masks) - slow.run(masks)).abs().max() < 1e-9
        # node gating reads the same ablated values (the hook path's run_nodes keeps its own z cache)
        assert (fast.run_nodes(gates) - slow.run(gates[:, col])).abs().max() < 1e-9
        below = masks.clone()
        below[:, fast._edges_into_layers_below(1)] = 1.0
        assert (fast.run_from(1, below) - slow.run_from(1, below)).abs().max() < 1e-9


@pytest.mark.parametrize("variant", ["inputs", "activations", "clean-corrupted"])
def test_attribution_methods_equal(variant, toy):
    """EAP and EAP-IG (sender overrides, input interpolation) give the same scores on both paths."""
    from core.protocols import Problem

    case, model, data = toy
    graph = Graph.from_model(model)
    scores = []
    for fast in (True, False):
        problem = Problem(model, graph, data, case.output_type, seed=0, case_id="toy")
        problem._engine = PatchEngine(model, graph, data, case.output_type, fast=fast)
        out = [EAP().discover(problem), EAPIG(ig_variant=variant).discover(problem)]
        scores.append([torch.tensor([o.signed_edges[e] for e in graph.edges]) for o in out])
    for a, b in zip(*scores):
        assert a.abs().max() > 0 and (a - b).abs().max() <= 1e-5 * a.abs().max()


@pytest.mark.parametrize("n_heads", [1, 2])
def test_sender_overrides_see_the_hook_shape_and_node_methods_agree(n_heads):
    """A sender override gets the hook's shape on both paths: ``[n, pos, head, d]`` for a layer's heads, even
    with one head (compiled Tracr layers often have one: NAP and node EAP-IG failed there on the fast path
    before), ``[n, pos, d]`` for the embeddings and MLPs; NAP and node EAP-IG give the same scores on both."""
    from core.protocols import Problem
    from methods.node_attribution import NodeAttribution, sender_gradients

    model = random_model("LN", n_heads=n_heads)
    graph = Graph.from_model(model)
    data = random_data()
    fast, slow = engines(model, graph, data)
    shapes = []
    for engine in (fast, slow):
        seen = {}

        def spy(gi):
            def f(x):
                seen[gi] = tuple(x.shape)
                return x
            return f
        engine.run(engine.full_mask(), sender_override={gi: spy(gi) for gi in range(len(engine.senders))})
        shapes.append(seen)
        grads = sender_gradients(engine, engine.default_loss())
        assert [tuple(g.shape) for g in grads] == [tuple(d.shape) for d in engine.ablated_minus_clean()]
    assert shapes[0] == shapes[1]
    assert all(len(shapes[0][gi]) == (4 if g.per_head else 3) for gi, g in enumerate(fast.senders))
    scores = []
    for use_fast in (True, False):
        problem = Problem(model, graph, data, "categorical", seed=0, case_id="random")
        problem._engine = PatchEngine(model, graph, data, "categorical", fast=use_fast)
        outs = [NodeAttribution().discover(problem),
                NodeAttribution(integrated_grad_steps=3, ig_variant="activations").discover(problem)]
        scores.append([torch.tensor([o.signed_nodes[n] for n in sorted(o.signed_nodes)]) for o in outs])
    for a, b in zip(*scores):
        assert a.abs().max() > 0 and (a - b).abs().max() <= 1e-5 * a.abs().max()


def test_separate_pos_and_position_scrambling():
    model = random_model("LN")
    graph = Graph.from_model(model, separate_pos=True)
    data = random_data()
    g = torch.Generator().manual_seed(3)
    data.corrupted_pos = torch.stack([torch.randperm(data.clean.shape[1], generator=g) for _ in range(len(data))])
    fast, slow = engines(model, graph, data)
    masks = masks_for(graph)
    with torch.no_grad():
        assert (fast.run(masks) - slow.run(masks)).abs().max() < 1e-9
        assert (fast.corrupted_logits - slow.corrupted_logits).abs().max() < 1e-9
        hooks = [("hook_pos_embed", lambda x, hook: model.W_pos[data.corrupted_pos])]
        ref = model.run_with_hooks(data.corrupted, fwd_hooks=hooks)
        for e in (fast, slow):  # every edge ablated: the position-scrambled corrupted run
            assert (e.run(torch.zeros(graph.n_edges))[0] - ref).abs().max() < 1e-9


def test_bidirectional_attention():
    cfg = HookedTransformerConfig(n_layers=2, n_heads=2, d_model=12, d_head=4, d_mlp=16, d_vocab=7, n_ctx=5,
                                  act_fn="relu", normalization_type=None, attention_dir="bidirectional",
                                  use_attn_result=True, use_split_qkv_input=True, use_hook_mlp_in=True,
                                  default_prepend_bos=False, dtype=torch.float64, seed=0)
    model = HookedTransformer(cfg).eval()
    graph = Graph.from_model(model)
    data = random_data()
    fast, slow = engines(model, graph, data)
    masks = masks_for(graph)
    with torch.no_grad():
        a = fast.run(masks)
        assert (a - slow.run(masks)).abs().max() < 1e-9
        ref = brute_force(model, graph, data.clean, corrupted_acts(model, data.corrupted), masks[0])
        assert (a[0] - ref).abs().max() < 1e-9


def test_unsupported_config_falls_back_to_hooks():
    cfg = HookedTransformerConfig(n_layers=2, n_heads=2, d_model=12, d_head=4, d_mlp=16, d_vocab=7, n_ctx=5,
                                  act_fn="gelu", normalization_type="LN", positional_embedding_type="rotary",
                                  rotary_dim=4, use_attn_result=True, use_split_qkv_input=True, use_hook_mlp_in=True,
                                  default_prepend_bos=False, dtype=torch.float64, seed=0)
    model = HookedTransformer(cfg).eval()
    graph = Graph.from_model(model)
    data = random_data()
    engine = PatchEngine(model, graph, data, "categorical")
    assert engine.fast is None and "rotary" in engine.fast_reason
    masks = masks_for(graph)
    with torch.no_grad():
        ref = brute_force(model, graph, data.clean, corrupted_acts(model, data.corrupted), masks[1])
        assert (engine.run(masks)[1] - ref).abs().max() < 1e-9


def test_acdc_given_order_matches_naive(toy):
    from core.protocols import Problem

    case, model, data = toy
    graph = Graph.from_model(model)
    steps = given_order(graph, list(graph.edges)[::-1])  # receivers last-first, senders last-first
    assert [e for s in steps for e in s.edges] == list(range(graph.n_edges))[::-1]
    order = list(graph.edges)[::-1]
    outs = []
    for impl in (NaiveACDC, ACDC):
        problem = Problem(model, graph, data, case.output_type, seed=0, case_id="toy")
        outs.append(impl(thresholds=[1e-4, 1e-2], order="given", edge_order=order).discover(problem))
    assert [c.edges for _, c in outs[0].sweep] == [c.edges for _, c in outs[1].sweep]
    assert 0 < len(outs[1].sweep[0][1].edges) < graph.n_edges
    with pytest.raises(ValueError, match="exactly once"):
        ACDC(order="given", edge_order=order[1:]).discover(problem)
    with pytest.raises(ValueError, match="block by block"):
        ACDC(order="given", edge_order=order[::-1]).discover(problem)
    with pytest.raises(ValueError, match="edge_order"):
        ACDC(order="given")


def test_zero_padded_mlps_are_compacted_exactly():
    """Tracr pads every MLP to the largest d_mlp and leaves residual dimensions unread: the fast path
    skips dead hidden units and unread/unwritten dimensions, with the same values and gradients."""
    model = random_model(None, n_layers=2, n_heads=2, d_mlp=20)
    with torch.no_grad():
        for layer, block in enumerate(model.blocks):
            block.mlp.W_out[5 + layer:] = 0.0             # dead hidden units (no output)
            block.mlp.W_in[:, :3] = 0.0                   # and some with no input ...
            block.mlp.b_in[:2] = 0.0                      # ... and no bias (relu/gelu(0) = 0); unit 2 keeps its bias
            block.mlp.W_in[: 6 + layer] = 0.0             # residual dimensions the MLP does not read
            block.mlp.W_out[:, 8:] = 0.0                  # and does not write
    graph = Graph.from_model(model)
    data = random_data()
    fast, slow = engines(model, graph, data)
    assert all(fast.fast._compact(b.mlp) is not None for b in model.blocks)
    masks, a = same_values_and_gradients(fast, slow, graph)
    ref = brute_force(model, graph, data.clean, corrupted_acts(model, data.corrupted), masks[4].detach())
    assert (a[4] - ref).abs().max() < 1e-9


def test_zero_padded_heads_are_compacted_exactly():
    """Head dimensions that cannot contribute (zero query or key, zero value or output) are skipped;
    a layer whose heads write nothing skips its attention (Tracr layers without heads)."""
    model = random_model("LN", n_layers=3, n_heads=2)
    with torch.no_grad():
        a0, a1 = model.blocks[0].attn, model.blocks[1].attn
        a0.W_Q[:, :, :2] = 0.0
        a0.b_Q[:, :1] = 0.0                   # q/k dim 0 dead; dim 1 keeps a query bias
        a0.W_O[:, 3] = 0.0                    # v/o dim 3 dead
        a1.W_O.zero_()                        # layer 1 writes nothing
    graph = Graph.from_model(model)
    data = random_data()
    fast, slow = engines(model, graph, data)
    qk, vo = fast.fast._head_dims(a0)
    assert qk.tolist() == [1, 2, 3] and vo.tolist() == [0, 1, 2]
    assert fast.fast._head_dims(a1)[1].numel() == 0
    masks, a = same_values_and_gradients(fast, slow, graph)
    gates = torch.rand(2, len(graph.senders), generator=torch.Generator().manual_seed(0))
    senders, _ = graph.edge_sender_receiver()
    col = torch.tensor([graph.sender_index[s] for s in senders])
    with torch.no_grad():
        assert (fast.run_nodes(gates) - slow.run(gates[:, col])).abs().max() < 1e-9


def test_run_nodes_keep():
    """``keep``: those senders' gate columns are ignored (treated as 1, no gradient); both paths agree."""
    model = random_model("LN", n_layers=2, n_heads=2)
    graph = Graph.from_model(model)
    fast, slow = engines(model, graph, random_data())
    g = torch.Generator().manual_seed(6)
    gates = torch.rand(3, len(graph.senders), generator=g).requires_grad_(True)
    keep = torch.zeros(len(graph.senders), dtype=torch.bool)
    keep[0] = True
    ones = gates.detach().clone()
    ones[:, 0] = 1.0
    outs = [e.run_nodes(gates, keep=keep) for e in (fast, slow)]
    assert (outs[0] - outs[1]).abs().max() < 1e-9
    with torch.no_grad():
        assert (outs[0] - fast.run_nodes(ones)).abs().max() < 1e-9
    grad, = torch.autograd.grad(fast.default_loss()(outs[0]).sum(), gates)
    assert grad[:, 0].abs().max() == 0 and grad[:, 1:].abs().max() > 0


def _column_sparse_model():
    """A Tracr-like model: no normalisation, every head and MLP writes a few residual columns of its
    own (one MLP's bias writes a column its weights do not), one layer's heads write nothing."""
    model = random_model(None, n_layers=3, n_heads=2, d_mlp=12)  # d_model 12
    with torch.no_grad():
        for layer, block in enumerate(model.blocks):
            heads, mlp = torch.ones(12, dtype=torch.bool), torch.ones(12, dtype=torch.bool)
            heads[2 * layer:2 * layer + 2] = False  # layer l's heads write columns 2l, 2l + 1
            mlp[6 + 2 * layer:8 + 2 * layer] = False  # its MLP 6 + 2l, 7 + 2l
            block.attn.W_O[..., heads] = 0.0
            block.attn.b_O.zero_()
            block.attn.b_O[2 * layer] = 0.25
            block.mlp.W_out[:, mlp] = 0.0
            block.mlp.b_out.zero_()
        model.blocks[1].mlp.b_out[5] = 0.5  # a column nothing else writes
        model.blocks[2].attn.W_O.zero_()
        model.blocks[2].attn.b_O.zero_()
    return model


@pytest.mark.parametrize("ablation", ["corrupted", "mean", "zero", "dense source"])
def test_run_nodes_on_the_written_columns_equals_hooks(ablation):
    """Node gating forms and adds each gated output on the residual columns it (or its ablated value)
    writes: the same values and gate gradients as the hook path, with and without ``keep``; an ablated
    value that is nonzero everywhere (a pluggable source) widens the columns to what it writes."""
    model = _column_sparse_model()
    graph = Graph.from_model(model)
    fast, slow = engines(model, graph, random_data(), "mean" if ablation == "dense source" else ablation)
    if ablation == "dense source":
        for e in (fast, slow):
            e.ablated = [torch.randn(a.shape, generator=torch.Generator().manual_seed(i), dtype=a.dtype)
                         for i, a in enumerate(e.ablated)]
    g = torch.Generator().manual_seed(7)
    gates = torch.rand(3, len(graph.senders), generator=g, dtype=torch.float64).requires_grad_(True)
    keep = torch.zeros(len(graph.senders), dtype=torch.bool)
    keep[0] = True
    senders, _ = graph.edge_sender_receiver()
    col = torch.tensor([graph.sender_index[s] for s in senders])
    for kw in ({}, {"keep": keep}):
        kept = torch.where(keep, 1.0, gates) if kw else gates
        # the hook path's run_nodes gates z with its own cache of ablated z; a replaced ablated source is
        # read by its edge run (a node gate masks all its outgoing edges alike)
        outs = [fast.run_nodes(gates, **kw),
                slow.run(kept[:, col]) if ablation == "dense source" else slow.run_nodes(gates, **kw)]
        assert (outs[0] - outs[1]).abs().max() < 1e-9
        ga, gb = (torch.autograd.grad(fast.default_loss()(o).sum(), gates)[0] for o in outs)
        assert ga.abs().sum() > 0 and (ga - gb).abs().max() < 1e-9
    written = [c for _, _, c in fast.fast._cols_cache.values()]
    if ablation == "dense source":
        assert written and all(c is None for c in written)  # nonzero everywhere: dense adds
    else:
        # per layer its heads' and its MLP's columns (the MLP's of layer 1 with its bias-only column 5;
        # zero ablation: ablated values write nothing); one cache entry per sender group, however many runs
        assert sorted(c.tolist() for c in written) == sorted([[0, 1], [6, 7], [2, 3], [5, 8, 9], [], [10, 11]])


def test_engine_set_up_pairs_plain_runs_and_reuses_the_fast_forward():
    # the clean and corrupted plain runs share one fast pass: the same activations and logits as two
    # separate runs; a second engine on the same model reuses the checked FastForward (its weight caches),
    # which holds the model only weakly, so a dropped model is freed
    import gc
    import weakref

    model = random_model("LN", n_layers=2, n_heads=2)
    graph = Graph.from_model(model)
    data = random_data()
    a = PatchEngine(model, graph, data, "categorical")
    clean, clean_logits = a._fast_plain(a.clean, None)
    corr, corr_logits = a._fast_plain(data.corrupted, None)
    assert (a.clean_logits - clean_logits).abs().max() < 1e-12
    assert (a.corrupted_logits - corr_logits).abs().max() < 1e-12
    for x, y in zip(a.clean_acts + a.ablated, clean + corr):
        assert x.shape == y.shape and (x - y).abs().max() < 1e-12
    b = PatchEngine(model, graph, data, "categorical")
    assert b.fast is a.fast
    masks = masks_for(graph)
    with torch.no_grad():
        assert (b.run(masks) - PatchEngine(model, graph, data, "categorical", fast=False).run(masks)).abs().max() < 1e-9
    ref = weakref.ref(model)
    del model, a, b
    gc.collect()
    assert ref() is None


def test_receiver_gradients_leave_parameters_as_they_were():
    # the gradient pass records no graph through the weights, and puts requires_grad back, also on error
    model = random_model("LN", n_layers=2, n_heads=2)
    model.blocks[0].attn.W_Q.requires_grad_(False)  # one frozen by the user stays frozen
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    engine = PatchEngine(model, Graph.from_model(model), random_data(), "categorical")
    grads = engine.receiver_gradients()
    assert any(g.abs().sum() > 0 for g in grads.values())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == before

    def failing(logits):
        assert not any(p.requires_grad for p in model.parameters())
        raise RuntimeError("loss failed")
    with pytest.raises(RuntimeError, match="loss failed"):
        engine.receiver_gradients(failing)
    assert {n: p.requires_grad for n, p in model.named_parameters()} == before
