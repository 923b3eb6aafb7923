"""The IOI case: generator, tokenizer, HL model, ground truth, and the shipped models."""

from __future__ import annotations

import argparse
import os

import pytest
import torch

from cases.ioi import circuit as ioi_circuit
from cases.ioi.case import SHIPPED, IOICase, evaluate_model, interchange_accuracy
from cases.ioi.data import (FAMILIES, NAMES, ORDERS, SEQ_LEN, IOIPrompt, build_tokenizer, corrupt, encode,
                            sample_prompts, split_of)
from cases.ioi.hl_model import build_hl_model, duplicate_index, hl_labels
from cases.tokenizer import WordTokenizer
from training.correspondence import NodeLoc
from core.patching import interchange
from core.graph import Graph

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))


# ---- generator -------------------------------------------------------------------------------------
def test_generator_is_deterministic_and_seeded():
    a, b = sample_prompts(60, seed=3), sample_prompts(60, seed=3)
    assert [p.text for p in a] == [p.text for p in b]
    assert [p.text for p in a] != [p.text for p in sample_prompts(60, seed=4)]
    assert corrupt(a, "abc", 1) == corrupt(b, "abc", 1)
    assert {p.family for p in sample_prompts(400, 0)} == set(FAMILIES) and len(FAMILIES) >= 3


def test_splits_are_disjoint_and_deduplicated():
    train = [p.text for p in sample_prompts(2000, 0, "train")]
    test = [p.text for p in sample_prompts(500, 0, "test")]
    assert len(set(train)) == len(train) and len(set(test)) == len(test)
    assert not set(train) & set(test)
    assert all(split_of(t) == "train" for t in train) and all(split_of(t) == "test" for t in test)


def test_every_template_has_fixed_length_and_single_token_names():
    tok = build_tokenizer()
    assert len(NAMES) >= 40
    for fam in FAMILIES:
        for order in ORDERS:
            p = IOIPrompt(fam, order, "Mary", "John", "park", "ball")
            ids = tok.encode(p.text)
            assert len(ids) == SEQ_LEN and ids[0] == tok.bos_id
            assert ids.count(tok.token_id("John")) == 2 and ids.count(tok.token_id("Mary")) == 1


def test_abc_corruption_replaces_the_second_subject():
    prompts = sample_prompts(300, 1, "test")
    clean, bad = encode(prompts), encode(corrupt(prompts, "abc", 1))
    tok = build_tokenizer()
    diff = clean.tokens != bad.tokens
    assert (diff.sum(1) == 1).all()                      # exactly one token differs: S2
    pos = diff.float().argmax(1)
    assert (clean.tokens[torch.arange(300), pos] == clean.s).all()
    c = bad.tokens[torch.arange(300), pos]
    assert ((c != clean.io) & (c != clean.s)).all() and all(tok.vocab[int(i)] in NAMES for i in c)
    for row in bad.tokens:  # no name is mentioned twice any more
        names = [int(t) for t in row if tok.vocab[int(t)] in NAMES]
        assert len(names) == len(set(names)) == 3


def test_resample_corruption_changes_both_names():
    prompts = sample_prompts(100, 2)
    for p, q in zip(prompts, corrupt(prompts, "resample", 2)):
        assert {q.io, q.s}.isdisjoint({p.io, p.s}) and (q.family, q.order, q.place, q.obj) == (p.family, p.order, p.place, p.obj)


# ---- tokenizer ------------------------------------------------------------------------------------------
def test_tokenizer_round_trip_and_json(tmp_path):
    tok = build_tokenizer()
    for p in sample_prompts(50, 5):
        assert tok.decode(tok.encode(p.text)) == p.text
    tok.save(tmp_path / "tokenizer.json")
    again = WordTokenizer.load(tmp_path / "tokenizer.json")
    assert again.vocab == tok.vocab and again.name_ids == tok.name_ids
    assert tok.tokenize("Then, Mary went.", prepend_bos=False) == ["Then", ",", "Mary", "went", "."]
    with pytest.raises(KeyError):
        tok.encode("Zorglub gave")


# ---- HL model -------------------------------------------------------------------------------------------
def test_hl_nodes_have_the_intended_values():
    tok = build_tokenizer()
    hl = build_hl_model(tok)
    p = IOIPrompt("then", "IO_first", io="Mary", s="John", place="park", obj="ball")
    x = torch.tensor([tok.encode(p.text)])
    _, cache = hl.run_with_cache(x)
    words = tok.tokenize(p.text)
    s1, s2 = words.index("John"), len(words) - 1 - words[::-1].index("John")
    assert cache["hook_duplicate"][0, s2] == s1 and cache["hook_duplicate"][0, s1] == -1
    assert cache["hook_s_inhibition"][0, s2] == tok.token_id("John")
    assert cache["hook_s_inhibition"][0, -1] == tok.token_id("John")  # carried to END (the name mover's query)
    assert (cache["hook_s_inhibition"][0, :s2] == -1).all()
    assert (duplicate_index(x) == cache["hook_duplicate"]).all()
    assert cache["hook_name_mover"][0, -1] == tok.token_id("Mary")
    assert hl.predict(x)[0, -1] == tok.token_id("Mary")


def test_hl_answers_io_on_clean_and_is_undefined_on_abc():
    data = IOICase().dataset(n=200, seed=0)
    hl = build_hl_model()
    assert (hl.predict(data.clean)[:, -1] == data.meta["io"]).all()
    assert (hl.predict(data.corrupted)[:, -1] == -100).all()


def test_hl_interchanges():
    data = IOICase().dataset(n=200, seed=0)
    hl = build_hl_model()
    io, s = data.meta["io"], data.meta["s"]
    # S-inhibition from the ABC twin: nothing is inhibited any more, so S (two mentions) wins.
    out = hl_labels(interchange(hl, data.clean, data.corrupted, [NodeLoc("hook_s_inhibition")]))[:, -1]
    assert (out == s).all()
    # Name mover / input from another prompt: that prompt's answer.
    other = data.clean.roll(1, 0)
    for hook in ("hook_name_mover", "hook_input"):
        out = hl_labels(interchange(hl, data.clean, other, [NodeLoc(hook)]))[:, -1]
        assert (out == io.roll(1, 0)).all()
    # Duplicate pointers from a prompt of the same layout change nothing.
    same = [i for i in range(1, 200) if data.meta["families"][i] == data.meta["families"][0]][0]
    out = hl_labels(interchange(hl, data.clean[:1], data.clean[same:same + 1], [NodeLoc("hook_duplicate")]))[:, -1]
    assert out.item() == io[0].item() or data.clean[0, 1:].ne(data.clean[same, 1:]).any()


# ---- ground truth and case -----------------------------------------------------------------------------
def test_ground_truth_uses_graph_names():
    truth = IOICase().ground_truth()
    graph = Graph(6, 4)
    assert truth.nodes == {"input", "m0", "a1.h1", "a2.h1", "a4.h1", "logits"}
    assert set(truth.edges) <= set(graph.edges)
    assert graph.mask_for(truth).sum() == len(truth.edges)
    assert {"a1.h1->a2.h1<k>", "a2.h1->a4.h1<q>", "a4.h1->logits", "input->m0"} <= truth.edges
    assert not {"a2.h1->a4.h1<k>", "a2.h1->a4.h1<v>"} & truth.edges  # inhibition acts through the query
    assert IOICase().ground_truth("natural") == truth
    corr = ioi_circuit.correspondence()
    assert corr.mapping == {"input": ("m0",), "a1.h1": ("a1.h1",), "a2.h1": ("a2.h1",), "a4.h1": ("a4.h1",)}


def test_case_dataset_contract():
    case = IOICase()
    d = case.dataset(n=40, seed=7)
    assert d.clean.shape == d.corrupted.shape == (40, SEQ_LEN)
    assert d.mask[:, -1].all() and not d.mask[:, :-1].any()
    assert (d.clean_labels[:, -1] == d.meta["io"]).all() and (d.clean_labels[:, :-1] == -100).all()
    assert (d.meta["wrong"][:, -1] == d.meta["s"]).all()
    assert torch.equal(case.dataset(n=40, seed=7).clean, d.clean) and not torch.equal(d.clean, d.corrupted)
    assert case.id == "ioi" and case.output_type == "categorical" and case.models == ("siit", "natural")
    with pytest.raises(ValueError):
        case.load_model("tracr")


def test_abc_sources_join_the_train_split_unscored():
    from cases.ioi.train import ioi_siit_data

    plain, abc = ioi_siit_data(40, 20, seed=3), ioi_siit_data(40, 20, seed=3, abc_sources=True)
    assert len(abc.train) == 2 * len(plain.train) and torch.equal(abc.train.tokens[:40], plain.train.tokens)
    assert abc.train.mask[:40].equal(plain.train.mask) and not abc.train.mask[40:].any()  # twins: sources only
    twins = abc.train.tokens[40:]
    assert (twins != plain.train.tokens).sum(1).eq(1).all()  # each differs from its prompt in S2 only
    hl = build_hl_model()
    assert (hl.predict(twins)[:, -1] == -100).all()  # no duplicate: the HL answer is undefined
    abc.check_disjoint()


def test_cli_arguments_reject_bad_values():
    from benchmark.cli import UsageError
    from benchmark.commands.train import add_train_ioi_arguments, run_train_ioi

    parser = argparse.ArgumentParser()
    add_train_ioi_arguments(parser)
    for bad in (["--epochs", "0"], ["--n-layers", "4"], ["--lr", "-1"], ["--d-model", "66"]):
        with pytest.raises(UsageError):
            run_train_ioi(parser.parse_args(bad + ["--out", "/nonexistent/never-written"]))


# ---- the shipped models --------------------------------------------------------------------------------
def _shipped(kind):
    d = SHIPPED / kind
    if not (d / "model.safetensors").is_file():
        pytest.skip(f"no shipped {kind} IOI model")
    return IOICase.load_dir(d)[0]


@pytest.fixture(scope="module")
def siit_model():
    return _shipped("siit")


def test_shipped_siit_model_accuracy_and_circuit(siit_model):
    data = IOICase().dataset(n=200, seed=11)
    m = evaluate_model(siit_model, data)
    assert m["accuracy"] >= 0.95
    assert m["logit_diff"] > 1.0 and abs(m["corrupted_logit_diff"]) < 0.5 * m["logit_diff"]
    assert m["gt_logit_diff_kept"] >= 0.90 and m["gt_faithfulness"] >= 0.90
    assert m["no_name_mover_faithfulness"] < 0.3 and m["gt_no_name_mover_faithfulness"] < 0.3


def test_shipped_siit_model_iia(siit_model):
    base = IOICase().dataset(n=256, seed=12).clean
    source = IOICase().dataset(n=256, seed=13).clean
    iia = interchange_accuracy(siit_model, base, source)
    assert set(iia) == {"input", "duplicate", "s_inhibition", "name_mover"}
    # The bar is IIA (mean over the HL nodes, as InterpBench reports it) >= 95%. The duplicate
    # node is the weakest (0.83 on these pairs; EXPERIMENTS.md §4): every node must still be >= 0.8.
    assert sum(iia.values()) / len(iia) >= 0.95, iia
    assert min(iia.values()) >= 0.8, iia


def test_shipped_natural_model_accuracy():
    model = _shipped("natural")
    data = IOICase().dataset(n=200, seed=11)
    with torch.no_grad():
        pred = model(data.clean)[:, -1].argmax(-1)
    assert (pred == data.meta["io"]).float().mean() >= 0.95


def test_trainer_does_not_score_positions_without_an_hl_answer():
    """IIT from an ABC source through the input node leaves the HL model without an answer: that
    target is -100 and neither the loss nor IIA counts it (it used to become token 0)."""
    from cases.ioi.train import ioi_siit_data, ll_config
    from training.trainer import SIITTrainer, TrainConfig
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    data = ioi_siit_data(16, 8, seed=0, abc_sources=True)
    ll = HookedTransformer(HookedTransformerConfig(**ll_config(6, 4, 32, 64, 0, None), device="cpu"))
    trainer = SIITTrainer(build_hl_model(), ll, ioi_circuit.correspondence(), data, "categorical",
                          TrainConfig(epochs=1, batch_size=8, seed=0))
    base, abc = data.train.tokens[:4], data.train.tokens[16:20]
    target = trainer._hl_interchange_target(base, abc, "input")
    assert (target[:, -1] == -100).all()
    mask = data.train.mask[:4]
    out = torch.randn(4, base.shape[1], len(build_tokenizer()))
    assert trainer.loss_fn(out, target, mask) == 0  # nothing scored
    clean_target = trainer._hl_interchange_target(base, data.train.tokens[4:8], "input")
    assert (clean_target[:, -1] >= 0).all() and trainer.loss_fn(out, clean_target, mask) > 0
