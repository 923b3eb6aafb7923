"""The patching engine against a brute-force, per-edge reference built from first principles."""

import pytest
import torch

from core.graph import Graph
from core.patching import PatchEngine
from tests.helpers import random_data, random_model


def brute_force(model, graph, clean, ablated_acts, mask):
    """Reference: each receiver's input is rebuilt as (its clean-model constant part) plus, for every
    incoming edge separately, the sender's *current* output if the edge is kept (weight m) and its
    ablated output otherwise (weight 1 - m). Python loops over edges, no batching, no einsum."""
    senders = graph.senders

    def sender_value(acts, s):
        if s == "input":
            return acts["blocks.0.hook_resid_pre"]
        if s.startswith("a"):
            l, h = s[1:].split(".h")
            return acts[f"blocks.{l}.attn.hook_result"][:, :, int(h)]
        return acts[f"blocks.{s[1:]}.hook_mlp_out"]

    cur: dict[str, torch.Tensor] = {}
    edge_w = {e: float(mask[i]) for i, e in enumerate(graph.edges)}

    def grab(x, hook):
        cur[hook.name] = x
        return x

    def make_receiver(r_list):
        def hook(x, hook):
            x = x.clone()
            for r in r_list:
                # constant part: receiver input minus the sum of its senders, in this same run
                total = sum(sender_value(cur, senders[s]) for s in range(r.n_senders))
                new = 0
                for s in range(r.n_senders):
                    name = f"{senders[s]}->{r.name}" if graph.split_qkv or not r.qkv else f"{senders[s]}->{r.node}"
                    w = edge_w[name]
                    new = new + w * sender_value(cur, senders[s]) + (1 - w) * sender_value(ablated_acts, senders[s])
                if r.head is None:
                    x = x - total + new
                else:
                    x[:, :, r.head] = x[:, :, r.head] - total + new
            return x
        return hook

    by_hook = {}
    for r in graph.receivers:
        by_hook.setdefault(r.hook, []).append(r)
    sender_hooks = ["blocks.0.hook_resid_pre"] + [f"blocks.{l}.attn.hook_result" for l in range(graph.n_layers)]
    if graph.has_mlp:
        sender_hooks += [f"blocks.{l}.hook_mlp_out" for l in range(graph.n_layers)]
    hooks = [(h, grab) for h in sender_hooks] + [(h, make_receiver(rs)) for h, rs in by_hook.items()]
    return model.run_with_hooks(clean, fwd_hooks=hooks)


def corrupted_acts(model, tokens):
    _, cache = model.run_with_cache(tokens)
    return dict(cache.items())


@pytest.mark.parametrize("normalization", [None, "LN"])
@pytest.mark.parametrize("split_qkv", [True, False])
@pytest.mark.parametrize("attn_only", [False, True])
def test_engine_matches_brute_force(normalization, split_qkv, attn_only):
    model = random_model(normalization, attn_only=attn_only)
    graph = Graph.from_model(model, split_qkv=split_qkv)
    data = random_data()
    engine = PatchEngine(model, graph, data, "categorical")
    ref_acts = corrupted_acts(model, data.corrupted)
    g = torch.Generator().manual_seed(1)
    masks = torch.cat([(torch.rand(4, graph.n_edges, generator=g) > 0.5).float(),
                       torch.rand(2, graph.n_edges, generator=g)])  # binary and fractional masks, batched
    with torch.no_grad():
        batched = engine.run(masks)
        for k in range(masks.shape[0]):
            ref = brute_force(model, graph, data.clean, ref_acts, masks[k])
            assert (batched[k] - ref).abs().max() < 1e-5


@pytest.mark.parametrize("normalization", [None, "LN"])
def test_full_and_empty_masks(normalization):
    model = random_model(normalization, n_layers=3, n_heads=3, dtype=torch.float32)
    graph = Graph.from_model(model)
    data = random_data()
    engine = PatchEngine(model, graph, data, "categorical")
    with torch.no_grad():
        full = engine.run(torch.ones(graph.n_edges))[0]
        empty = engine.run(torch.zeros(graph.n_edges))[0]
        assert (full - model(data.clean)).abs().max() < 1e-5
        assert (empty - model(data.corrupted)).abs().max() < 1e-5
    assert engine.evaluate(torch.ones(graph.n_edges)).abs().max() < 1e-6


def test_zero_and_mean_ablation_empty_mask():
    model = random_model(None)
    graph = Graph.from_model(model)
    data = random_data()
    zero = PatchEngine(model, graph, data, "categorical", ablation="zero")
    mean = PatchEngine(model, graph, data, "categorical", ablation="mean")

    def replace_all(value_fn):
        hooks = [("blocks.0.hook_resid_pre", lambda x, hook: value_fn(x))]
        hooks += [(f"blocks.{l}.attn.hook_result", lambda x, hook: value_fn(x)) for l in range(2)]
        hooks += [(f"blocks.{l}.hook_mlp_out", lambda x, hook: value_fn(x)) for l in range(2)]
        return hooks

    with torch.no_grad():
        # Every edge ablated == every sender output replaced, for the receivers that read them.
        ref_zero = model.run_with_hooks(data.clean, fwd_hooks=replace_all(torch.zeros_like))
        assert (zero.run(torch.zeros(graph.n_edges))[0] - ref_zero).abs().max() < 1e-5
        _, cache = model.run_with_cache(data.clean)
        means = {k: v.mean(0, keepdim=True) for k, v in cache.items()}
        hooks = [(h, (lambda x, hook: means[hook.name].expand_as(x).clone()))
                 for h, _ in replace_all(lambda x: x)]
        ref_mean = model.run_with_hooks(data.clean, fwd_hooks=hooks)
        assert (mean.run(torch.zeros(graph.n_edges))[0] - ref_mean).abs().max() < 1e-5


def test_mask_gradient_is_differentiable():
    model = random_model(None)
    graph = Graph.from_model(model)
    engine = PatchEngine(model, graph, random_data(), "categorical")
    m = torch.full((graph.n_edges,), 0.7, requires_grad=True)
    engine.default_loss()(engine.run(m)).sum().backward()
    assert m.grad is not None and m.grad.abs().sum() > 0


@pytest.mark.parametrize("L,H", [(1, 1), (2, 2), (3, 4), (4, 3)])
@pytest.mark.parametrize("split", [True, False])
def test_edge_count_formula(L, H, split):
    g = Graph(L, H, split_qkv=split)
    assert g.n_edges == Graph.expected_edge_count(L, H, split_qkv=split)
    assert len(set(g.edges)) == g.n_edges


def test_gpt2_small_edge_count():
    assert Graph(12, 12).n_edges == 32491  # MIB's count for GPT-2 small


def test_toy_planted_circuit_edges_matter(toy):
    case, model, data = toy
    graph = Graph.from_model(model)
    engine = PatchEngine(model, graph, data, case.output_type)
    gt = graph.mask_for(case.ground_truth())
    masks = torch.ones(graph.n_edges + 1, graph.n_edges)
    masks[:-1] -= torch.eye(graph.n_edges)          # one edge removed per row; the last row removes none
    *effects, full = engine.evaluate(masks)
    effects = torch.stack(effects)
    assert (effects[gt == 1] > 1e-7).all()          # every planted edge matters
    # every other edge is exactly irrelevant: its row equals the unablated row of the same batch bit for
    # bit. (That row is the clean model up to float32 rounding: a batch that recomputes layer 0 differs
    # from the cached clean logits in the last bits on some CPUs: KL 6.9e-9 on an AMD EPYC, 0 elsewhere.)
    assert (effects[gt == 0] == full).all()
    assert full.abs() < 1e-7
    assert engine.evaluate(gt).abs().max() < 1e-6  # the planted circuit alone is the model


def test_position_scrambled_corrupted_run():
    model = random_model(None)
    graph = Graph.from_model(model)
    data = random_data()
    g = torch.Generator().manual_seed(3)
    pos = torch.stack([torch.randperm(data.clean.shape[1], generator=g) for _ in range(len(data))])
    data.corrupted_pos = pos
    engine = PatchEngine(model, graph, data, "categorical")
    with torch.no_grad():
        hooks = [("hook_pos_embed", lambda x, hook: model.W_pos[pos])]
        ref = model.run_with_hooks(data.corrupted, fwd_hooks=hooks)
        assert (engine.run(torch.zeros(graph.n_edges))[0] - ref).abs().max() < 1e-9
        assert (engine.corrupted_logits - ref).abs().max() < 1e-12


@pytest.mark.parametrize("normalization", [None, "LN"])
@pytest.mark.parametrize("attn_only", [False, True])
@pytest.mark.parametrize("ablation", ["corrupted", "mean", "zero"])
def test_node_gates_equal_edge_masks(normalization, attn_only, ablation):
    """run_nodes (a sender's output moved towards its ablated value) == run with every outgoing edge of
    the sender masked by its gate; values and gradients."""
    model = random_model(normalization, attn_only=attn_only)
    graph = Graph.from_model(model)
    engine = PatchEngine(model, graph, random_data(), "categorical", ablation=ablation)
    senders, _ = graph.edge_sender_receiver()
    col = torch.tensor([graph.sender_index[s] for s in senders])
    g = torch.Generator().manual_seed(2)
    gates = torch.cat([(torch.rand(2, len(graph.senders), generator=g) > 0.5).float(),
                       torch.rand(2, len(graph.senders), generator=g)]).requires_grad_(True)
    by_nodes = engine.run_nodes(gates)
    by_edges = engine.run(gates[:, col])
    assert (by_nodes - by_edges).abs().max() < 1e-5
    grad_nodes, = torch.autograd.grad(engine.default_loss()(by_nodes).sum(), gates)
    grad_edges, = torch.autograd.grad(engine.default_loss()(by_edges).sum(), gates)
    assert grad_nodes.abs().sum() > 0 and (grad_nodes - grad_edges).abs().max() < 1e-5
    with pytest.raises(ValueError, match="senders"):
        engine.run_nodes(torch.ones(len(graph.senders) + 1))
