"""MIB interoperability (issue 23): the graph file MIB's evaluation reads, export -> import round trips,
and MIB's CPR / CMD formula on hand-made numbers."""

import json
import math

import pytest
import torch

from benchmark import mib
from benchmark.cli import main
from benchmark.runner import Job, run_job
from core import results
from core.graph import Graph
from core.protocols import Problem


# ---- MIB's graph ----------------------------------------------------------------------------------------
def test_mib_graph_matches_mibs_example_file():
    """MIB's circuits/ioi-eap-ig.json (GPT-2 small) has 32 491 edges, starting input->a0.h0<q>, <k>, <v>,
    input->a0.h1<q>, and nodes input, a0.h0 ... a11.h11, m11, logits."""
    nodes, edges = mib.mib_names(12, 12)
    assert len(edges) == 32491 == mib.mib_edge_count(12, 12)
    assert edges[:4] == ["input->a0.h0<q>", "input->a0.h0<k>", "input->a0.h0<v>", "input->a0.h1<q>"]
    assert nodes[:3] == ["input", "a0.h0", "a0.h1"] and nodes[-3:] == ["a11.h11", "m11", "logits"]
    assert "a0.h3->m0" in edges and "m11->logits" in edges and "a1.h0->a1.h1<q>" not in edges
    assert len(set(edges)) == len(edges)
    for L, H in ((1, 1), (2, 3), (4, 2)):
        assert len(mib.mib_names(L, H)[1]) == mib.mib_edge_count(L, H)
        # with MLPs and q/k/v split our graph is MIB's graph, edge for edge
        assert set(Graph(L, H).edges) == set(mib.mib_names(L, H)[1])


@pytest.fixture(scope="module")
def toy_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("mib")
    docs = {m: run_job(Job(case="toy", method=m, n=32, out=str(out))) for m in ("eap", "ifr")}
    assert all(d["status"] == "ok" for d in docs.values())
    return out, docs


def _check_mib_format(d, n_layers, n_heads):
    """What MIB's load_graph_from_json and EAP-IG's Graph.from_json read."""
    assert set(d) >= {"cfg", "nodes", "edges"}
    assert d["cfg"]["n_layers"] == n_layers and d["cfg"]["n_heads"] == n_heads
    assert d["cfg"]["parallel_attn_mlp"] is False and isinstance(d["cfg"]["d_model"], int)
    nodes, edges = mib.mib_names(n_layers, n_heads)
    assert list(d["nodes"]) == nodes and list(d["edges"]) == edges
    assert all(isinstance(v["in_graph"], bool) for v in d["nodes"].values())
    assert all(isinstance(v["score"], float) and isinstance(v["in_graph"], bool) for v in d["edges"].values())


def test_export_matches_mibs_format(toy_results, tmp_path):
    out, docs = toy_results
    path = tmp_path / "toy_eap.json"
    assert main(["export", "mib", docs["eap"]["path"], "--out", str(path)]) == 0
    d = json.loads(path.read_text())
    _check_mib_format(d, 2, 2)
    for e, s in docs["eap"]["scores"]["edges"].items():
        assert d["edges"][e]["score"] == s
    assert d["circuit_bench"]["method"] == "eap"
    top = mib.export_result(docs["eap"], 2, 2, 16, top_n=5)
    assert sum(v["in_graph"] for v in top["edges"].values()) == 5


def test_round_trip_identical_scores_and_auroc(toy_results, tmp_path):
    out, docs = toy_results
    for method, signed in (("eap", False), ("eap", True), ("ifr", False)):
        doc = docs[method]
        path = tmp_path / f"{method}_{signed}.json"
        results.write_json_atomic(path, mib.export_result(doc, 2, 2, 16, signed=signed))
        back = results.load_result(mib.import_path(path, "toy", None, tmp_path / "imported", name=method))
        want = doc["method_info"]["signed"] if signed else doc["scores"]["edges"]
        assert back["scores"]["edges"] == want
        for level in ("edges", "nodes_no_endpoints"):
            assert back["roc"][level]["auroc"] == doc["roc"][level]["auroc"], (method, level)
        assert back["roc"]["edges"]["fpr"] == doc["roc"]["edges"]["fpr"]
        assert back["method"] == f"mib-import:{method}" and back["status"] == "ok"


def test_round_trip_faithfulness_and_leaderboard(toy_results, tmp_path):
    out, docs = toy_results
    doc = docs["eap"]
    path = tmp_path / "eap_signed.json"
    results.write_json_atomic(path, mib.export_result(doc, 2, 2, 16, signed=True))
    dest = mib.import_path(path, "toy", None, tmp_path / "imp")
    back = results.load_result(dest)
    from cases import get_case
    case = get_case("toy")
    model = case.load_model()
    problem = Problem(model, Graph.from_model(model), case.dataset(32, seed=0), case.output_type)
    a = mib.mib_faithfulness(problem.engine(), problem.graph, doc)
    b = mib.mib_faithfulness(problem.engine(), problem.graph, back)
    assert a["cpr"] == b["cpr"] and a["cmd"] == b["cmd"]
    # the imported result is a result every command reads
    assert main(["eval", "roc", str(dest)]) == 0
    assert main(["leaderboard", "--out", str(tmp_path / "imp")]) == 0


def test_import_checks_the_file(tmp_path, toy_results):
    out, docs = toy_results
    good = mib.export_result(docs["eap"], 2, 2, 16)
    bad_shape = dict(good, cfg=dict(good["cfg"], n_layers=3))
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(bad_shape))
    with pytest.raises(mib.MIBFormatError, match="3 layers"):
        mib.import_file(p, "toy")
    p.write_text(json.dumps({"nodes": {}}))
    with pytest.raises(mib.MIBFormatError, match="cfg, nodes, edges"):
        mib.read_file(p)
    bad_name = json.loads(json.dumps(good))
    bad_name["edges"]["a1.h0->a0.h0<q>"] = {"score": 1.0, "in_graph": True}
    p.write_text(json.dumps(bad_name))
    with pytest.raises(mib.MIBFormatError, match="outside MIB's graph"):
        mib.import_file(p, "toy")
    assert main(["import", "mib", str(p), "-i", "toy", "--out", str(tmp_path / "x")]) == 2
    assert main(["import", "mib", str(tmp_path / "missing.json"), "-i", "toy"]) == 2
    assert main(["export", "mib", str(tmp_path / "missing.json"), "--out", str(tmp_path / "y.json")]) == 2


def test_attention_only_models_get_mibs_mlp_nodes(tmp_path):
    """MIB's graph always has MLPs: they are exported with score 0, and on import a non-zero score on
    an edge the model does not have is an error, a zero one is dropped."""
    doc = {"status": "ok", "case": "x", "model": "y", "method": "m",
           "scores": {"edges": {e: 1.0 for e in Graph(2, 1, has_mlp=False).edges}}}
    d = mib.export_result(doc, 2, 1, 8)
    assert d["edges"]["a0.h0->m0"] == {"score": 0.0, "in_graph": False}
    assert d["edges"]["input->a1.h0<k>"] == {"score": 1.0, "in_graph": True}
    assert d["nodes"]["m0"]["in_graph"] is False


# ---- CPR / CMD -----------------------------------------------------------------------------------------
def test_mib_area_formula_on_a_hand_made_example():
    """MIB's evaluate_area_under_curve: linear x over the requested fractions; widths 0.001, 0.003,
    0.005, 0.01, 0.03, 0.05, 0.1, 0.3, 0.5."""
    f = [0.0, 0.1, 0.2, 0.3, 0.5, 0.6, 0.8, 0.9, 1.0, 1.0]
    a = mib.mib_areas(mib.MIB_FRACTIONS, f)
    cpr = (0.001 * 0.05 + 0.003 * 0.15 + 0.005 * 0.25 + 0.01 * 0.4 + 0.03 * 0.55 + 0.05 * 0.7 + 0.1 * 0.85
           + 0.3 * 0.95 + 0.5 * 1.0)
    assert math.isclose(a["cpr"], 0.92725, abs_tol=1e-12) and math.isclose(a["cpr"], cpr, abs_tol=1e-12)
    assert math.isclose(a["cmd"], 0.07175, abs_tol=1e-12)
    assert math.isclose(a["cpr"] + a["cmd"], 0.999, abs_tol=1e-12)  # f <= 1 everywhere: the areas fill the strip
    assert math.isclose(a["average"], 0.54, abs_tol=1e-12)
    # f above 1 raises CPR and CMD alike; negative f lowers CPR and raises CMD
    b = mib.mib_areas(mib.MIB_FRACTIONS, [0.0] * 8 + [1.5, 1.0])
    assert math.isclose(b["cpr"], 0.3 * 0.75 + 0.5 * 1.25, abs_tol=1e-12)
    assert math.isclose(b["cmd"], 0.001 + 0.003 + 0.005 + 0.01 + 0.03 + 0.05 + 0.1 + 0.3 * 0.75 + 0.5 * 0.25,
                        abs_tol=1e-12)
    c = mib.mib_areas(mib.MIB_FRACTIONS, [-1.0] * 10)
    assert math.isclose(c["cpr"], -0.999) and math.isclose(c["cmd"], 2 * 0.999)
    log = mib.mib_areas([0.1, 1.0], [0.0, 1.0], log_scale=True)
    assert math.isclose(log["cpr"], math.log(10) / 2)


def test_mib_faithfulness_protocol_on_the_toy(toy_results):
    out, docs = toy_results
    from cases import get_case
    case = get_case("toy")
    model = case.load_model()
    problem = Problem(model, Graph.from_model(model), case.dataset(32, seed=0), case.output_type)
    res = mib.mib_faithfulness(problem.engine(), problem.graph, docs["eap"])
    E = problem.graph.n_edges
    assert res["requested"] == [int(p * E) for p in mib.MIB_FRACTIONS] and len(res["requested"]) == 10
    for which in ("signed", "absolute"):
        f = res[which]["f"]
        assert f[-1] == pytest.approx(1.0, abs=1e-6)            # the full graph
        assert res[which]["cpr"] == mib.mib_areas(mib.MIB_FRACTIONS, f)["cpr"]
    assert res["cpr"] == res["signed"]["cpr"] and res["cmd"] == res["absolute"]["cmd"]
    assert res["metric"] == "logit_diff" and res["selection"] == "topk"
    assert mib.mib_faithfulness(problem.engine(), problem.graph, docs["ifr"])["selection"] == "greedy"
    # the signed ranking really differs from the absolute one on this result
    signed = torch.tensor(list(docs["eap"]["method_info"]["signed"].values()))
    assert (signed < 0).any()


def test_eval_faithfulness_mib_labels_each_run_as_the_other_evaluations_do(toy_results, tmp_path, capsys):
    """``eval faithfulness --policy mib`` names its rows by method variant (benchmark.variants), like
    ``eval faithfulness`` and ``eval roc`` (it used to fail on an undefined ``_label``)."""
    import shutil
    from pathlib import Path

    from benchmark.variants import run_labels

    out, _ = toy_results
    shutil.copytree(out, tmp_path / "res")
    assert main(["eval", "faithfulness", "--policy", "mib", str(tmp_path / "res"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = [r for c in doc["cases"] for r in c["methods"]]
    labels = run_labels(list(results.iter_results(tmp_path / "res")))
    assert rows and sorted(r["method"] for r in rows) == sorted(labels[str(Path(r["path"]).parent / "result.json")]
                                                                 for r in rows)
    assert all(Path(r["path"]).name == "faithfulness_mib.json" and Path(r["path"]).is_file() for r in rows)
    assert {r["method"] for r in rows} >= {"eap"}
