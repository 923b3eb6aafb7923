"""Circuits and their comparison with a ground truth."""

import math

import pytest

from core.circuit import Circuit, compare, confusion
from core.graph import Graph


def test_confusion_counts_and_rates():
    c = confusion({"a", "b", "x"}, {"a", "b", "c"}, {"a", "b", "c", "x", "y", "z"})
    assert (c.tp, c.fp, c.tn, c.fn) == (2, 1, 2, 1)
    assert c.tpr == 2 / 3 and c.fpr == 1 / 3 and c.precision == 2 / 3


def test_undefined_rates_are_nan_not_strings():
    c = confusion(set(), set(), {"a"})          # no positives: TPR undefined; nothing predicted: precision too
    assert math.isnan(c.tpr) and math.isnan(c.precision) and c.fpr == 0.0
    c = confusion({"a"}, {"a"}, {"a"})          # no negatives: FPR undefined
    assert math.isnan(c.fpr) and c.tpr == 1.0
    assert all(isinstance(v, (int, float)) for v in c.to_json().values())


def test_names_outside_the_graph_are_an_error():
    with pytest.raises(ValueError, match="outside the graph"):
        confusion({"nope"}, set(), {"a"})


def test_compare_with_and_without_endpoints_and_qkv_merging():
    g = Graph(2, 2)
    truth = Circuit.from_edges(["input->a0.h0<q>", "a0.h0->m0", "m0->logits"])
    pred = Circuit.from_edges(["input->a0.h0<k>", "a0.h0->m0", "a0.h1->logits"])
    split = compare(pred, truth, g.nodes, g.edges)      # both split: <q> and <k> differ
    assert (split.edges.tp, split.edges.fp, split.edges.fn) == (1, 2, 2)
    merged = compare(pred, truth, g.nodes, g.edges, merge=True)
    assert (merged.edges.tp, merged.edges.fp, merged.edges.fn) == (2, 1, 1)  # input->a0.h0 now matches
    assert merged.edges.tp + merged.edges.fp + merged.edges.tn + merged.edges.fn == len({e.split("<")[0] for e in g.edges})
    # nodes: input and logits are in both circuits; without them only the inner nodes count
    assert split.nodes.tp == 4 and split.nodes_no_endpoints.tp == 2
    assert split.nodes_no_endpoints.fp == 1 and split.nodes_no_endpoints.fn == 0  # a0.h1 is extra


def test_unsplit_truth_merges_by_default():
    g = Graph(2, 2)
    truth = Circuit.from_edges(["input->a0.h0", "a0.h0->logits"])
    pred = Circuit.from_edges(["input->a0.h0<v>", "a0.h0->logits"])
    cmp = compare(pred, truth, g.nodes, g.edges)
    assert cmp.edges.tp == 2 and cmp.edges.fp == 0 and cmp.edges.fn == 0


def test_circuit_json_round_trip_and_validation():
    c = Circuit.from_edges(["input->a1.h0<q>", "a1.h0->logits"], extra_nodes=["m0"])
    assert Circuit.from_json(c.to_json()) == c
    assert c.nodes == {"input", "a1.h0", "logits", "m0"}
    with pytest.raises(ValueError):
        Circuit(frozenset(), frozenset({"input->m0<q>"}))  # only heads take q/k/v
