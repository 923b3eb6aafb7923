"""Evaluators: ROC/AUROC (scores, sweeps, pessimistic AUC, q/k/v merging, degenerate truths),
faithfulness (single circuits and MIB curves), node realism, IIT node effects, plots."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from core.circuit import Circuit
from core.graph import Graph
from core.patching import PatchEngine
from core.protocols import MethodOutput
from evaluations import (
    circuit_faithfulness,
    edge_roc,
    faithfulness_curve,
    gt_node_realism,
    iit_report,
    merge_qkv_scores,
    node_realism,
    node_roc,
    pareto_front,
    pessimistic_auc,
    roc_from_scores,
    roc_from_sweep,
    to_csv,
    to_json,
)
from evaluations.selection import circuit_masks, edge_score_vector


# ---- fixtures ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy_setup(toy):
    case, model, data = toy
    graph = Graph.from_model(model)
    truth = case.ground_truth()
    oracle = MethodOutput(edge_scores={e: float(v) for e, v in zip(graph.edges, graph.mask_for(truth).tolist())})
    return case, model, data, graph, truth, oracle


@pytest.fixture(scope="module")
def engines(toy_setup):
    _, model, data, graph, _, _ = toy_setup
    return {a: PatchEngine(model, graph, data, "categorical", ablation=a) for a in ("corrupted", "mean", "zero")}


# ---- pessimistic AUC -----------------------------------------------------------------------------------------
def test_pessimistic_auc_documented_asserts():
    assert pessimistic_auc([0, 1], [0, 1]) == 0.0
    assert pessimistic_auc([0, 0.5, 1], [0, 0.5, 1]) == 0.25
    assert pessimistic_auc([0, 0.25, 1], [0, 0.25, 1]) == 0.25 * 0.75
    assert pessimistic_auc([0, 0.25, 0.5, 1], [0, 0.25, 0.5, 1]) == 5 / 16
    assert pessimistic_auc([0, 0.25, 0.75, 1], [0, 0.25, 0.5, 1]) == 4 / 16
    assert pessimistic_auc([0, 0, 1], [0, 1, 1]) == 1.0
    # unsorted input is sorted by (x, y) first
    assert pessimistic_auc([1, 0, 0.5], [1, 0, 0.5]) == 0.25
    with pytest.raises(ValueError):
        pessimistic_auc([0, 0.5, 0.6, 1], [0, 0.8, 0.2, 1])  # not monotone: use pareto_front first
    assert pareto_front([0, 0.5, 0.6, 1], [0, 0.8, 0.2, 1]) == ([0, 0.5, 1], [0, 0.8, 1])


# ---- ROC from scores ----------------------------------------------------------------------------------------
def test_roc_from_scores_hand_computed():
    # universe a..e, truth {a, c}; e has no score (ranks last). By hand, thresholds inf, .9, .8, .7, .1, -inf:
    #   (0,0) (0,1/2) (1/3,1/2) (1/3,1) (2/3,1) (1,1); pos>neg pairs: a>b,d,e and c>d,e -> AUROC 5/6.
    roc = roc_from_scores({"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.1}, {"a", "c"}, ["a", "b", "c", "d", "e"])
    np.testing.assert_allclose(roc.fpr, [0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(roc.tpr, [0, 0.5, 0.5, 1, 1, 1])
    assert roc.thresholds[1:] == [0.9, 0.8, 0.7, 0.1, -math.inf]
    assert roc.auroc == pytest.approx(5 / 6)
    # staircase: (1-0)*1/2 + (1-1/3)*1/2
    assert roc.pessimistic_auc == pytest.approx(5 / 6)
    assert (roc.n_pos, roc.n_neg, roc.reason) == (2, 3, None)
    assert roc.info["n_missing"] == 1


def test_roc_ties_absolute_and_missing_rank_last():
    tie = roc_from_scores({"a": 1.0, "b": 1.0}, {"a"}, ["a", "b"])
    assert tie.fpr == [0.0, 1.0] and tie.tpr == [0.0, 1.0] and tie.auroc == pytest.approx(0.5)
    assert roc_from_scores({"a": -5.0, "b": 1.0}, {"a"}, ["a", "b"], absolute=True).auroc == 1.0
    assert roc_from_scores({"a": -5.0, "b": 1.0}, {"a"}, ["a", "b"], absolute=False).auroc == 0.0
    # a missing name ranks below a zero score
    assert roc_from_scores({"a": 0.0}, {"a"}, ["a", "b"]).auroc == 1.0
    with pytest.raises(ValueError):
        roc_from_scores({"zz": 1.0}, {"a"}, ["a", "b"])


def test_random_scores_mean_auroc_half():
    universe = [f"e{i}" for i in range(60)]
    truth = set(universe[:15])
    aucs = []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        aucs.append(roc_from_scores(dict(zip(universe, rng.random(60))), truth, universe).auroc)
    assert abs(np.mean(aucs) - 0.5) < 0.05


def test_degenerate_truth_is_nan_with_reason():
    for truth in (set(), {"a", "b"}):
        roc = roc_from_scores({"a": 1.0, "b": 0.0}, truth, ["a", "b"])
        assert math.isnan(roc.auroc) and math.isnan(roc.pessimistic_auc) and roc.reason
        sw = roc_from_sweep([(0.1, {"a"})], truth, ["a", "b"])
        assert math.isnan(sw.auroc) and sw.reason
        doc = json.loads(json.dumps(roc.to_json(), allow_nan=False))
        assert doc["auroc"] is None and isinstance(doc["reason"], str)
    empty = edge_roc(MethodOutput(), Circuit.from_edges(["input->logits"]), Graph(1, 1))
    assert math.isnan(empty.auroc) and "neither" in empty.reason


# ---- ROC from sweeps ----------------------------------------------------------------------------------------
def test_roc_from_sweep_closed_and_sorted():
    universe, truth = ["a", "b", "c", "d"], {"a", "c"}
    roc = roc_from_sweep([(0.01, {"a", "b", "c"}), (0.1, {"a"}), (0.05, {"b"})], truth, universe)
    # points: (1/2, 1), (0, 1/2), (1/2, 0) + (0,0), (1,1); sorted by fpr then tpr
    assert roc.fpr == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert roc.tpr == [0.0, 0.5, 0.0, 1.0, 1.0]
    assert roc.params == [None, 0.1, 0.05, 0.01, None]
    assert roc.fpr[0] == 0 and roc.tpr[0] == 0 and roc.fpr[-1] == 1 and roc.tpr[-1] == 1
    # pessimistic: the non-Pareto (1/2, 0) is dropped -> 1*(1/2) + (1/2)*(1/2)
    assert roc.pessimistic_auc == pytest.approx(0.75)
    assert roc.auroc == pytest.approx(np.sum(np.diff(roc.fpr) * (np.array(roc.tpr[1:]) + roc.tpr[:-1]) / 2))
    assert roc.source == "sweep"


# ---- q/k/v merging --------------------------------------------------------------------------------------------
def test_qkv_merging_uses_max_abs():
    merged = merge_qkv_scores({"input->a1.h1<q>": 0.1, "input->a1.h1<k>": -0.9, "input->a1.h1<v>": 0.2})
    assert merged == {"input->a1.h1": -0.9}
    g = Graph(2, 2)
    scores = {e: 0.5 for e in g.edges}
    scores.update({"input->a1.h1<q>": 0.1, "input->a1.h1<k>": -0.9, "input->a1.h1<v>": 0.2})
    truth = Circuit.from_edges(["input->a1.h1"])  # unsplit ground truth
    roc = edge_roc({"edge_scores": scores}, truth, g)
    assert roc.info["merged_qkv"] and roc.n_pos + roc.n_neg == len({e.split("<")[0] for e in g.edges})
    assert roc.auroc == 1.0  # max |score| 0.9 beats every 0.5; q alone (0.1) or the signed max (0.2) would not
    # a split truth against split scores is not merged
    split_truth = Circuit.from_edges(["input->a1.h1<k>"])
    roc2 = edge_roc({"edge_scores": scores}, split_truth, g)
    assert not roc2.info["merged_qkv"] and roc2.n_pos + roc2.n_neg == g.n_edges and roc2.auroc == 1.0


# ---- ROC on the toy case --------------------------------------------------------------------------------------
def test_oracle_auroc_one(toy_setup):
    _, _, _, graph, truth, oracle = toy_setup
    for roc in (edge_roc(oracle, truth, graph), node_roc(oracle, truth, graph),
                node_roc(oracle, truth, graph, include_endpoints=False)):
        assert roc.auroc == 1.0 and roc.pessimistic_auc == 1.0 and roc.reason is None
    no_ep = node_roc(oracle, truth, graph, include_endpoints=False)
    assert no_ep.n_pos == 3 and no_ep.n_neg == 3  # a0.h0, m0, a1.h1 vs a0.h1, a1.h0, m1
    # the same from a result document and from a sweep
    doc = {"scores": {"edges": oracle.edge_scores}}
    assert edge_roc(doc, truth, graph).auroc == 1.0
    sweep = MethodOutput(sweep=[(1.0, Circuit()), (0.5, truth), (0.0, Circuit.from_edges(graph.edges))])
    assert edge_roc(sweep, truth, graph).auroc == 1.0
    assert node_roc(sweep, truth, graph, include_endpoints=False).auroc == 1.0


def test_random_method_on_toy_graph(toy_setup):
    _, _, _, graph, truth, _ = toy_setup
    aucs = []
    for seed in range(200):
        g = torch.Generator().manual_seed(seed)
        out = MethodOutput(edge_scores=dict(zip(graph.edges, torch.rand(graph.n_edges, generator=g).tolist())))
        aucs.append(edge_roc(out, truth, graph).auroc)
    assert abs(np.mean(aucs) - 0.5) < 0.05


# ---- faithfulness ------------------------------------------------------------------------------------------
def test_faithfulness_empty_full_and_truth(toy_setup, engines):
    _, _, _, graph, truth, _ = toy_setup
    for eng in engines.values():
        E = graph.n_edges
        assert circuit_faithfulness(eng, torch.zeros(E)) == pytest.approx(0.0, abs=1e-5)
        assert circuit_faithfulness(eng, torch.ones(E)) == pytest.approx(1.0, abs=1e-5)
        assert circuit_faithfulness(eng, graph.mask_for(truth)) == pytest.approx(1.0, abs=1e-5)
        many = circuit_faithfulness(eng, torch.stack([torch.zeros(E), graph.mask_for(truth)]))
        assert many == pytest.approx([0.0, 1.0], abs=1e-5)


def test_faithfulness_degenerate_is_nan(engines):
    eng = engines["corrupted"]
    const = lambda logits: torch.zeros(logits.shape[0])  # noqa: E731
    assert math.isnan(circuit_faithfulness(eng, torch.ones(eng.graph.n_edges), loss_fn=const))
    curve = faithfulness_curve(eng, eng.graph, {e: 1.0 for e in eng.graph.edges}, loss_fn=const)
    assert math.isnan(curve.cpr) and curve.reason


def test_faithfulness_curve_oracle_one_batched_call(toy_setup, engines, monkeypatch):
    _, _, _, graph, truth, oracle = toy_setup
    eng = engines["corrupted"]
    calls = []
    real = eng.evaluate
    monkeypatch.setattr(eng, "evaluate", lambda masks, fn=None, **kw: calls.append(masks.shape) or real(masks, fn, **kw))
    curve = faithfulness_curve(eng, graph, oracle.edge_scores)
    assert len(calls) == 1 and calls[0][0] == len(curve.fractions) + 2
    E = graph.n_edges
    assert curve.requested == [int(p * E) for p in curve.fractions]
    assert all(k <= r for k, r in zip(curve.kept, curve.requested))
    assert curve.faithfulness[-1] == pytest.approx(1.0, abs=1e-5)
    # at 50% (23 edges) the 18 truth edges are kept (all others are irrelevant and pruned or harmless)
    assert curve.faithfulness[curve.fractions.index(0.5)] == pytest.approx(1.0, abs=1e-5)
    x, f = curve.fractions, curve.faithfulness
    cpr = sum((x[i + 1] - x[i]) * (f[i] + f[i + 1]) / 2 for i in range(len(x) - 1))
    cmd = sum((x[i + 1] - x[i]) * (abs(1 - f[i]) + abs(1 - f[i + 1])) / 2 for i in range(len(x) - 1))
    assert curve.cpr == pytest.approx(cpr) and curve.cmd == pytest.approx(cmd)
    assert curve.ablation == "corrupted" and curve.policy == "topk-abs" and curve.prune
    json.dumps(curve.to_json(), allow_nan=False)
    acc = faithfulness_curve(eng, graph, oracle.edge_scores, metric="accuracy", policy="topk-signed", prune=False)
    assert acc.faithfulness[-1] == pytest.approx(1.0) and acc.kept == acc.requested
    ld = faithfulness_curve(eng, graph, oracle.edge_scores, metric="logit_diff")
    assert ld.faithfulness[-1] == pytest.approx(1.0, abs=1e-5)


def test_faithfulness_curve_greedy_is_the_study_selection(toy_setup, engines):
    """``policy="greedy"`` (the study's selection, ``evaluations.selection``) works for the MIB curve too:
    its circuits are the greedy circuits of the requested sizes, pruned, and f reaches 1 at every edge."""
    _, _, _, graph, _, oracle = toy_setup
    eng = engines["corrupted"]
    curve = faithfulness_curve(eng, graph, oracle.edge_scores, policy="greedy")
    masks = circuit_masks(graph, edge_score_vector(graph, oracle.edge_scores), curve.requested, "greedy")
    assert curve.policy == "greedy" and curve.kept == [int(m.sum()) for m in masks]
    assert curve.faithfulness == pytest.approx(circuit_faithfulness(eng, torch.stack(masks)), abs=1e-6)
    assert curve.faithfulness[-1] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="greedy"):
        faithfulness_curve(eng, graph, oracle.edge_scores, policy="nope")


# ---- node realism ------------------------------------------------------------------------------------------
def test_node_realism(toy_setup, engines):
    _, _, _, graph, truth, _ = toy_setup
    for ab in ("zero", "mean"):
        eng = engines[ab]
        assert gt_node_realism(eng, truth).score == 1.0  # the other nodes write nothing
        rows = node_realism(eng, {"gt": truth, "all": set(graph.nodes), "none": set(), "m0": {"m0"}})
        assert [r.name for r in rows] == ["gt", "all", "none", "m0"]
        assert rows[0].score == 1.0 and rows[1].score == 1.0 and rows[0].n_nodes == 3
        assert rows[2].score < 1.0  # ablating every head and MLP breaks the toy model
        absolute = node_realism(eng, [truth], relative=False)[0]
        assert absolute.score == 1.0  # toy labels are the model's own argmax
        assert absolute.ablation == ab


# ---- IIT node effects --------------------------------------------------------------------------------------
def test_iit_node_effects(toy_setup, engines, tmp_path):
    _, model, data, graph, truth, _ = toy_setup
    rep = iit_report(model, graph, data, "categorical", truth, engines=engines)
    by = {r["node"]: r for r in rep.rows}
    assert set(by) == {"a0.h0", "a0.h1", "m0", "a1.h0", "a1.h1", "m1"}
    for n in ("a0.h1", "a1.h0", "m1"):
        r = by[n]
        assert r["status"] == "not_in_circuit"
        for ab in ("resample", "mean", "zero"):
            assert r[f"{ab}_ablate_effect"] == 0.0
            assert abs(r[f"{ab}_loss_change"]) < 1e-6
    for n in ("a0.h0", "m0", "a1.h1"):
        r = by[n]
        assert r["status"] == "in_circuit"
        for ab in ("resample", "mean", "zero"):
            assert r[f"{ab}_ablate_effect"] > 0 and r[f"{ab}_loss_change"] > 0
    assert rep.summary["accuracy"] == 1.0 and rep.summary["strict_accuracy"] == 1.0
    assert math.isnan(rep.summary["iia"]) and "hl_intervene" in rep.reasons["iia"]
    # with a high-level model: here "the output does not change" for every node, so IIA = resample accuracy
    rep2 = iit_report(model, graph, data, "categorical", truth, ablations=("corrupted",),
                      engines=engines, hl_intervene=lambda node, b, s: data.clean_labels[b])
    vals = [r["resample_accuracy"] for r in rep2.rows if r["status"] == "in_circuit"]
    assert rep2.summary["iia"] == pytest.approx(sum(vals) / len(vals)) and "iia" not in rep2.reasons
    p = to_csv(rep.rows, tmp_path / "sub" / "iit.csv")
    lines = p.read_text().splitlines()
    assert len(lines) == 7 and lines[0].startswith("node,status,")
    j = to_json(rep, tmp_path / "iit.json")
    assert json.loads(j.read_text())["summary"]["iia"] is None
    assert not [x for x in tmp_path.rglob(".*")]  # no temporary files left


# ---- plots ---------------------------------------------------------------------------------------------------
def test_plots_written(toy_setup, engines, tmp_path):
    from evaluations.plots import plot_faithfulness, plot_roc

    _, _, _, graph, truth, oracle = toy_setup
    g = torch.Generator().manual_seed(0)
    rnd = MethodOutput(edge_scores=dict(zip(graph.edges, torch.rand(graph.n_edges, generator=g).tolist())))
    rocs = {"oracle": edge_roc(oracle, truth, graph), "random": edge_roc(rnd, truth, graph),
            "empty": edge_roc(MethodOutput(), truth, graph), "json": edge_roc(rnd, truth, graph).to_json()}
    p1 = plot_roc(rocs, tmp_path / "roc.png", title="toy")
    eng = engines["corrupted"]
    curves = {"oracle": faithfulness_curve(eng, graph, oracle.edge_scores),
              "random": faithfulness_curve(eng, graph, rnd.edge_scores).to_json()}
    p2 = plot_faithfulness(curves, tmp_path / "faith.png")
    for p in (p1, p2):
        assert p.exists() and p.stat().st_size > 1000
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["faith.png", "roc.png"]


def test_auroc_table_score_floor_ties_float_dust_with_zeros():
    """evaluations.roc.floored_edge_roc (benchmarks/auroc_table.py --score-floor): a true edge scored 1e-10
    (float dust) above exact zeros ranks first without the floor and ties with the zeros with it; merged
    q/k/v like the stored ROC."""
    from evaluations.roc import floored_edge_roc as floored_roc

    scores = {"input->a0.h0<q>": 1e-10, "input->a0.h0<k>": 0.0, "input->a0.h0<v>": 0.0, "a0.h0->logits": 0.7,
              "input->logits": 0.0, "input->m0": 0.0, "m0->logits": 0.0}
    doc = {"scores": {"edges": scores}, "ground_truth": {"edges": ["input->a0.h0", "a0.h0->logits"]},
           "roc": {"edges": {"source": "scores", "info": {"absolute": True, "merged_qkv": True}}}}
    assert floored_roc(doc, 0).auroc == 1.0
    floored = floored_roc(doc, 1e-6)
    assert floored.n_pos == 2 and floored.n_neg == 3 and floored.auroc == pytest.approx(0.75)
