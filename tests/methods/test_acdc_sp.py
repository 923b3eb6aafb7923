"""ACDC (batched == naive, planted circuit) and Subnetwork Probing (planted circuit, determinism)."""

import pytest
import torch
from sklearn.metrics import roc_auc_score

from core.graph import Graph
from core.protocols import Problem
from methods import get_method
from methods.acdc import ACDC, NaiveACDC, default_thresholds, visiting_order
from methods.sp import SubnetworkProbing
from tests.helpers import random_data, random_model


def small_model(normalization="LN", attn_only=False, seed=0):
    return random_model(normalization, attn_only=attn_only, seed=seed, d_mlp=16, scale=0.5)


def small_data(n=8, seq=5, vocab=7, seed=0):
    return random_data(n=n, seq=seq, vocab=vocab, seed=seed)


@pytest.fixture(scope="module")
def toy_problem(toy):
    case, model, data = toy
    graph = Graph.from_model(model)
    return case, Problem(model, graph, data, case.output_type, seed=0)


def auroc(out, graph, truth):
    gt = graph.mask_for(truth).numpy()
    return roc_auc_score(gt, [out.edge_scores[e] for e in graph.edges])


# ---- the engine's restart used by ACDC ---------------------------------------------------------------
@pytest.mark.parametrize("separate_pos", [False, True])
@pytest.mark.parametrize("attn_only", [False, True])
def test_run_from_matches_run(separate_pos, attn_only):
    model = small_model(attn_only=attn_only)
    graph = Graph.from_model(model, separate_pos=separate_pos)
    engine = Problem(model, graph, small_data(), "categorical").engine()
    g = torch.Generator().manual_seed(0)
    for layer in range(graph.n_layers):
        masks = (torch.rand(4, graph.n_edges, generator=g) > 0.5).double()
        masks[:, engine._edges_into_layers_below(layer)] = 1.0
        with torch.no_grad():
            assert (engine.run_from(layer, masks) - engine.run(masks)).abs().max() < 1e-10
    if graph.n_layers > 1:
        with pytest.raises(ValueError):
            engine.run_from(1, torch.zeros(graph.n_edges))


# ---- ACDC --------------------------------------------------------------------------------------------
def test_visiting_order():
    graph = Graph(2, 2)
    steps, _ = visiting_order(graph)
    assert [s.name for s in steps[:4]] == ["logits", "m1", "a1.h1<v>", "a1.h0<v>"]
    assert steps[-1].name == "a0.h0<q>"
    assert [graph.edges[e].split("->")[0] for e in steps[0].edges] == ["m1", "a1.h1", "a1.h0", "m0", "a0.h1",
                                                                       "a0.h0", "input"]
    assert sorted(e for s in steps for e in s.edges) == list(range(graph.n_edges))
    unsplit = Graph(2, 2, split_qkv=False)
    steps, _ = visiting_order(unsplit)
    assert [s.name for s in steps[:3]] == ["logits", "m1", "a1.h1"]
    assert sorted(e for s in steps for e in s.edges) == list(range(unsplit.n_edges))


@pytest.mark.parametrize("tau", [1e-6, 3e-4, 3e-3, 1e-2, 3e-2, 0.1])
def test_acdc_matches_naive_toy(toy_problem, tau):
    _, problem = toy_problem
    fast, naive = ACDC(threshold=tau).discover(problem), NaiveACDC(threshold=tau).discover(problem)
    assert fast.sweep[0][1] == naive.sweep[0][1]
    assert fast.info["passes"] <= naive.info["passes"]


@pytest.mark.parametrize("normalization,attn_only,split_qkv,abs_value",
                         [("LN", False, True, False), (None, False, True, True),
                          ("LN", True, True, False), ("LN", False, False, False)])
def test_acdc_matches_naive_random(normalization, attn_only, split_qkv, abs_value):
    model = small_model(normalization, attn_only=attn_only)
    graph = Graph.from_model(model, split_qkv=split_qkv)
    problem = Problem(model, graph, small_data(), "categorical")
    taus = [1e-4, 1e-3, 1e-2, 3e-2, 0.1]
    fast = ACDC(thresholds=taus, abs_value_threshold=abs_value).discover(problem)
    naive = NaiveACDC(thresholds=taus, abs_value_threshold=abs_value).discover(problem)
    sizes = [len(c.edges) for _, c in naive.sweep]
    assert len(set(sizes)) > 2, sizes  # the taus really make different circuits
    for (t1, c1), (t2, c2) in zip(fast.sweep, naive.sweep):
        assert t1 == t2 and c1 == c2, t1
    assert fast.edge_scores == naive.edge_scores
    # a sweep (shared trials, guesses from the previous tau) == independent single-tau runs
    for tau, circuit in fast.sweep[1::2]:
        assert ACDC(threshold=tau, abs_value_threshold=abs_value).discover(problem).sweep[0][1] == circuit


def test_acdc_task_metric_matches_naive():
    model = small_model()
    graph = Graph.from_model(model)
    data = small_data()
    data.clean_labels = torch.randint(0, 7, data.clean.shape, generator=torch.Generator().manual_seed(3))
    problem = Problem(model, graph, data, "categorical", metric="task")
    fast, naive = ACDC(threshold=1e-2).discover(problem), NaiveACDC(threshold=1e-2).discover(problem)
    assert fast.sweep[0][1] == naive.sweep[0][1]


def test_acdc_recovers_planted_circuit(toy_problem):
    case, problem = toy_problem
    truth = case.ground_truth()
    tiny = ACDC(threshold=1e-6).discover(problem).sweep[0][1]
    assert truth.edges <= tiny.edges
    assert ACDC(threshold=3e-4).discover(problem).sweep[0][1].edges == truth.edges
    out = get_method("acdc", thresholds=default_thresholds()).discover(problem)
    assert [t for t, _ in out.sweep] == sorted(default_thresholds())
    assert auroc(out, problem.graph, truth) >= 0.99
    for tau, circuit in out.sweep:  # scores threshold back to the sweep's circuits (nested here)
        assert {e for e, s in out.edge_scores.items() if s >= tau} == set(circuit.edges)


def test_acdc_params():
    assert ACDC().threshold == 0.01
    with pytest.raises(ValueError):
        ACDC(order="forward")
    with pytest.raises(ValueError):
        ACDC(threshold=0.1, thresholds=[0.1])


# ---- Subnetwork Probing --------------------------------------------------------------------------------
@pytest.mark.parametrize("edgewise", [False, True])
def test_sp_recovers_planted_circuit(toy_problem, edgewise):
    case, problem = toy_problem
    truth = case.ground_truth()
    out = SubnetworkProbing(lambdas=[0.01, 0.1], edgewise=edgewise).discover(problem)
    assert [lam for lam, _ in out.sweep] == [0.01, 0.1]
    assert out.sweep[0][1].edges == truth.edges  # small lambda: exactly the planted circuit
    assert auroc(out, problem.graph, truth) >= 0.99
    if not edgewise:
        assert {n for n, s in out.node_scores.items() if s > 0.5} == set(truth.nodes)


@pytest.mark.parametrize("edgewise", [False, True])
def test_sp_batched_lambdas_equal_one_at_a_time(toy_problem, edgewise):
    """Training the lambdas of a sweep together is the same as training each alone."""
    _, problem = toy_problem
    lams = [0.003, 0.03, 0.3, 3.0]
    together = SubnetworkProbing(lambdas=lams, edgewise=edgewise, epochs=30).discover(problem)
    pairs = SubnetworkProbing(lambdas=lams, edgewise=edgewise, epochs=30, lambda_batch=2).discover(problem)
    alone = [SubnetworkProbing(lambda_reg=lam, edgewise=edgewise, epochs=30).discover(problem) for lam in lams]
    assert [c.edges for _, c in together.sweep] == [a.sweep[0][1].edges for a in alone]
    assert [c.edges for _, c in pairs.sweep] == [c.edges for _, c in together.sweep]
    scores = (lambda o: o.edge_scores) if edgewise else (lambda o: o.node_scores)  # mean over lambdas
    mean_alone = {k: sum(scores(a)[k] for a in alone) / len(alone) for k in scores(together)}
    assert max(abs(scores(together)[k] - mean_alone[k]) for k in mean_alone) < 1e-4
    assert len({c.edges for _, c in together.sweep}) > 1  # the lambdas really differ
    with pytest.raises(ValueError):
        SubnetworkProbing(lambda_batch=-1)


def test_sp_large_lambda_prunes(toy_problem):
    _, problem = toy_problem
    circuit = SubnetworkProbing(lambda_reg=100.0, epochs=100).discover(problem).sweep[0][1]
    assert len(circuit.edges) <= 1  # only input->logits (never gated) can survive


@pytest.mark.parametrize("edgewise", [False, True])
def test_sp_deterministic_given_seed(toy_problem, edgewise):
    case, problem = toy_problem
    a = SubnetworkProbing(lambda_reg=0.3, edgewise=edgewise, epochs=40).discover(problem)
    b = SubnetworkProbing(lambda_reg=0.3, edgewise=edgewise, epochs=40).discover(problem)
    assert a.edge_scores == b.edge_scores and a.sweep == b.sweep
    other = Problem(problem.model, problem.graph, problem.data, problem.output_type, seed=1)
    c = SubnetworkProbing(lambda_reg=0.3, edgewise=edgewise, epochs=40).discover(other)
    assert c.edge_scores != a.edge_scores
    assert all(p.requires_grad for p in problem.model.parameters())  # unfrozen again
    assert all(p.grad is None for p in problem.model.parameters())  # no gradient reached the model
