"""The tracr bridge: exact conversion, ground truth, defects and the compiled-model cache.

The reference for "exact" is tracr's own JAX model from its public entry point
(``tracr.compiler.compiling.compile_rasp_to_model``) on the same program object.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from core import naming
from core.circuit import Circuit

ROOT = Path(__file__).resolve().parents[2]
TOL = 1e-4

from cases.tracr import rasp  # noqa: E402  (tracr's rasp module; no JAX behind it)
from cases.tracr.examples import (  # noqa: E402  (the bridge's example programs)
    make_length, make_reverse, make_frac_prevs, make_hist, make_frac_threshold, make_count_prefix, make_shift, CASES)


def inputs_for(vocab, max_seq_len, cap=200, seed=0):
    rng = random.Random(seed)
    vocab = sorted(vocab, key=repr)
    out = []
    for n in range(1, max_seq_len + 1):
        seqs = list(itertools.product(vocab, repeat=n)) if len(vocab) ** n <= cap else \
            [tuple(rng.choice(vocab) for _ in range(n)) for _ in range(cap)]
        out.extend(["BOS", *s] for s in seqs)
    return out


_compiled: dict = {}


def compiled_case(case_id):
    """(CompiledModel, tracr's AssembledTransformerModel, program), compiled once per session."""
    if case_id not in _compiled:
        from cases.tracr import compile_rasp_to_model
        from tracr.compiler import compiling

        builder, vocab, n, causal = CASES[case_id]
        program = builder()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours = compile_rasp_to_model(program, vocab, n, causal=causal, cache=False)
        theirs = compiling.compile_rasp_to_model(program, vocab, n, causal=causal,
                                                 compiler_bos="BOS", compiler_pad="PAD")
        _compiled[case_id] = (ours, theirs, program)
    return _compiled[case_id]


def tracr_residual(assembled, ids: torch.Tensor) -> np.ndarray:
    import jax.numpy as jnp

    out = assembled.forward(assembled.params, jnp.array(ids.numpy()))
    return np.asarray(out.transformer_output.output)


# ---------------------------------------------------------------------------------------------
# Exact conversion.

@pytest.mark.slow
@pytest.mark.parametrize("case_id", sorted(CASES))
def test_conversion_is_exact(case_id):
    compiled, assembled, program = compiled_case(case_id)
    model = compiled.model
    cfg = model.cfg
    assert cfg.n_ctx == compiled.max_seq_len + 1
    assert cfg.attention_dir == ("causal" if compiled.causal else "bidirectional")
    assert cfg.d_head == assembled.model_config.key_size and cfg.d_mlp == assembled.model_config.mlp_hidden_size
    assert compiled.residual_labels == assembled.residual_labels
    assert compiled.input_encoder == assembled.input_encoder.encoding_map
    if compiled.is_categorical:
        assert compiled.output_encoder == assembled.output_encoder.encoding_map
    else:
        assert compiled.output_encoder is None and cfg.d_vocab_out == 1

    inputs = inputs_for(*CASES[case_id][1:3])
    out_cols = [compiled.residual_labels.index(s) for s in
                ([f"{compiled.output_label}:{v}" for v in compiled.output_values] if compiled.is_categorical
                 else [compiled.output_label])]
    by_len: dict[int, list] = {}
    for x in inputs:
        by_len.setdefault(len(x), []).append(x)
    groups = list(by_len.values()) + [inputs]          # every length alone, then one padded batch
    for group in groups:
        ids = compiled.encode(group)
        with torch.no_grad():
            logits, cache = model.run_with_cache(ids)
        ours = cache[f"blocks.{cfg.n_layers - 1}.hook_resid_post"].numpy()
        ref = tracr_residual(assembled, ids)
        assert np.abs(ours - ref).max() < TOL
        assert np.abs(logits.numpy() - ref[..., out_cols]).max() < TOL

    # decoding equals tracr's apply(...).decoded
    sample = inputs[:: max(1, len(inputs) // 12)]
    ran = compiled.run(sample)
    for x, got in zip(sample, ran):
        want = assembled.apply(x).decoded
        if compiled.is_categorical:
            assert got == want, x
        else:
            assert np.allclose(got[1:], want[1:], atol=TOL), x


def test_conversion_smoke():
    """A fast (default-run) slice of the exactness test: one small causal program, one input length."""
    compiled, assembled, program = compiled_case("seq_map_causal")
    inputs = inputs_for({0, 1, 2}, 4, cap=30)
    inputs = [x for x in inputs if len(x) == 5]
    ids = compiled.encode(inputs)
    with torch.no_grad():
        _, cache = compiled.model.run_with_cache(ids)
    ours = cache[f"blocks.{compiled.model.cfg.n_layers - 1}.hook_resid_post"].numpy()
    assert np.abs(ours - tracr_residual(assembled, ids)).max() < TOL
    assert [r[1:] for r in compiled.run(inputs)] == [rasp.evaluate(program, x[1:]) for x in inputs]


def _rasp_matches(compiled, program, inputs, atol=1e-3):
    """Positions where the compiled model and the RASP evaluator disagree (None outputs skipped)."""
    bad = []
    for x, got in zip(inputs, compiled.run(inputs)):
        want = rasp.evaluate(program, x[1:])
        for pos, (g, w) in enumerate(zip(got[1:], want)):
            if w is None:
                continue
            ok = (g == w) if compiled.is_categorical else abs(float(g) - float(w)) <= atol
            if not ok:
                bad.append((x, pos, g, w))
    return bad


@pytest.mark.slow
@pytest.mark.parametrize("case_id", sorted(CASES))
def test_run_matches_rasp_evaluator(case_id):
    compiled, _, program = compiled_case(case_id)
    _, vocab, n, causal = CASES[case_id]
    inputs = inputs_for(vocab, n, cap=60)
    if case_id == "sort_unique":  # sort_unique is defined for unique keys only
        inputs = [x for x in inputs if len(set(x[1:])) == len(x) - 1]
    if causal:  # a causal model computes the program on each prefix
        inputs_prefix = inputs
        bad = []
        for x, got in zip(inputs_prefix, compiled.run(inputs_prefix)):
            for end in range(2, len(x) + 1):
                w = rasp.evaluate(program, x[1:end])[-1]
                g = got[end - 1]
                if w is None:
                    continue
                if (g != w) if compiled.is_categorical else abs(float(g) - float(w)) > 1e-3:
                    bad.append((x, end, g, w))
    else:
        bad = _rasp_matches(compiled, program, inputs)
    assert not bad, bad[:5]


# ---------------------------------------------------------------------------------------------
# Ground truth.

def _check_ground_truth_is_well_formed(compiled):
    gt = compiled.ground_truth
    cfg = compiled.model.cfg
    assert gt.edges and naming.INPUT in gt.nodes and naming.LOGITS in gt.nodes
    for node in gt.nodes:
        layer, kind = naming.node_layer(node)
        if node.startswith("a"):
            h = int(node.split(".h")[1])
            assert 0 <= layer < cfg.n_layers and 0 <= h < cfg.n_heads, node
        elif node.startswith("m"):
            assert 0 <= layer < cfg.n_layers, node
    assert Circuit.from_edges(gt.edges).nodes <= gt.nodes
    for e in gt.edges:  # q/k/v-split: every edge into a head names the input it feeds
        p = naming.parse_edge(e)
        assert (p.qkv is not None) == p.receiver.startswith("a"), e


def _check_components_write_their_directions(compiled):
    """Each component named in component_of really writes its expression's residual directions."""
    model = compiled.model
    for label, nodes in compiled.component_of.items():
        cols = [i for i, s in enumerate(compiled.residual_labels)
                if s == label or s.startswith(label + ":") or s == label + "_selector_width_attn_output"]
        if not cols or nodes == [naming.INPUT]:
            continue
        writers = []
        for node in nodes:
            layer = naming.node_layer(node)[0]
            if node.startswith("a"):
                w = model.blocks[layer].attn.W_O[int(node.split(".h")[1])]
            else:
                w = model.blocks[layer].mlp.W_out
            writers.append(w[:, cols].abs().sum().item())
        if any(n.startswith("m") for n in nodes) or len(nodes) == 1:
            assert max(writers) > 0, (label, nodes)


@pytest.mark.slow
@pytest.mark.parametrize("case_id", sorted(CASES))
def test_ground_truth_well_formed(case_id):
    compiled, _, _ = compiled_case(case_id)
    _check_ground_truth_is_well_formed(compiled)
    _check_components_write_their_directions(compiled)


EXPECTED = {
    "frac_prevs": ["input->m0", "input->a1.h0<q>", "input->a1.h0<k>", "m0->a1.h0<v>", "a1.h0->logits"],
    "length": ["input->a0.h0<q>", "input->a0.h0<k>", "input->a0.h0<v>", "a0.h0->m0", "m0->logits"],
    "reverse": ["input->a0.h0<q>", "input->a0.h0<k>", "input->a0.h0<v>", "a0.h0->m0", "m0->m1", "input->m1",
                "m1->m2", "m2->a3.h0<q>", "input->a3.h0<k>", "input->a3.h0<v>", "a3.h0->logits"],
    "sort_unique": ["input->a0.h0<q>", "input->a0.h0<k>", "input->a0.h0<v>", "a0.h0->m0",
                    "m0->a1.h0<k>", "input->a1.h0<q>", "input->a1.h0<v>", "a1.h0->logits"],
    "seq_map": ["input->m0", "m0->logits"],
}


@pytest.mark.slow
@pytest.mark.parametrize("case_id", sorted(EXPECTED))
def test_ground_truth_hand_written(case_id):
    compiled, _, _ = compiled_case(case_id)
    assert compiled.ground_truth == Circuit.from_edges(EXPECTED[case_id])


@pytest.mark.slow
def test_component_of_labels():
    compiled, _, program = compiled_case("reverse")
    labels = {e.label: e for e in _walk(program)}
    assert set(compiled.component_of) == set(labels)
    assert compiled.component_of[program.label] == ["a3.h0"]
    length = next(l for l in labels if l.startswith("length_"))
    assert compiled.component_of[length] == ["a0.h0", "m0"]
    assert compiled.component_of["tokens"] == ["input"]


def _walk(expr, seen=None):
    seen = {} if seen is None else seen
    if expr.label not in seen:
        seen[expr.label] = expr
        for c in expr.children:
            _walk(c, seen)
    return seen.values()


# ---------------------------------------------------------------------------------------------
# Defects.

def _compile(program, vocab, n, **kw):
    from cases.tracr import compile_rasp_to_model
    from cases.tracr.defects import TracrDefectWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = compile_rasp_to_model(program, vocab, n, cache=False, **kw)
    warned = {str(w.message).split("]")[0].split("[")[-1] for w in caught
              if issubclass(w.category, TracrDefectWarning)}
    assert warned == {d.code for d in compiled.defects}
    return compiled


def codes(compiled):
    return {d.code for d in compiled.defects}


@pytest.mark.slow
def test_defect_negative_clamped():
    program = rasp.numerical(rasp.Map(lambda x: x - 2, rasp.tokens)).named("minus_two")
    compiled = _compile(program, {1, 2, 3}, 3)
    assert "negative_clamped" in codes(compiled)
    assert compiled.run([["BOS", 1, 3]])[0][1:] == pytest.approx([0.0, 1.0])  # RASP says [-1, 1]
    clean = _compile(rasp.numerical(rasp.Map(lambda x: x + 2, rasp.tokens)), {1, 2, 3}, 3)
    assert "negative_clamped" not in codes(clean)


@pytest.mark.slow
def test_defect_shared_bos_neuron():
    program = rasp.SequenceMap(lambda h, l: h * 10 + l, make_hist(), make_length()).named("hist_len")
    compiled = _compile(program, {"a", "b"}, 4)
    assert "shared_bos_neuron" in codes(compiled)
    # both SelectorWidth MLPs really are the same layer
    assert "shared_bos_neuron" not in codes(compiled_case("hist")[0])


@pytest.mark.slow
def test_defect_d_head_overflow_is_a_clear_error():
    from cases.tracr import TracrCompileError

    letters = {chr(ord("a") + i) for i in range(26)}
    with pytest.raises(TracrCompileError, match="d_head_overflow"):
        _compile(make_shift(), letters, 5)


@pytest.mark.slow
def test_defect_pad_counted():
    compiled, _, _ = compiled_case("count_prefix")
    assert "pad_counted" in codes(compiled)
    short, full = ["BOS", "x"], ["BOS", "x", "y", "x", "y", "x"]
    padded = compiled.decode(compiled.logits([short, full]))[0][: len(short)]
    assert compiled.run([short])[0] == ["BOS", 1] == ["BOS", *rasp.evaluate(compiled_case("count_prefix")[2], ["x"])]
    assert padded == ["BOS", 3]  # the two PADs at positions 1 and 2 are counted
    assert "pad_counted" not in codes(compiled_case("length")[0])  # keyed on tokens
    causal = _compile(make_count_prefix(), {"x", "y"}, 5, causal=True)
    assert "pad_counted" not in codes(causal)
    padded = causal.decode(causal.logits([short, full]))[0][: len(short)]
    assert padded == ["BOS", 1]  # causally, PADs come after every real query


@pytest.mark.slow
def test_defect_incomplete_value_set():
    assert "incomplete_value_set" not in codes(compiled_case("frac_threshold")[0])  # x > 0 is safe
    program = make_frac_threshold(0.5)
    compiled = _compile(program, {"a", "b"}, 4)
    assert "incomplete_value_set" in codes(compiled)
    x = ["a", "a", "b"]  # frac_prevs = 1, 1, 2/3; RASP says 2/3 > 0.5, tracr rounds 2/3 down to 1/2
    assert rasp.evaluate(program, x) == [True, True, True]
    assert compiled.run([["BOS", *x]])[0] == ["BOS", True, True, False]


@pytest.mark.slow
def test_defect_none_output():
    compiled, _, program = compiled_case("shift")
    assert "none_output" in codes(compiled)
    assert rasp.evaluate(program, ["b", "c"]) == [None, "b"]
    got = compiled.run([["BOS", "b", "c"]])[0]
    assert got[2] == "b" and got[1] in compiled.output_values  # None decodes to some value, not None
    assert "none_output" not in codes(compiled_case("length")[0])


@pytest.mark.slow
def test_defect_selector_width_imprecise():
    assert "selector_width_imprecise" not in codes(compiled_case("length")[0])
    long = _compile(make_length(), {"a"}, 9)
    assert "selector_width_imprecise" in codes(long)
    msg = next(d.message for d in long.defects if d.code == "selector_width_imprecise")
    assert "w=9" in msg


# ---------------------------------------------------------------------------------------------
# Cache, persistence, imports.

def test_cache_modules_do_not_import_jax():
    code = ("import sys, cases.tracr, cases.tracr.cache, cases.tracr.compiled, cases.tracr.defects; "
            "assert 'jax' not in sys.modules and 'tracr.compiler' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_cache_key_is_canonical():
    from cases.tracr.cache import cache_key

    kw = dict(causal=False, compiler_bos="BOS", compiler_pad="PAD")
    k1 = cache_key(make_reverse(), {"a", "b"}, 5, **kw)
    assert k1 == cache_key(make_reverse(), ["b", "a"], 5, **kw)      # fresh ids, other vocab order
    assert k1 != cache_key(make_reverse(), {"a", "b"}, 6, **kw)
    assert k1 != cache_key(make_reverse(), {"a", "b"}, 5, **{**kw, "causal": True})
    assert k1 != cache_key(make_reverse(), {"a", "b", "c"}, 5, **kw)
    m = lambda c: rasp.Map(lambda x: x + c, rasp.tokens)  # noqa: E731  (closure value)
    assert cache_key(m(1), {1}, 3, **kw) != cache_key(m(2), {1}, 3, **kw)
    assert cache_key(rasp.Map(lambda x: x + 1, rasp.tokens), {1}, 3, **kw) != \
        cache_key(rasp.Map(lambda x: x + 2, rasp.tokens), {1}, 3, **kw)
    sel = lambda p: rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, p))  # noqa: E731
    assert cache_key(sel(rasp.Comparison.LT), {1}, 3, **kw) != cache_key(sel(rasp.Comparison.LEQ), {1}, 3, **kw)
    assert cache_key(rasp.numerical(rasp.Map(lambda x: x, rasp.tokens)), {1}, 3, **kw) != \
        cache_key(rasp.Map(lambda x: x, rasp.tokens), {1}, 3, **kw)


@pytest.mark.slow
def test_cache_roundtrip_and_cross_process_load(tmp_path):
    from cases.tracr import compile_rasp_to_model

    program = make_frac_prevs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = compile_rasp_to_model(program, {"a", "b"}, 4, cache_dir=tmp_path)
        again = compile_rasp_to_model(program, {"a", "b"}, 4, cache_dir=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [first.key]      # no temporary directories left
    assert again.key == first.key and again.model is not first.model
    for k, v in first.model.state_dict().items():
        assert torch.equal(v, again.model.state_dict()[k]), k
    x = [["BOS", "a", "b", "a"], ["BOS", "b"]]
    assert again.run(x) == first.run(x)
    assert again.ground_truth == first.ground_truth and again.component_of == first.component_of
    meta = json.loads((tmp_path / first.key / "compiled.json").read_text())
    assert meta["versions"]["tracr-pypi"] and meta["key"] == first.key

    # Another process: ids differ (other expressions built first); the load must not import JAX,
    # and the labels must be the caller's.
    code = f"""
import sys, warnings
sys.path.insert(0, {str(ROOT)!r})
sys.path.insert(0, {str(Path(__file__).parent)!r})
from cases.tracr import rasp, compile_rasp_to_model
[rasp.Map(lambda x: x, rasp.tokens).label for _ in range(7)]
from test_tracr_bridge import make_frac_prevs
p = make_frac_prevs()
warnings.simplefilter("ignore")
c = compile_rasp_to_model(p, {{"a", "b"}}, 4, cache_dir={str(tmp_path)!r})
assert "jax" not in sys.modules, "jax imported on a cache hit"
assert c.key == {first.key!r}
assert p.label in c.component_of and c.output_label == p.label, (p.label, c.component_of)
assert any(s == p.label for s in c.residual_labels)
print(c.run([["BOS", "a", "b", "a"]]))
"""
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert "[['BOS', 1.0, 0.5, 0.666" in res.stdout


@pytest.mark.slow
def test_save_load_int_vocab(tmp_path):
    from cases.tracr.compiled import CompiledModel

    compiled, _, _ = compiled_case("reverse_int")
    compiled.save(tmp_path / "m")
    loaded = CompiledModel.load(tmp_path / "m")
    assert loaded.input_encoder == compiled.input_encoder and loaded.output_encoder == compiled.output_encoder
    assert loaded.bos == "BOS" and loaded.defects == compiled.defects
    x = [["BOS", 1, 2, 3], ["BOS", 3, 1]]
    assert loaded.run(x) == compiled.run(x) == [["BOS", 3, 2, 1], ["BOS", 1, 3]]


def test_encode_validates_inputs():
    from cases.tracr.compiled import CompiledModel

    cm = CompiledModel.__new__(CompiledModel)
    cm.input_encoder, cm.bos, cm.pad, cm.max_seq_len = {"BOS": 0, "PAD": 1, "a": 2}, "BOS", "PAD", 3
    assert cm.encode([["BOS", "a"], ["BOS"]]).tolist() == [[0, 2], [0, 1]]
    with pytest.raises(ValueError, match="BOS"):
        cm.encode([["a"]])
    with pytest.raises(ValueError, match="unknown"):
        cm.encode([["BOS", "z"]])
    with pytest.raises(ValueError, match="exceeds"):
        cm.encode([["BOS", "a", "a", "a", "a"]])
