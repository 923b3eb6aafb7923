"""MIB interoperability: EAP-IG/MIB graph files in and out, and MIB's CPR/CMD protocol.

**The file** (MIB circuit track, ``MIB_circuit_track/circuit_loading.py`` ``load_graph_from_json``; the
format of EAP-IG's ``Graph.to_json``; example ``circuits/ioi-eap-ig.json``) is one JSON object:

    {"cfg": {"n_layers": L, "n_heads": H, "parallel_attn_mlp": false, "d_model": D},
     "nodes": {"input": {"in_graph": true}, "a0.h0": {"in_graph": ..., ["score": s]}, ..., "m0": ..., "logits": ...},
     "edges": {"input->a0.h0<q>": {"score": s, "in_graph": b}, ..., "a0.h0->m0": ..., "m11->logits": ...}}

MIB's graph (EAP-IG ``Graph.from_model``) has, per layer, an edge from every earlier node (``input``,
earlier heads and MLPs) to each head's ``<q>``, ``<k>``, ``<v>`` (in that order, head by head), then
from every earlier node *and the same layer's heads* to ``m{l}``, and finally from every node to
``logits``; it always has MLP nodes (also for attention-only models) and its ``input`` is the token
embedding. :func:`mib_names` enumerates it in MIB's order.

**Export** (:func:`export_result`): circuit-bench's names are MIB's names (``input``, ``a{l}.h{h}``,
``m{l}``, ``logits``, q/k/v suffixes). Our ``input`` is ``blocks.0.hook_resid_pre`` (token +
position); where a case keeps ``pos`` apart its edges are folded into the ``input`` edges (summed).
An unsplit edge ``u->a1.h0`` gives its score to all three of MIB's ``<q>``/``<k>``/``<v>`` edges.
Edges MIB has and our graph does not (the MLPs of an attention-only model) get score 0 and
``in_graph: false``. Scores are the result's ``scores.edges`` (a sweep-only result: the fraction of
its circuits holding the edge); ``signed=True`` writes the signed scores (``method_info.signed``)
instead, as MIB's CPR runs use (``--absolute`` off). ``in_graph`` marks the top ``top_n`` edges by
|score| (MIB's ``apply_topn`` without pruning), every edge when ``top_n`` is None; a node is in the
graph when one of its edges is. Node scores, when the result has them, become the nodes' ``score``.
A top-level ``circuit_bench`` key records the provenance (MIB's loader reads only the three keys).

**Import** (:func:`import_file`): a file of that format (ours or MIB's) becomes a circuit-bench result
document for a case and model kind: scores on our graph's edges, names checked, the file's graph
shape checked against the model's; MIB edges our graph lacks must carry score 0 (else: an error) and
are dropped. The file's scores are kept as given (``scores.edges`` and, for MIB's signed CPR,
``method_info.signed``; rankings use |score|). q/k/v scores stay split; the ROC (and every evaluation) promotes them to whole heads,
the largest |score| of the three, when the ground truth is not split, as the contract says.

**CPR / CMD** (:func:`mib_faithfulness`, ``eval faithfulness --policy mib``), exactly
``MIB_circuit_track/evaluation.py`` ``evaluate_area_under_curve`` with ``run_evaluation.py``'s
defaults: the fractions P = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1) (nine proper
circuit sizes and the full graph), n = int(p * n_edges) edges by top-n (greedy from the logits for
methods that say ``selection: greedy``, as MIB does for IFR), dangling edges pruned, f =
(m(C) - m(empty)) / (m(full) - m(empty)); CPR = the trapezoid area under f over a *linear* x axis of the
requested fractions computed from the *signed* scores, CMD = the area under |1 - f| from the
*absolute* scores (MIB's print_results takes CPR from abs=False runs and CMD from abs=True runs).
m is MIB's logit difference (correct minus corrupted label, the positions where they differ) for
categorical outputs, and the engine's loss (MSE to the clean output) for numerical ones (MIB has none).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmark.runner import DEFAULT_N, method_roc
from evaluations.faithfulness import evaluate_masks
from evaluations.selection import circuit_masks
from cases import get_case
from core import naming, results
from core.graph import Graph
from core.protocols import MethodOutput
from evaluations.faithfulness import edge_score_vector
from evaluations.roc import merge_qkv_scores

MIB_FRACTIONS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


class MIBFormatError(ValueError):
    """A file that is not a MIB/EAP-IG graph JSON, or one that does not fit the model."""


# ---- MIB's graph ---------------------------------------------------------------------------------------
def mib_names(n_layers: int, n_heads: int) -> tuple[list[str], list[str]]:
    """MIB's node and edge names in ``Graph.from_model`` order (non-parallel attention/MLP)."""
    nodes, edges = [naming.INPUT], []
    resid = [naming.INPUT]
    for layer in range(n_layers):
        heads = [naming.head(layer, h) for h in range(n_heads)]
        mlp = naming.mlp(layer)
        nodes += heads + [mlp]
        for u in resid:
            for h in heads:
                edges += [f"{u}->{h}<{q}>" for q in naming.QKV]
        resid += heads
        edges += [f"{u}->{mlp}" for u in resid]
        resid.append(mlp)
    edges += [f"{u}->{naming.LOGITS}" for u in resid]
    nodes.append(naming.LOGITS)
    return nodes, edges


def mib_edge_count(n_layers: int, n_heads: int) -> int:
    """Closed form of :func:`mib_names`' edge count (GPT-2 small: 32 491, MIB's example file)."""
    L, H = n_layers, n_heads
    into_heads = sum(3 * H * (1 + l * (H + 1)) for l in range(L))
    into_mlps = sum(1 + l * (H + 1) + H for l in range(L))
    return into_heads + into_mlps + 1 + L * (H + 1)


# ---- export -------------------------------------------------------------------------------------------
def _result_scores(doc: dict, signed: bool) -> tuple[dict[str, float], str]:
    scores = (doc.get("scores") or {}).get("edges")
    info = doc.get("method_info") or {}
    if signed and isinstance(info.get("signed"), dict):
        return {k: float(v) for k, v in info["signed"].items()}, "method_info.signed"
    if scores:
        return {k: (math.nan if v is None else float(v)) for k, v in scores.items()}, "scores.edges"
    sweep = doc.get("sweep") or []
    if sweep:
        count: dict[str, float] = {}
        for s in sweep:
            for e in s.get("edges", []):
                count[e] = count.get(e, 0.0) + 1.0
        return {e: c / len(sweep) for e, c in count.items()}, "fraction of the sweep's circuits holding the edge"
    raise MIBFormatError("the result has neither edge scores nor a sweep")


def export_result(doc: dict, n_layers: int, n_heads: int, d_model: int, *, signed: bool = False,
                  top_n: int | None = None) -> dict[str, Any]:
    """A circuit-bench result document -> a MIB/EAP-IG graph JSON object (see the module doc)."""
    if doc.get("status") != "ok":
        raise MIBFormatError(f"the result's status is {doc.get('status')!r}, not 'ok'")
    scores, source = _result_scores(doc, signed)
    nodes, edges = mib_names(n_layers, n_heads)
    mib: dict[str, float] = {}
    folded = 0
    for name, s in scores.items():
        p = naming.parse_edge(name)
        sender = p.sender
        if sender == naming.POS:
            sender, folded = naming.INPUT, folded + 1
        targets = ([naming.edge(sender, p.receiver, p.qkv)] if p.qkv or not naming.is_head(p.receiver)
                   else [naming.edge(sender, p.receiver, q) for q in naming.QKV])
        for t in targets:  # names are unique except where pos folds into input: those add up
            mib[t] = mib.get(t, 0.0) + s
    unknown = set(mib) - set(edges)
    if unknown:
        raise MIBFormatError(f"edges outside MIB's graph of {n_layers} layers x {n_heads} heads: {sorted(unknown)[:3]}")
    vec = np.array([mib.get(e, 0.0) for e in edges], dtype=float)
    vec = np.where(np.isfinite(vec), vec, 0.0)
    if top_n is None:
        in_graph = np.ones(len(edges), dtype=bool)
    else:
        in_graph = np.zeros(len(edges), dtype=bool)
        in_graph[np.argsort(-np.abs(vec), kind="stable")[:max(0, int(top_n))]] = True
    in_graph &= np.array([e in mib for e in edges])
    used = {naming.LOGITS, naming.INPUT}
    for e, keep in zip(edges, in_graph):
        if keep:
            p = naming.parse_edge(e)
            used |= {p.sender, p.receiver}
    node_scores = (doc.get("scores") or {}).get("nodes") or {}
    node_doc = {}
    for n in nodes:
        node_doc[n] = {"in_graph": n in used}
        if node_scores and n in node_scores and node_scores[n] is not None:
            node_doc[n]["score"] = float(node_scores[n])
    return {"cfg": {"n_layers": n_layers, "n_heads": n_heads, "parallel_attn_mlp": False, "d_model": d_model},
            "nodes": node_doc,
            "edges": {e: {"score": float(s), "in_graph": bool(g)} for e, s, g in zip(edges, vec.tolist(), in_graph)},
            "circuit_bench": {"case": doc.get("case"), "model": doc.get("model"), "method": doc.get("method"),
                              "run_id": doc.get("run_id"), "params": doc.get("params"), "score_source": source,
                              "signed": signed, "top_n": top_n, "pos_edges_folded_into_input": folded,
                              "input_node": "circuit-bench's input is blocks.0.hook_resid_pre (token + position)"}}


def export_path(result_path: str | Path, out: str | Path, *, signed: bool = False, top_n: int | None = None) -> Path:
    doc = results.load_result(result_path)

    model = get_case(doc["case"]).load_model(doc["model"])
    cfg = model.cfg
    return results.write_json_atomic(out, export_result(doc, cfg.n_layers, cfg.n_heads, cfg.d_model, signed=signed,
                                                        top_n=top_n))


# ---- import -------------------------------------------------------------------------------------------
def read_file(path: str | Path) -> dict[str, Any]:
    """Load and validate a MIB graph JSON (the three keys, the cfg, the value types)."""
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, ValueError) as err:
        raise MIBFormatError(f"cannot read {path}: {err}") from None
    if not isinstance(d, dict) or not all(k in d for k in ("cfg", "nodes", "edges")):
        raise MIBFormatError(f"{path}: not a MIB graph file (needs the keys cfg, nodes, edges)")
    cfg = d["cfg"]
    if not isinstance(cfg, dict) or not all(isinstance(cfg.get(k), int) for k in ("n_layers", "n_heads")):
        raise MIBFormatError(f"{path}: cfg needs integer n_layers and n_heads")
    if cfg.get("parallel_attn_mlp"):
        raise MIBFormatError(f"{path}: parallel attention/MLP graphs are not supported")
    if not isinstance(d["edges"], dict) or not isinstance(d["nodes"], dict):
        raise MIBFormatError(f"{path}: nodes and edges must be objects")
    for name, e in d["edges"].items():
        if not isinstance(e, dict) or not isinstance(e.get("score"), (int, float)) or isinstance(e.get("score"), bool):
            raise MIBFormatError(f"{path}: edge {name!r} needs a numeric score")
    return d


def import_file(path: str | Path, case_id: str, model_kind: str | None = None, name: str = "mib") -> dict[str, Any]:
    """A MIB graph file -> a circuit-bench result document (``status: ok``) for the case's model."""

    d = read_file(path)
    case = get_case(case_id)
    kind = case.resolve_model(model_kind)
    model = case.load_model(kind)
    graph = Graph.from_model(model)
    cfg = d["cfg"]
    if (cfg["n_layers"], cfg["n_heads"]) != (graph.n_layers, graph.n_heads):
        raise MIBFormatError(f"{path}: the file's graph has {cfg['n_layers']} layers x {cfg['n_heads']} heads, "
                             f"case {case.id} ({kind}) has {graph.n_layers} x {graph.n_heads}")
    _, mib_edges = mib_names(graph.n_layers, graph.n_heads)
    unknown = set(d["edges"]) - set(mib_edges)
    if unknown:
        raise MIBFormatError(f"{path}: edge names outside MIB's graph: {sorted(unknown)[:3]}")
    ours = set(graph.edges)
    scores, dropped = {}, []
    for e, v in d["edges"].items():
        if e in ours:
            scores[e] = float(v["score"])
        elif graph.split_qkv or not e.endswith(">"):
            if float(v["score"]) != 0.0:
                raise MIBFormatError(f"{path}: edge {e!r} has score {v['score']} but the model has no such edge")
            dropped.append(e)
    if not graph.split_qkv:  # an unsplit graph: merge by the largest |score|
        scores = {k: v for k, v in merge_qkv_scores({e: float(v["score"]) for e, v in d["edges"].items()}).items()
                  if k in ours}
    missing = ours - set(scores)
    if missing:
        raise MIBFormatError(f"{path}: {len(missing)} edges of the model are missing, e.g. {sorted(missing)[:3]}")
    node_scores = {n: float(v["score"]) for n, v in d["nodes"].items()
                   if isinstance(v, dict) and isinstance(v.get("score"), (int, float)) and n in graph.nodes} or None
    truth = case.ground_truth(kind)
    output = MethodOutput(edge_scores={e: scores[e] for e in graph.edges}, node_scores=node_scores,
                          info={"source": "MIB graph file", "absolute": True})
    sha = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    meta = d.get("circuit_bench") if isinstance(d.get("circuit_bench"), dict) else {}
    params = {"file": str(path), "sha256": sha, "name": name}
    rid = results.run_id({"case": str(case.id), "model": kind, "method": "mib-import", "params": params})
    return {
        "schema": results.SCHEMA, "case": str(case.id), "model": kind, "method": f"mib-import:{name}", "params": params,
        "seed": 0, "status": "ok", "error": None,
        "data": {"n": DEFAULT_N, "seed": 0, "ablation": "corrupted", "metric": "faithfulness"},
        "run_id": rid, "versions": results.versions(),
        "graph": {"n_nodes": graph.n_nodes, "n_edges": graph.n_edges, "split_qkv": graph.split_qkv},
        "ground_truth": truth.to_json(),
        "scores": {"edges": output.edge_scores, "nodes": node_scores},
        "method_info": {"source": "MIB/EAP-IG graph JSON", "file_sha256": sha, "dropped_edges": len(dropped),
                        "exported_from": meta or None, "absolute": True,
                        "signed": {e: scores[e] for e in graph.edges},
                        "ranking": "absolute value of the file's scores (CPR under --policy mib: the scores as given)",
                        "qkv": "scores stay split; evaluations promote q/k/v to whole heads (largest |score|) "
                               "when the ground truth is not split"},
        "roc": method_roc(output, truth, graph),
        "timing": {"seconds": 0.0},
    }


def import_path(path: str | Path, case_id: str, model_kind: str | None, out: str | Path, name: str = "mib") -> Path:
    doc = import_file(path, case_id, model_kind, name)
    dest = results.result_path(out, doc["case"], doc["model"], doc["method"], doc["run_id"])
    results.write_json_atomic(dest, doc)
    return dest


# ---- MIB's CPR / CMD ------------------------------------------------------------------------------------
def mib_areas(fractions: Sequence[float], faithfulness: Sequence[float], log_scale: bool = False) -> dict[str, float]:
    """MIB's ``evaluate_area_under_curve`` areas: trapezoids of f (``area_under``, CPR) and of |1 - f|
    (``area_from_1``, CMD) over the fractions (linear axis unless ``log_scale``), and the mean of f."""
    under = from_1 = 0.0
    for i in range(len(faithfulness) - 1):
        x1, x2 = fractions[i], fractions[i + 1]
        if log_scale:
            x1, x2 = math.log(x1), math.log(x2)
        from_1 += (x2 - x1) * ((abs(1.0 - faithfulness[i]) + abs(1.0 - faithfulness[i + 1])) / 2)
        under += (x2 - x1) * ((faithfulness[i] + faithfulness[i + 1]) / 2)
    return {"cpr": under, "cmd": from_1, "average": sum(faithfulness) / len(faithfulness)}


def _mib_metric(engine) -> str:
    if engine.output_type != "categorical":
        return "loss"
    labels, wrong = engine.data.clean_labels, engine.data.corrupted_labels
    differ = (labels != wrong) & engine.data.mask.cpu() & (labels >= 0) & (wrong >= 0)
    return "logit_diff" if bool(differ.any()) else "loss"


def mib_faithfulness(engine, graph, doc: dict) -> dict[str, Any]:
    """MIB's CPR (signed scores) and CMD (absolute scores) of a result on its engine."""

    info = doc.get("method_info") or {}
    selection = "greedy" if info.get("selection") == "greedy" else "topk"
    absolute_scores = (doc.get("scores") or {}).get("edges") or {}
    signed_scores = info.get("signed") if isinstance(info.get("signed"), dict) else absolute_scores
    E = graph.n_edges
    budgets = [int(p * E) for p in MIB_FRACTIONS]
    metric = _mib_metric(engine)
    out: dict[str, Any] = {"protocol": "mib", "fractions": list(MIB_FRACTIONS), "requested": budgets,
                           "selection": selection, "metric": metric, "axis": "requested fraction, linear",
                           "prune": True, "ablation": engine.ablation}
    for which, scores, policy in (("signed", signed_scores, "topk-signed"), ("absolute", absolute_scores, "topk-abs")):
        vec = edge_score_vector(graph, scores).numpy()
        masks = circuit_masks(graph, vec, budgets, policy="greedy" if selection == "greedy" else policy, prune=True)
        ev = evaluate_masks(engine, masks, metric)
        areas = mib_areas(MIB_FRACTIONS, ev["f"]) if not ev["reason"] else {"cpr": math.nan, "cmd": math.nan,
                                                                             "average": math.nan}
        out[which] = {"f": ev["f"], "kept": [int(m.sum()) for m in masks], "v_full": ev["v_full"],
                      "v_empty": ev["v_empty"], "reason": ev["reason"], **areas}
    out["cpr"] = out["signed"]["cpr"]
    out["cmd"] = out["absolute"]["cmd"]
    return out
