"""The faithfulness study (issue 10): agreement statistics, circuit overlap, and the pareto / agreement /
IG-steps / cross-case studies on the built-in toy case and tiny random models."""

import argparse
import json
import math

import numpy as np
import pytest

from benchmark import study, study_cli
from benchmark.cli import UsageError
from benchmark.study_cli import user_input
from core.circuit import Circuit
from core.graph import Graph
from core.protocols import Problem
from evaluations.agreement import average_overlap, circuit_overlap, score_agreement, topk_overlap
from methods.attribution import EAP, EAPIG, ExactPatching
from tests.helpers import random_data, random_model
from tests.methods.test_attribution import linear_model


def signed(out, graph) -> np.ndarray:
    return np.array([out.signed_edges[e] for e in graph.edges])


# ---- agreement statistics on hand-made vectors --------------------------------------------------------------
def test_agreement_known_values():
    r = score_agreement([1, 2, 3], [1, 3, 2])
    # Pearson of (1,2,3) and (1,3,2) = 0.5; Spearman 1 - 6*2/(3*8) = 0.5; Kendall (2 - 1)/3
    assert r["pearson"] == pytest.approx(0.5)
    assert r["spearman"] == pytest.approx(0.5)
    assert r["kendall"] == pytest.approx(1 / 3)
    perfect = score_agreement(np.arange(10.0), 2 * np.arange(10.0) + 1)
    assert perfect["pearson"] == pytest.approx(1) and perfect["kendall"] == pytest.approx(1)
    assert [t["k"] for t in perfect["topk"]] == [1, 1, 1, 2]  # ceil(p * 10) for 1 %, 5 %, 10 %, 20 %
    assert all(t["overlap"] == 1.0 for t in perfect["topk"])
    rev = score_agreement(np.arange(10.0), -np.arange(10.0), signed=True)
    assert rev["pearson"] == pytest.approx(-1) and rev["kendall"] == pytest.approx(-1)
    assert rev["topk"][-1]["overlap"] == 0.0


def test_agreement_uses_absolute_values_unless_signed():
    a, b = [-3.0, 1.0, 2.0], [3.0, 1.0, 2.0]
    assert score_agreement(a, b)["pearson"] == pytest.approx(1)
    assert score_agreement(a, b, signed=True)["pearson"] < 0


def test_topk_overlap_k_eff_and_ties():
    exact = np.array([10.0, 5.0, 0.001, 0, 0, 0, 0, 0, 0, 0])
    method = np.array([1.0, 0.0, 2.0, 0, 0, 0, 0, 0, 0, 0])
    r = score_agreement(method, exact)
    assert r["k_eff"] == 2  # |exact| > 1 % of the largest
    assert r["topk_eff"] == 0.5  # the method's top 2 are edges 2 and 0; only edge 0 is in the exact top 2
    assert topk_overlap(method, exact, 1) == 0.0
    assert average_overlap(method, exact, 2) == pytest.approx((0 + 0.5) / 2)
    # ties on the exact side do not count against the method: any of the tied zero edges is a hit
    tied = np.array([3.0, 2, 1, 0, 0, 0, 0, 0, 0, 0])
    assert topk_overlap(np.array([0, 0, 0, 1.0, 0, 0, 0, 0, 0, 0]), tied, 4) == 1.0


def test_agreement_is_nan_with_a_reason_when_undefined():
    r = score_agreement([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])
    assert math.isnan(r["pearson"]) and math.isnan(r["kendall"]) and math.isnan(r["spearman"])
    assert "constant" in r["reasons"]["pearson"] and "method" in r["reasons"]["pearson"]
    z = score_agreement([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    assert z["k_eff"] == 0 and math.isnan(z["topk_eff"]) and "non-negligible" in z["reasons"]["topk_eff"]


def test_score_floor_ties_float_dust_with_the_zeros():
    """Exact zeros on one side, ±1e-15 dust in a scrambled order on the other: Spearman ranks the dust
    unless the floor ties it to zero; values above the floor keep their order."""
    method = np.array([0.0, 0.0, 0.0, 1.0, 2.0, 3.0])
    exact = np.array([3e-15, -1e-15, 2e-15, 1.0, 2.0, 3.0])
    raw = score_agreement(method, exact, signed=True)
    floored = score_agreement(method, exact, signed=True, score_floor=1e-12)
    assert raw["spearman"] < 1 - 1e-3 and raw["score_floor"] is None
    assert floored["spearman"] == pytest.approx(1) and floored["kendall"] == pytest.approx(1)
    swapped = score_agreement(method, np.array([0, 0, 0, 2.0, 1.0, 3.0]), signed=True, score_floor=1e-12)
    assert swapped["spearman"] < 1 - 1e-3   # the floor does not hide real disagreement


# ---- circuit overlap ------------------------------------------------------------------------------------------
def test_circuit_overlap_hand_made():
    a = Circuit.from_edges({"input->a0.h0<q>", "a0.h0->logits", "input->logits"})
    b = Circuit.from_edges({"a0.h0->logits", "input->logits", "m0->logits"})
    o = circuit_overlap(a, b, n_edges=4)
    assert o["edges_both"] == 2 and o["edge_iou"] == pytest.approx(2 / 4)
    assert o["recall_a"] == pytest.approx(2 / 3) and o["recall_b"] == pytest.approx(2 / 3)
    assert o["node_iou"] == pytest.approx(1 / 2)  # {a0.h0} vs {a0.h0, m0}; input/logits excluded
    assert o["p_value"] == pytest.approx(1.0)  # two 3-edge circuits among 4 edges always share >= 2
    disjoint = circuit_overlap(["input->logits"], ["m0->logits"], n_edges=100)
    assert disjoint["edge_iou"] == 0 and disjoint["p_value"] == pytest.approx(1.0)
    same = circuit_overlap(["input->logits", "m0->logits"], ["input->logits", "m0->logits"], n_edges=100)
    assert same["edge_iou"] == 1 and same["p_value"] < 1e-3  # P(X >= 2) = 1 / C(100, 2)


# ---- methods vs exact patching ---------------------------------------------------------------------------------
def test_eap_agrees_exactly_with_exact_patching_when_the_metric_is_linear():
    """Attention-only, no normalisation, W_Q = W_K = 0 (uniform attention) and the linear ``logit``
    attribution metric: the patched metric is affine in the edge masks, so EAP equals exact patching.
    The q/k edges have no effect (W_Q = W_K = 0): EAP scores them exactly 0, exact patching ±1e-15 (two
    forwards summed in a different order), so the ranks are compared with float64 dust (1e-12 of the
    largest score) tied to zero; without the floor the dust's order decides Spearman."""
    model = linear_model()
    problem = Problem(model, Graph.from_model(model), random_data(), "categorical")
    exact = signed(ExactPatching(attribution_metric="logit").discover(problem), problem.graph)
    eap = signed(EAP(attribution_metric="logit").discover(problem), problem.graph)
    dust = np.abs(np.asarray(exact)) <= 1e-12 * np.abs(np.asarray(exact)).max()
    assert 0 < dust.sum() < len(dust)  # not vacuous: both no-effect and real edges
    for sign in (False, True):
        r = score_agreement(eap, exact, signed=sign, score_floor=1e-12)
        assert r["score_floor"] == 1e-12
        assert r["pearson"] > 1 - 1e-6 and r["spearman"] > 1 - 1e-6
        assert r["k_eff"] > 0 and r["topk_eff"] == 1.0 and r["ao_eff"] == 1.0
        assert all(t["overlap"] == 1.0 for t in r["topk"])


def test_eap_ig_agreement_grows_with_steps():
    """On ``random_model("LN", seed=0)`` (LayerNorm, gelu MLPs, CE metric) plain EAP is a poor estimate of
    exact patching and EAP-IG (inputs) with 1, 5, 20 steps agrees monotonically better (Pearson and AO@k_eff);
    this is an empirical property of this model, not a theorem (see test_attribution)."""
    problem = Problem(random_model("LN", seed=0), Graph.from_model(random_model("LN", seed=0)),
                      random_data(seed=0), "categorical")
    exact = signed(ExactPatching(attribution_metric="ce").discover(problem), problem.graph)
    rows = [score_agreement(signed(EAPIG("inputs", m, attribution_metric="ce").discover(problem), problem.graph), exact)
            for m in (1, 5, 20)]
    pear = [r["pearson"] for r in rows]
    ao = [r["ao_eff"] for r in rows]
    assert pear[0] < pear[1] <= pear[2] and pear[2] > 0.9
    assert ao[0] <= ao[1] <= ao[2]


# ---- the studies on the toy case --------------------------------------------------------------------------------
def test_pareto_on_toy(tmp_path):
    doc = study.pareto("toy", methods=["eap", "eap-ig"], n=32, out_dir=tmp_path)
    assert list(doc.methods) == ["exact", "eap", "eap-ig"]  # exact is always the reference
    E = doc.n_edges
    for spec, row in doc.methods.items():
        assert row["requested"][-1] == E and row["kept"][-1] == E
        assert row["faithfulness"][-1] == pytest.approx(1, abs=1e-4), spec   # 100 % of the edges
        assert row["faithfulness"][0] == pytest.approx(0, abs=1e-4), spec    # no edge
        assert all(k <= r for k, r in zip(row["kept"], row["requested"]))  # counted after pruning
    assert doc.ground_truth["faithfulness"] == pytest.approx(1, abs=1e-4)  # the planted circuit is everything
    png = tmp_path / "toy" / "toy" / "study" / "pareto.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "toy" / "toy" / "study" / "pareto.json").read_text())
    assert saved["methods"]["eap"]["kept"] == doc.methods["eap"]["kept"]


def test_greedy_order_grows_from_the_logits():
    graph = Graph(2, 2)
    rng = np.random.default_rng(0)
    order = study.greedy_order(graph, rng.normal(size=graph.n_edges))
    assert sorted(order) == list(range(graph.n_edges))
    senders, receivers = graph.edge_sender_receiver()
    inside = {"logits"}
    for e in order:
        assert receivers[e] in inside
        inside.add(senders[e])


def test_agreement_ig_steps_and_overlap_on_toy(tmp_path):
    ag = study.agreement("toy", methods=["eap", "random"], n=32, out_dir=tmp_path)
    assert ag.methods["eap"]["topk_eff"] > ag.methods["random"]["topk_eff"]
    ig = study.ig_steps("toy", steps=[1, 3], n=32, out_dir=tmp_path)
    assert [r["steps"] for r in ig.rows] == [0, 1, 3]
    assert ig.rows[0]["pearson"] == pytest.approx(ig.rows[1]["pearson"])  # 1 step = EAP
    ov = study.cross_case(["toy@0", "toy@1"], method="eap", n=32, out_dir=tmp_path)
    assert ov.edge_iou[0][0] == 1 and ov.F_renorm[1][1] == pytest.approx(1)
    assert ov.F[0][0] >= 0.85 and ov.F[1][1] >= 0.85
    for name in ("toy/toy/study/agreement.png", "toy/toy/study/ig_steps.png", f"overlap/eap/{study._settings_tag(ov.settings)}/overlap.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_study_times_are_the_methods_with_set_up_apart(tmp_path, monkeypatch):
    """The setting's model, data and patching engine are built (and timed) before any method runs, so
    the first method (the exact-patching reference) is not charged for them."""
    from core.protocols import Problem

    built_in_discover = []  # (the process-wide caches stay: later tests rely on the problems they hold)
    real = Problem.engine

    def engine(self):
        if getattr(self, "_engine", None) is None:
            built_in_discover.append(True)
        return real(self)

    _, s, problem = study.setting_problem(study.Setting("toy", n=16))
    assert problem._engine is not None  # built with the problem, not on the first method's first call
    monkeypatch.setattr(Problem, "engine", engine)
    ag = study.agreement("toy", methods=["eap"], n=16, out_dir=tmp_path)
    assert not built_in_discover
    assert ag.setup_seconds == study._SETUP_SECONDS[s] > 0
    assert ag.reference_method_seconds > 0 and ag.methods["eap"]["method_seconds"] > 0
    ig = study.ig_steps("toy", steps=[1], n=16, out_dir=tmp_path)
    assert ig.setup_seconds == ag.setup_seconds  # the same setting: built once
    assert all(r["method_seconds"] > 0 for r in ig.rows) and "method_seconds" in ig.reference


def test_bad_input_is_a_usage_error(tmp_path, capsys):
    # the study raises ValueError for bad input; the CLI layer (study_cli.user_input) makes it a usage error
    with pytest.raises(UsageError, match="nope"), user_input():
        study.pareto("toy", methods=["nope"], out_dir=tmp_path)
    with pytest.raises(UsageError, match="zzz"), user_input():
        study.agreement("zzz", out_dir=tmp_path)
    with pytest.raises(UsageError, match="same graph"), user_input():
        study.cross_case(["toy", "21"], method="eap", n=8, out_dir=tmp_path)
    args = argparse.Namespace(case="toy", model=None, methods=["eap-igg"], n=8, seed=0, ablation=None,
                              out=str(tmp_path), json=True, steps=None, cases=None)
    with pytest.raises(UsageError, match="eap-igg"):
        study_cli.cmd_eval_agreement(args)
    args.methods, args.score_floor = ["eap"], 1.5
    with pytest.raises(UsageError, match="--score-floor must be in"):
        study_cli.cmd_eval_agreement(args)


def test_cmd_eval_agreement_score_floor(tmp_path, capsys):
    """``eval agreement --score-floor R`` reaches score_agreement and is recorded per method."""
    args = argparse.Namespace(case="toy", model=None, methods=["eap"], n=16, seed=0, ablation=None,
                              out=str(tmp_path), json=True, steps=None, cases=None, score_floor=1e-9)
    assert study_cli.cmd_eval_agreement(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["methods"]["eap"]["score_floor"] == 1e-9


def test_cmd_eval_overlap_json(tmp_path, capsys):
    args = argparse.Namespace(case="toy", model=None, methods=["eap"], n=32, seed=0, ablation=None,
                              out=str(tmp_path), json=True, steps=None, cases=None)
    assert study_cli.cmd_eval_overlap(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["settings"] == ["toy:toy@0/n=32", "toy:toy@1/n=32"] and len(doc["F"]) == 2


def test_scores_are_cached_on_disk(tmp_path):
    study.clear_cache()
    first = study.agreement("toy", methods=["eap"], n=16, out_dir=tmp_path, cache=True)
    files = sorted((tmp_path / "toy" / "toy" / "study" / "cache").glob("*.json"))
    assert len(files) == 2  # exact and eap
    study.clear_cache()
    again = study.agreement("toy", methods=["eap"], n=16, out_dir=tmp_path, cache=True)
    assert again.methods["eap"]["pearson"] == pytest.approx(first.methods["eap"]["pearson"])
    assert again.reference_method_seconds == first.reference_method_seconds  # read back, not recomputed
