"""The Tracr case registry: programs, datasets, metrics, compiled models and their ground truth.

Fast tests use the RASP evaluator only, plus a small sample of compiled cases (cached on disk after
the first run). ``-m slow`` compiles every case and checks faithfulness of the ground truth.
"""

from __future__ import annotations

import re

import pytest
import torch

from cases.tracr.case import SAMPLERS, TracrCase, train_test_split
from cases.tracr.table import EXCLUDED, INTERPBENCH_IDS, TRACR_CASES

ALL_IDS = list(TRACR_CASES)
FAST_COMPILED = ["3", "4", "11", "13", "18", "19", "20", "21"]


@pytest.fixture(scope="module")
def cases():
    cache: dict[str, TracrCase] = {}

    def get(cid: str) -> TracrCase:
        if cid not in cache:
            cache[cid] = TracrCase(cid)
        return cache[cid]
    return get


# ---------------------------------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------------------------------

def test_registry_covers_interpbench():
    assert len(INTERPBENCH_IDS) == 129
    assert set(TRACR_CASES) | set(EXCLUDED) == set(INTERPBENCH_IDS)
    assert not set(TRACR_CASES) & set(EXCLUDED)
    assert list(TRACR_CASES) == sorted(TRACR_CASES, key=int)
    for cid, reason in EXCLUDED.items():
        assert reason.strip(), cid


def test_table_facts():
    s = TRACR_CASES
    assert {c for c, x in s.items() if x.output_type == "numerical"} == {"3", "4", "39"}
    assert {c for c, x in s.items() if x.trivial} == {"8", "11", "20", "26", "29", "33", "35", "36", "37", "90", "106"}
    assert s["2"].max_seq_len == 9 and s["12"].max_seq_len == 14 and s["39"].max_seq_len == 59
    assert not s["2"].causal and s["3"].causal
    for x in s.values():
        assert x.sampler in SAMPLERS, x.id
        assert x.description


def test_unknown_case_names_close_matches():
    with pytest.raises(KeyError, match="unknown tracr case '1000'"):
        TracrCase("1000")


# ---------------------------------------------------------------------------------------------------
# programs and datasets (RASP only)
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cid", ALL_IDS)
def test_program_and_dataset(cases, cid):
    case = cases(cid)
    data = case.dataset(n=40, seed=3)
    n, width = data.clean.shape
    assert width == case.max_seq_len + 1 and 0 < n <= 40
    meta = data.meta
    assert n == 40 or meta.get("note")
    # deterministic
    again = TracrCase(cid).dataset(n=40, seed=3)
    for a, b in [(data.clean, again.clean), (data.corrupted, again.corrupted), (data.mask, again.mask)]:
        assert torch.equal(a, b)
    # BOS first; distinct clean inputs; corrupted differs from its clean partner
    bos = case.input_encoder["BOS"]
    assert (data.clean[:, 0] == bos).all() and (data.corrupted[:, 0] == bos).all()
    assert len({tuple(r) for r in data.clean.tolist()}) == n
    assert all(not torch.equal(a, b) for a, b in zip(data.clean, data.corrupted))
    # mask: every non-BOS, non-PAD position
    pad = case.input_encoder["PAD"]
    assert torch.equal(data.mask, (data.clean != pad) & (torch.arange(width) > 0))
    # labels agree with the RASP evaluator
    outs = case.evaluate(meta["clean_inputs"])
    assert torch.equal(case.encode_labels(outs), data.clean_labels) if case.output_type == "categorical" else \
        torch.allclose(case.encode_labels(outs), data.clean_labels, equal_nan=True)
    labelled = data.clean_labels != -100 if case.output_type == "categorical" else ~torch.isnan(data.clean_labels)
    assert not (labelled & ~data.mask).any()
    assert labelled.any(), "no position has a label"
    for x, o in zip(meta["clean_inputs"], outs):
        assert len(o) == len(x) and o[0] == "BOS"


def test_seed_changes_data(cases):
    case = cases("2")
    assert not torch.equal(case.dataset(20, seed=0).clean, case.dataset(20, seed=1).clean)


def test_variable_length_and_padding(cases):
    case = cases("2")
    data = case.dataset(200, seed=0)
    lengths = data.mask.sum(1)
    assert lengths.min() < lengths.max() == case.max_seq_len
    assert (data.clean == case.input_encoder["PAD"]).any()


def test_exhaustive_dataset_never_duplicates(cases):
    case = cases("3")  # 4 letters, lengths 2..4: 16 + 64 + 256 inputs
    size = case.input_space_size()
    assert size == 336
    data = case.dataset(n=1000, seed=0)
    assert len(data) == size and data.meta["exhaustive"] and "336" in data.meta["note"]
    assert len({tuple(r) for r in data.clean.tolist()}) == size


def test_train_test_split_is_disjoint(cases):
    data = cases("7").dataset(100, seed=0)
    train, test = train_test_split(data, test_fraction=0.25, seed=1)
    assert len(train) == 75 and len(test) == 25
    a, b = {tuple(r) for r in train.clean.tolist()}, {tuple(r) for r in test.clean.tolist()}
    assert not a & b
    assert train.meta["clean_inputs"][0][1:] != [] and len(test.meta["clean_inputs"]) == 25


@pytest.mark.parametrize("cid,predicate,lo", [
    ("17", lambda x: x == x[::-1], 0.4),
    ("89", lambda x: x == sorted(x), 0.4),
    ("94", lambda x: x == sorted(x, reverse=True), 0.4),
    ("124", lambda x: len(set(x)) == 1, 0.1),  # fixed length: only 11 all-equal inputs exist (de-duplicated)
    ("109", lambda x: x[-1] == x[-2], 0.4),
    ("129", lambda x: all(v % 2 == 0 for v in x), 0.4),
    ("125", lambda x: all((a + b) % 2 == 1 for a, b in zip(x, x[1:])), 0.4),
    ("108", lambda x: len(set(x)) < len(x), 0.4),
    ("1", lambda x: all(a == b for a, b in zip(x, x[2:])), 0.1),
])
def test_balanced_samplers(cases, cid, predicate, lo):
    data = cases(cid).dataset(100 if cid == "124" else 400, seed=0)
    frac = sum(predicate(x[1:]) for x in data.meta["clean_inputs"]) / len(data)
    assert lo <= frac <= 0.8, frac


def test_dyck_sampler_balanced_half(cases):
    case = cases("5")
    data = case.dataset(400, seed=0)
    frac = sum(o[-1] is True for o in data.meta["clean_outputs"]) / len(data)
    assert 0.35 <= frac <= 0.65, frac


def test_evaluate_lines_up_with_inputs(cases):
    case = cases("2")
    assert case.evaluate([["BOS", "a", "b", "c", "PAD"]]) == [["BOS", "c", "b", "a", None]]
    with pytest.raises(ValueError, match="start with 'BOS'"):
        case.evaluate([["a", "b"]])
    with pytest.raises(ValueError, match="not in the vocab"):
        case.evaluate([["BOS", "A"]])


def test_causal_cases_use_causal_evaluation(cases):
    # frac_prevs only looks back: the causal and the plain evaluator agree
    assert cases("3").evaluate([["BOS", "x", "a", "x"]]) == [["BOS", True, 0.5, 2 / 3]]


def test_info_without_compiling(cases):
    info = cases("7").info()
    for key in ("task", "program", "vocab", "max_seq_len", "output_type", "causal", "model_sizes"):
        assert key in info
    assert any("SelectorWidth" in line for line in info["program"])


# ---------------------------------------------------------------------------------------------------
# compiled models
# ---------------------------------------------------------------------------------------------------

def _mismatches(case, ref, out):
    bad = []
    for r, o in zip(ref, out):
        for x, y in zip(r[1:], o[1:]):
            if x is None:
                continue
            if case.output_type == "numerical":
                # tracr's own tolerance (rtol 0.005) on top of 1e-3: case 39's first position is off by 1.7e-3
                if abs(float(x) - float(y)) > 1e-3 + 5e-3 * abs(float(x)):
                    bad.append((r, o))
            elif x != y:
                bad.append((r, o))
    return bad


def check_compiled(case: TracrCase, n: int = 100):
    pre_in, pre_out = case.input_encoder, case.output_encoder
    compiled = case.compiled_model()
    assert compiled.input_encoder == pre_in and compiled.output_encoder == pre_out
    data = case.dataset(n, seed=0)
    inputs = data.meta["clean_inputs"] + data.meta["corrupted_inputs"]
    ref = case.evaluate(inputs)
    assert not _mismatches(case, ref, case.run(compiled.model, inputs))[:3]
    # the padded tensors of the dataset give the same outputs (lengths vary only where PAD is safe)
    assert not _mismatches(case, ref, case.run(compiled.model, inputs, pad=True))[:3]
    gt = case.ground_truth()
    assert gt.nodes and gt.edges and "logits" in gt.nodes
    L, H = compiled.config["n_layers"], compiled.config["n_heads"]
    for node in gt.nodes:
        m = re.fullmatch(r"a(\d+)\.h(\d+)", node)
        if m:
            assert int(m[1]) < L and int(m[2]) < H, node
        m = re.fullmatch(r"m(\d+)", node)
        if m:
            assert int(m[1]) < L, node
        assert node in {"input", "logits"} or re.fullmatch(r"a\d+\.h\d+|m\d+", node), node
    return compiled, data


@pytest.mark.parametrize("cid", FAST_COMPILED)
def test_compiled_sample_matches_rasp(cases, cid):
    check_compiled(cases(cid))


@pytest.mark.slow
@pytest.mark.parametrize("cid", ALL_IDS)
def test_compiled_matches_rasp_all(cid):
    check_compiled(TracrCase(cid))


def test_metrics_categorical(cases):
    case = cases("13")
    data = case.dataset(50, seed=0)
    model = case.load_model()
    with torch.no_grad():
        clean, corrupted = model(data.clean), model(data.corrupted)
    m = case.metrics(clean, data)
    assert m["accuracy"] == 1.0 and abs(m["kl"]) < 1e-4 and m["logit_diff"] > 0
    bad = case.metrics(corrupted, data, clean_logits=clean)
    assert bad["accuracy"] < 1.0 and bad["kl"] > 0.01
    stacked = case.metrics(torch.stack([clean, corrupted]), data, clean_logits=clean)
    assert stacked["accuracy"][0] == 1.0 and stacked["accuracy"][1] == pytest.approx(bad["accuracy"])
    assert stacked["logit_diff"][0] == pytest.approx(m["logit_diff"])


def test_metrics_numerical(cases):
    case = cases("3")
    data = case.dataset(100, seed=0)
    model = case.load_model()
    with torch.no_grad():
        out = model(data.clean)
    m = case.metrics(out, data)
    assert m["mse"] < 1e-4 and m["atol_accuracy"] == 1.0
    m2 = case.metrics(out + 0.1, data, atol=0.05)
    assert m2["atol_accuracy"] == 0.0 and m2["mse"] == pytest.approx(0.01, rel=1e-3)


def test_run_matches_bridge(cases):
    case = cases("21")
    compiled = case.compiled_model()
    inputs = [["BOS", "a", "b", "a", "c"], ["BOS", "c", "c"]]
    assert case.run(compiled, inputs) == [o + [None] * 0 for o in compiled.run(inputs)] or \
        [o[1:] for o in case.run(compiled, inputs)] == [o[1:] for o in compiled.run(inputs)]


# ---------------------------------------------------------------------------------------------------
# ground truth faithfulness (patching engine)
# ---------------------------------------------------------------------------------------------------

def _faithfulness(case: TracrCase, n: int = 100):
    from core.graph import Graph
    from core.patching import PatchEngine

    model = case.load_model()
    data = case.dataset(n, seed=0)
    graph = Graph.from_model(model)
    engine = PatchEngine(model, graph, data, case.output_type, ablation="corrupted")
    gt = case.ground_truth()
    logits = engine.run(graph.mask_for(gt))[0]
    clean = engine.clean_logits
    if case.output_type == "categorical":
        same = (logits.argmax(-1) == clean.argmax(-1))[data.mask]
        return same.float().mean().item(), engine, graph, gt
    err = (logits[..., 0] - clean[..., 0]).abs()[data.mask]
    return (err < 1e-3).float().mean().item(), engine, graph, gt


@pytest.mark.parametrize("cid", ["3", "13", "21"])
def test_ground_truth_is_faithful_sample(cases, cid):
    frac, *_ = _faithfulness(cases(cid))
    assert frac == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("cid", ALL_IDS)
def test_ground_truth_is_faithful_all(cid):
    frac, *_ = _faithfulness(TracrCase(cid))
    assert frac == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("cid", ALL_IDS)
def test_every_ground_truth_edge_matters(cid):
    """findings.md: the corrupted distribution must give every ground-truth edge a non-zero effect."""
    case = TracrCase(cid)
    _, engine, graph, gt = _faithfulness(case, n=200)
    edges = graph.edge_names(gt.edges)
    masks = torch.ones(len(edges), graph.n_edges)
    for i, e in enumerate(edges):
        masks[i, graph.edge_index[e]] = 0
    effects = engine.evaluate(masks)
    dead = [e for e, v in zip(edges, effects.tolist()) if not v > 1e-6]
    # the corrupted run scrambles positions (CaseData.corrupted_pos), so edges that read only
    # positions matter too; what remains dead is listed, with its reason, in KNOWN_DEAD_EDGES
    allowed = set(KNOWN_DEAD_EDGES.get(cid, ()))
    assert set(dead) <= allowed, f"edges without effect: {sorted(set(dead) - allowed)}"
    assert allowed <= set(dead), f"listed as dead but they matter: {sorted(allowed - set(dead))}"


# Ground-truth edges that no input pair can make matter for another reason; measured, see above.
# Structural: the sender writes a constant or a function of the position only (a Map on indices, a
# constant Map), or a TRUE selector ignores it; resample ablation never changes what the receiver uses.
_CONST_Q = ("m0->a1.h0<q>",)  # the query is a constant index (const_index Map in m0)
_CONST_MAP = ("input->m0",)  # m0 is a constant Map of the indices: it reads positions, writes a constant
KNOWN_DEAD_EDGES: dict[str, tuple[str, ...]] = {
    "42": _CONST_Q + _CONST_MAP, "57": _CONST_Q + _CONST_MAP, "116": _CONST_Q + _CONST_MAP,
    # measured dead on 200 pairs; not yet explained (the query/key of the last-position pick in
    # shuffle_dyck): listed so that the test still catches any other edge going dead
    "5": ("input->a6.h0<k>", "input->a6.h0<q>"),
    "119": tuple(f"input->a0.h{h}<q>" for h in range(4)),          # query = tokens, predicate ignores it
    "124": ("input->m0", "m0->a1.h0<q>"),                          # constant Map on tokens as the query
    "88": _CONST_Q + _CONST_MAP,
    "82": ("input->a0.h0<q>",),  # length = SelectorWidth(Select(tokens, tokens, TRUE)): the query is ignored
    # InterpBench's remove-duplicates compares the whole-sequence count with index+1 (m0's Map on the
    # indices); count > index+1 only where count >= 2, whose output is 0 either way
    "96": ("input->m0",),
}


def _node_effects(case, n=200):
    """Loss change when each ground-truth head/MLP has every outgoing edge ablated (corrupted run)."""
    _, engine, graph, gt = _faithfulness(case, n=n)
    nodes = sorted(gt.nodes - {"input", "logits"})
    masks = torch.ones(len(nodes), graph.n_edges)
    senders, _ = graph.edge_sender_receiver()
    for i, node in enumerate(nodes):
        masks[i, [e for e, s in enumerate(senders) if s == node]] = 0
    return dict(zip(nodes, engine.evaluate(masks).tolist()))


@pytest.mark.parametrize("cid", ["3", "13", "21"])
def test_removing_any_ground_truth_node_changes_the_output_sample(cases, cid):
    effects = _node_effects(cases(cid))
    assert effects and all(v > 1e-6 for v in effects.values()), effects


@pytest.mark.slow
@pytest.mark.parametrize("cid", ALL_IDS)
def test_removing_any_ground_truth_node_changes_the_output(cid):
    effects = _node_effects(TracrCase(cid))
    dead = {k for k, v in effects.items() if not v > 1e-6}
    assert dead == set(CONSTANT_NODES.get(cid, ())), {k: effects[k] for k in dead}


# Ground-truth nodes that compute a constant (a constant Map of the indices feeding a query): no input
# can change what they write, so removing them changes nothing under resample ablation.
CONSTANT_NODES = {"42": ("m0",), "57": ("m0",), "116": ("m0",)}


def test_ground_truth_drops_constant_reads(cases):
    """Case 18: both SelectorWidth heads' values read only the BOS token; the case's ground truth
    leaves those edges out, the compiled model's structural ground truth keeps them."""
    from cases.tracr.ground_truth import reads_only_constants

    case = cases("18")
    compiled = case.compiled_model()
    const = {"input->a0.h0<v>", "input->a0.h1<v>"}
    assert const <= compiled.ground_truth.edges
    assert all(reads_only_constants(compiled.model, compiled.residual_labels, e.split("->")[1]) for e in const)
    assert not reads_only_constants(compiled.model, compiled.residual_labels, "a0.h0<q>")
    assert case.ground_truth().edges == compiled.ground_truth.edges - const
