"""The 2025 frontier methods (issue 23): each method's defining property.

IFR: proportions sum to 1 per receiver. NAP: the sum of its edges' EAP, and the exact node effect on
a linear model. Edge Pruning: the hard-concrete L0 term drives masks to {0, 1} and the target
sparsity is met. Optimal ablation: the learned constants lower each component's ablated loss below
mean ablation's. AtP*: exact where the loss is linear after the softmax; on a compiled Tracr case it
recovers the query/key edges plain EAP scores ~0, agreeing with exact patching.
"""

import numpy as np
import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from core.graph import Graph
from core.protocols import Problem
from methods import get_method, method_names
from methods.atp_star import AtPStar
from methods.attribution import EAP, ExactPatching, _node_edges
from methods.edge_pruning import EdgePruning, SigmoidMasks
from methods.ifr import InformationFlowRoutes, proportions, receiver_inputs
from methods.node_attribution import NodeAttribution, NodeEAPIG
from methods.sp import GAMMA, ZETA, init_log_alpha, sample_gates
from tests.helpers import random_data, random_model
from tests.methods.test_attribution import linear_model


def problem_for(model, data, output_type="categorical", ablation="corrupted", split_qkv=True):
    return Problem(model, Graph.from_model(model, split_qkv=split_qkv), data, output_type, ablation=ablation)


def test_registered_and_constructible():
    for name in ("ifr", "nap", "node-eap-ig", "atp-star", "atp-qk", "edge-pruning", "ugs"):
        assert name in method_names()
        assert get_method(name).name == name


# ---- IFR ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("split_qkv", [True, False])
def test_ifr_proportions_sum_to_one_per_receiver(split_qkv):
    problem = problem_for(random_model("LN", seed=3), random_data(seed=3), split_qkv=split_qkv)
    out = InformationFlowRoutes().discover(problem)
    graph = problem.graph
    s = np.array([out.edge_scores[e] for e in graph.edges])
    assert (s >= 0).all() and (s <= 1).all()
    _, receivers = graph.edge_sender_receiver()
    # per receiver node (q/k/v share the residual stream, so each of them sums to 1 too)
    sums = {}
    for e, name in enumerate(graph.edges):
        key = name.split("->")[1]
        sums[key] = sums.get(key, 0.0) + s[e]
    assert sums and all(abs(v - 1) < 1e-9 for v in sums.values()), sums
    if split_qkv:
        assert out.edge_scores["input->a1.h0<q>"] == out.edge_scores["input->a1.h0<k>"]


def test_ifr_formula_by_hand():
    """proportion = max(0, |x|_1 - |x - a_u|_1) / sum over senders, zero where every proximity is 0."""
    x = torch.tensor([[[[1.0, 2.0]]]])                              # [n=1, pos=1, r=1, d=2]
    a = torch.tensor([[[[1.0, 0.0], [0.0, 2.0], [-5.0, 0.0]]]])     # three senders
    p = proportions(x, a)[0, 0, :, 0]
    # |x| = 3; |x - a|: 2, 1, 8 -> proximities 1, 2, 0
    assert torch.allclose(p, torch.tensor([1 / 3, 2 / 3, 0.0]))
    assert torch.equal(proportions(torch.zeros(1, 1, 1, 2), a)[0, 0, :, 0], torch.zeros(3))


def test_ifr_reads_the_real_receiver_inputs(toy):
    case, model, data = toy
    problem = Problem(model, Graph.from_model(model), data, case.output_type)
    engine = problem.engine()
    inputs = receiver_inputs(engine)
    # logits receiver = resid_post = sum of every sender + biases: check against the senders' sum
    acts = torch.cat(engine.clean_acts, dim=2).sum(2)
    resid = inputs[f"blocks.{problem.graph.n_layers - 1}.hook_resid_post"][:, :, 0]
    bias = resid - acts
    assert torch.allclose(bias, bias[:1, :1].expand_as(bias), atol=1e-4)  # constant across examples/positions


# ---- NAP / node-level EAP-IG ---------------------------------------------------------------------------
def test_nap_is_the_sum_of_its_edges_eap_and_exact_on_a_linear_model():
    model = linear_model()
    problem = problem_for(model, random_data())
    nap = NodeAttribution(attribution_metric="logit").discover(problem)
    eap = EAP(attribution_metric="logit").discover(problem).signed_edges
    exact = ExactPatching(attribution_metric="logit").discover(problem).signed_nodes
    node_edges = _node_edges(problem.graph)
    assert max(abs(v) for v in nap.signed_nodes.values()) > 1e-2  # not vacuous
    for node, idx in node_edges.items():
        total = sum(eap[problem.graph.edges[i]] for i in idx.tolist())
        assert abs(nap.signed_nodes[node] - total) < 1e-9, node
        assert abs(nap.signed_nodes[node] - exact[node]) < 1e-6, node  # linear: first order is exact


def test_nap_sum_identity_on_a_nonlinear_model_and_node_ig():
    problem = problem_for(random_model("LN", seed=4), random_data(seed=4))
    nap = NodeAttribution().discover(problem).signed_nodes
    eap = EAP().discover(problem).signed_edges
    for node, idx in _node_edges(problem.graph).items():
        assert abs(nap[node] - sum(eap[problem.graph.edges[i]] for i in idx.tolist())) < 1e-8
    # node EAP-IG with one step is NAP; with m steps it is the sum of edge-level EAP-IG (inputs)
    assert NodeEAPIG(integrated_grad_steps=1).discover(problem).signed_nodes == nap
    ig = NodeEAPIG(integrated_grad_steps=3).discover(problem).signed_nodes
    edge_ig = get_method("eap-ig", integrated_grad_steps=3).discover(problem).signed_edges
    for node, idx in _node_edges(problem.graph).items():
        assert abs(ig[node] - sum(edge_ig[problem.graph.edges[i]] for i in idx.tolist())) < 1e-8
    with pytest.raises(ValueError, match="ablation='corrupted'"):
        NodeEAPIG().discover(problem_for(random_model("LN", seed=4), random_data(seed=4), ablation="mean"))


def test_nap_recovers_the_toy_nodes(toy):
    case, model, data = toy
    from benchmark.runner import method_roc
    problem = Problem(model, Graph.from_model(model), data, case.output_type)
    out = NodeAttribution().discover(problem)
    roc = method_roc(out, case.ground_truth(), problem.graph)
    assert roc["nodes_no_endpoints"]["auroc"] == 1.0


# ---- Edge Pruning ----------------------------------------------------------------------------------------
def test_edge_pruning_meets_the_target_and_masks_go_to_0_or_1(toy):
    case, model, data = toy
    problem = Problem(model, Graph.from_model(model), data, case.output_type, seed=0)
    method = EdgePruning(sparsity_targets=[0.8], epochs=200, lr=0.1)
    log_alpha = method._train(problem, None, [0.8])[0]
    E = problem.graph.n_edges
    # the target: expected sparsity and the read-out circuit's sparsity near 0.8
    kept = int((log_alpha > 0).sum())
    assert abs((1 - kept / E) - 0.8) <= 0.08, kept
    # hard-concrete samples are exactly 0 or 1 for almost every edge after training (not at the start)
    g = torch.Generator().manual_seed(1)
    u = torch.rand(200, E, generator=g).clamp(1e-6, 1 - 1e-6)
    z = sample_gates(log_alpha.float(), u)
    z0 = sample_gates(torch.full((E,), init_log_alpha(0.9)), u)
    binary = ((z == 0) | (z == 1)).float().mean()
    assert binary > 0.9, binary
    assert ((z0 == 0) | (z0 == 1)).float().mean() < binary
    assert GAMMA < 0 < 1 < ZETA


def test_edge_pruning_sweep_and_penalty_mode(toy):
    case, model, data = toy
    problem = Problem(model, Graph.from_model(model), data, case.output_type)
    out = EdgePruning(sparsity_targets=[0.5, 0.9], epochs=60).discover(problem)
    sizes = [len(c.edges) for _, c in out.sweep]
    assert [p for p, _ in out.sweep] == [0.5, 0.9] and sizes[0] > sizes[1]
    assert out.info["sparsity_targets"] == [0.5, 0.9]
    pen = EdgePruning(lambdas=[0.01], epochs=5)
    assert pen.params()["mode"] == "penalty" and "sparsity_targets" not in pen.params()
    with pytest.raises(ValueError):
        EdgePruning(sparsity_targets=[1.5])
    with pytest.raises(ValueError):
        EdgePruning(sparsity_targets=[0.5], lambdas=[0.1])


def test_ugs_sigmoid_masks_are_deterministic_and_scored_by_theta(toy):
    case, model, data = toy
    problem = Problem(model, Graph.from_model(model), data, case.output_type)
    m = SigmoidMasks(lambdas=[0.01, 1.0], epochs=40)
    a, b = m.discover(problem), m.discover(problem)
    assert a.edge_scores == b.edge_scores
    assert all(0 < v < 1 for v in a.edge_scores.values())
    assert len(a.sweep[0][1].edges) >= len(a.sweep[1][1].edges)


# ---- optimal ablation ------------------------------------------------------------------------------------
def test_optimal_ablation_beats_mean_ablation_on_the_toy(toy):
    case, model, data = toy
    graph = Graph.from_model(model)
    opt = Problem(model, graph, data, case.output_type, ablation="optimal").engine()
    mean = Problem(model, graph, data, case.output_type, ablation="mean").engine()
    total_mean = total_opt = 0.0
    for node, idx in _node_edges(graph).items():
        mask = torch.ones(graph.n_edges)
        mask[idx] = 0
        lm, lo = float(mean.evaluate(mask)[0]), float(opt.evaluate(mask)[0])
        assert lo <= lm + 1e-6, node
        total_mean, total_opt = total_mean + lm, total_opt + lo
        info = opt.ablation_info["per_component"][node]
        assert abs(info["optimal_ablation_loss"] - lo) < 1e-4 and abs(info["mean_ablation_loss"] - lm) < 1e-4
    assert total_opt < 0.9 * total_mean, (total_opt, total_mean)
    # node gating at hook_z (run_nodes) sees the same constants as edge masks
    gates = torch.ones(len(graph.senders))
    gates[1] = 0
    keep = graph.node_edge_mask([s for i, s in enumerate(graph.senders) if i != 1])
    keep = torch.maximum(keep, torch.tensor([0.0 if n.startswith(graph.senders[1] + "->") else 1.0
                                             for n in graph.edges]))
    assert (opt.run_nodes(gates) - opt.run(keep)).abs().max() < 1e-4
    # every method runs on it
    out = EAP().discover(Problem(model, graph, data, case.output_type, ablation="optimal"))
    assert max(out.edge_scores.values()) > 0


def test_optimal_ablation_constants_are_cached_by_what_they_depend_on(toy, tmp_path, monkeypatch):
    from core import optimal_ablation as oa
    case, model, data = toy
    graph = Graph.from_model(model)
    monkeypatch.setenv(oa.CACHE_ENV, str(tmp_path))

    def engine(d=data):
        return Problem(model, graph, d, case.output_type, ablation="optimal").engine()
    first, second = engine(), engine()
    assert first.ablation_info["cache"] == "computed" and second.ablation_info["cache"] == "read"
    [entry] = tmp_path.glob("*.pt")
    assert entry.stem == first.ablation_info["cache_key"] == second.ablation_info["cache_key"]
    assert all(torch.equal(a, b) for a, b in zip(first.ablated, second.ablated))
    assert first.ablation_info["per_component"] == second.ablation_info["per_component"]
    mask = torch.ones(graph.n_edges)
    mask[:3] = 0
    assert torch.equal(first.evaluate(mask), second.evaluate(mask))
    # other data (or other steps) is another key: computed, not read
    other = engine(data.subset(list(range(len(data) - 1))))
    assert other.ablation_info["cache"] == "computed" and len(list(tmp_path.glob("*.pt"))) == 2
    assert oa.cache_key(first, 5, oa.LR) != oa.cache_key(first, oa.STEPS, oa.LR)
    # a truncated entry is recomputed and replaced, never a crash
    entry.write_bytes(entry.read_bytes()[:50])
    again = engine()
    assert again.ablation_info["cache"] == "computed" and "unreadable" in again.ablation_info["cache_replaced"]
    assert all(torch.equal(a, b) for a, b in zip(first.ablated, again.ablated))
    assert engine().ablation_info["cache"] == "read"
    monkeypatch.setenv(oa.CACHE_ENV, "off")
    assert engine().ablation_info["cache"] == "off"


# ---- AtP* ------------------------------------------------------------------------------------------------
def one_layer_attention(seed=0):
    cfg = HookedTransformerConfig(n_layers=1, n_heads=2, d_model=8, d_head=4, d_vocab=7, n_ctx=5, attn_only=True,
                                  normalization_type=None, act_fn="relu", seed=seed, use_attn_result=True,
                                  use_split_qkv_input=True, default_prepend_bos=False, dtype=torch.float64)
    model = HookedTransformer(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * (3.0 if p.dim() == 3 else 0.5))
    return model.eval()


def test_atp_star_qk_fix_is_exact_when_the_loss_is_linear_after_the_softmax():
    """One attention layer, no normalisation, logit metric: the loss is linear in the pattern and in the
    values, so the QK fix is exact for q/k edges (and AtP for v/logits edges), while plain EAP is not."""
    problem = problem_for(one_layer_attention(), random_data())
    graph = problem.graph
    exact = ExactPatching(attribution_metric="logit").discover(problem).signed_edges
    atp = AtPStar(grad_drop=False, attribution_metric="logit").discover(problem).signed_edges
    eap = EAP(attribution_metric="logit").discover(problem).signed_edges
    qk = [e for e in graph.edges if e.endswith(("<q>", "<k>"))]
    assert max(abs(exact[e]) for e in qk) > 1e-2
    assert max(abs(atp[e] - exact[e]) for e in graph.edges) < 1e-9
    assert max(abs(eap[e] - exact[e]) for e in qk) > 1e-3  # plain EAP is only first order through softmax


def test_atp_star_grad_drop_equals_abs_atp_without_cancellation():
    """A single layer cannot cancel across layers: GradDrop's mean over the other layers is |AtP| for
    logits edges (every layer's drop leaves them alone) and the only other term for in-block edges."""
    problem = problem_for(random_model("LN", seed=5, n_layers=2), random_data(seed=5))
    gd = AtPStar(grad_drop=True).discover(problem)
    plain = AtPStar(grad_drop=False, absolute=False).discover(problem).signed_edges
    for e in problem.graph.edges:
        if e.endswith("->logits"):
            assert abs(gd.edge_scores[e] - abs(plain[e])) < 1e-9
        if "->a1." in e or e.endswith("->m1"):  # layer 1 receivers: only layer 0's drop counts, which leaves them
            assert abs(gd.edge_scores[e] - abs(plain[e])) < 1e-9
    assert gd.signed_edges == plain
    # one layer: in-block receivers have no other layer to drop and keep |AtP|
    one = problem_for(random_model("LN", seed=6, n_layers=1), random_data(seed=6))
    gd1 = AtPStar(grad_drop=True).discover(one)
    plain1 = AtPStar(grad_drop=False, absolute=False).discover(one).signed_edges
    assert max(abs(gd1.edge_scores[e] - abs(plain1[e])) for e in one.graph.edges) < 1e-12
    assert max(plain1.values(), key=abs) != 0
    assert get_method("atp-qk").discover(one).signed_edges == plain1


@pytest.fixture(scope="module")
def tracr12():
    from cases import get_case

    case = get_case("12")
    model = case.load_model()
    return case, model, case.dataset(40, seed=0)


def test_atp_star_recovers_query_key_edges_eap_misses_on_tracr(tracr12):
    """Compiled Tracr attention is near-hard: EAP's gradient through the softmax is ~0 on the true q/k
    edges of case 12, exact patching gives them O(0.1) effects; AtP*'s QK fix recovers them."""
    case, model, data = tracr12
    problem = Problem(model, Graph.from_model(model), data, case.output_type)
    exact = ExactPatching().discover(problem).signed_edges
    eap = EAP().discover(problem).signed_edges
    atp = AtPStar(grad_drop=False).discover(problem).signed_edges
    truth = case.ground_truth().merged().edges
    blind = [e for e in problem.graph.edges if e.endswith(("<q>", "<k>")) and abs(exact[e]) > 0.05]
    assert len(blind) >= 4
    for e in blind:
        assert e.split("<")[0] in truth
        assert abs(eap[e]) < 1e-3 * abs(exact[e]), (e, eap[e], exact[e])       # EAP: ~0
        assert np.sign(atp[e]) == np.sign(exact[e]), e                            # AtP*: agrees with exact
        assert 0.6 < atp[e] / exact[e] < 1.6, (e, atp[e], exact[e])
    # ranking: every such edge ranks above every edge whose exact effect is 0
    zero = [e for e in problem.graph.edges if abs(exact[e]) < 1e-9]
    assert min(abs(atp[e]) for e in blind) > max(abs(atp[e]) for e in zero)
    assert min(abs(eap[e]) for e in blind) < max(abs(eap[e]) for e in problem.graph.edges) * 1e-3


# ---- the CLI ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["ifr"], ["nap"], ["node-eap-ig", "--integrated-grad-steps", "2"], ["atp-star", "--no-grad-drop"],
    ["edge-pruning", "--sparsity-targets", "0.5", "0.9", "--epochs", "5"], ["ugs", "--lambdas", "0.1", "--epochs", "5"],
    ["eap", "--ablation", "optimal"],
])
def test_cli_run_of_each_method(tmp_path, argv):
    import json

    from benchmark.cli import main
    from core.results import iter_results

    assert main(["run", *argv, "-i", "toy", "-n", "16", "--out", str(tmp_path)]) == 0
    [(path, doc)] = list(iter_results(tmp_path))
    assert doc["status"] == "ok" and doc["method"] == argv[0]
    assert doc["roc"]["edges"]["auroc"] is not None or doc["roc"]["nodes"]["auroc"] is not None
    if "optimal" in argv:
        assert doc["data"]["ablation"] == "optimal" and doc["ablation_info"]["ablation"] == "optimal"
    json.dumps(doc)


def test_cli_rejects_bad_frontier_flags(tmp_path, capsys):
    from benchmark.cli import main

    from core.results import iter_results

    # bad hyper-parameter values: a one-line usage error with the method's reason, exit 2, before any
    # work, and no result file (issue 18's validation before work)
    for argv, why in ((["run", "edge-pruning", "--sparsity-targets", "2"], "sparsity_targets must be in [0, 1)"),
                      (["run", "nap", "--integrated-grad-steps", "0"], "integrated_grad_steps must be a positive integer"),
                      # a method that cannot use the ablation: refused before the model is even loaded
                      (["run", "eap-ig", "--ablation", "optimal"], "needs ablation='corrupted' (got 'optimal')"),
                      (["benchmark", "--cases", "toy", "--methods", "eap", "node-eap-ig", "--ablation", "mean"],
                       "needs ablation='corrupted' (got 'mean')")):
        assert main([*argv, *(["-i", "toy"] if argv[0] == "run" else []), "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip()
        assert why in err and len(err.splitlines()) == 1, err
    assert not list(iter_results(tmp_path))
    assert main(["run", "eap", "-i", "toy", "--ablation", "optimum", "--out", str(tmp_path)]) == 2
