"""SIIT: correspondence, loss composition, pairs, data splits, training, model files, shipped models."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest
import torch

from core.circuit import Circuit
from core.provenance import sha256_file
from training import model_files, registry
from training.correspondence import Correspondence, NodeLoc, ll_size, tracr_correspondence
from training.trainer import (SIITData, SIITTrainer, Split, TrainConfig, combine_losses, epoch_pairs,
                                split_disjoint)

torch.set_num_threads(1)

# (case, directory name): a kind (``siit``, ``iit``, ``natural``) or a further training seed of one (``siit-seed1``)
SHIPPED = sorted((p.parent.name, p.name) for p in registry.SHIPPED_DIR.glob("*/*") if model_files.is_model_dir(p))


def _kind(name: str) -> str:
    """The model kind of a shipped directory name (``siit-seed1`` -> ``siit``)."""
    return name.split(registry.SEED_SUFFIX)[0]


def _case(cid):
    from cases import get_case
    return get_case(cid)


@pytest.fixture(scope="module")
def case3():
    return _case("3")


@pytest.fixture(scope="module")
def setup3(case3):
    from cases.tracr.siit import tracr_setup
    return tracr_setup(case3, seed=0)


# ---------------------------------------------------------------------------------------------------
# correspondence
# ---------------------------------------------------------------------------------------------------

def test_ll_size_rule_matches_interpbench():
    # interpbench.md §2.2 LL column, from the compiled sizes
    s3 = ll_size("3", dict(n_layers=2, n_heads=1, d_model=13, d_head=6))
    assert (s3.n_layers, s3.n_heads, s3.d_model, s3.d_head, s3.d_mlp) == (2, 4, 12, 3, 48)
    s18 = ll_size("18", dict(n_layers=2, n_heads=2, d_model=42, d_head=7))
    assert (s18.n_layers, s18.n_heads, s18.d_model, s18.d_head, s18.d_mlp) == (2, 4, 26, 6, 104)
    s21 = ll_size("21", dict(n_layers=4, n_heads=1, d_model=66, d_head=29))
    assert (s21.n_layers, s21.n_heads, s21.d_model, s21.d_head, s21.d_mlp) == (4, 4, 50, 12, 200)
    s20 = ll_size("20", dict(n_layers=1, n_heads=1, d_model=25, d_head=1))
    assert (s20.n_layers, s20.d_model, s20.d_head, s20.d_mlp) == (2, 4, 1, 16)
    same = ll_size("81", dict(n_layers=4, n_heads=2, d_model=209, d_head=10), same_size=True)
    assert (same.n_layers, same.n_heads) == (4, 2)


def test_correspondence_case3(setup3):
    corr = setup3.corr
    assert corr.mapping == {"m0": ("m0",), "a1.h0": ("a1.h0",)}
    assert corr.hl_locs["a1.h0"] == NodeLoc("blocks.1.attn.hook_result", 0)
    assert corr.ll_locs["a1.h0"] == NodeLoc("blocks.1.attn.hook_z", 0)
    assert corr.hl_locs["m0"] == NodeLoc("blocks.0.hook_mlp_out", None)
    assert set(corr.non_circuit) == {"a0.h0", "a0.h1", "a0.h2", "a0.h3", "a1.h1", "a1.h2", "a1.h3", "m1"}
    gt = setup3.ll_truth
    assert gt.edges == setup3.hl_truth.edges  # identity mapping on this case
    assert gt.nodes == {"input", "m0", "a1.h0", "logits"}
    assert Correspondence.from_json(json.loads(json.dumps(corr.to_json()))).mapping == corr.mapping


def test_correspondence_two_heads_and_skipped_layers():
    # case 21: components in layers 0..3 with empty attention in layers 0 and 2
    comp = {"first_idx_3": ["m2"], "first_sel_2": ["a3.h0"], "same_before_5": ["a1.h0"],
            "seen_count_4": ["a1.h0", "m1"], "tok_idx_6": ["m0"], "tokens": ["input"], "unique_1": ["a3.h0"]}
    corr = tracr_correspondence(comp, 4, 4)
    assert corr.mapping == {"m0": ("m0",), "a1.h0": ("a1.h0",), "m1": ("m1",), "m2": ("m2",), "a3.h0": ("a3.h0",)}
    assert "m3" in corr.non_circuit and "a0.h0" in corr.non_circuit
    # a head override (InterpBench's case-3 style) moves the LL head
    corr2 = tracr_correspondence({"x": ["m0"], "y": ["a1.h0"]}, 2, 4, head_map={"a1.h0": 2})
    assert corr2.mapping["a1.h0"] == ("a1.h2",)
    gt = corr2.ll_ground_truth(Circuit.from_edges({"input->m0", "m0->a1.h0<v>", "input->a1.h0<q>", "a1.h0->logits"}))
    assert gt.edges == {"input->m0", "m0->a1.h2<v>", "input->a1.h2<q>", "a1.h2->logits"}
    with pytest.raises(ValueError):
        tracr_correspondence({"x": ["a1.h0"]}, 2, 4, head_map={"a1.h0": 7})


# Case 81's blocks: A M A M A (empty M) A M -> tracr layers 0,0,1,1,2,3,3 (interpbench.md §3.3).
CASE81_COMPONENTS = {"median_1": ["m3"], "lo_val_2": ["a3.h0"], "hi_val_3": ["a3.h1"], "sort_5": ["a2.h0"],
                     "indices": ["input"], "lo_idx_7": ["m1"], "tokens": ["input"], "hi_idx_9": ["m1"],
                     "length_10": ["a0.h0", "m0"], "target_pos_11": ["a1.h0", "m1"], "sort_keys_14": ["m0"],
                     "all_true_12": ["a0.h0"], "smaller_13": ["a1.h0"]}
CASE81_EDGES = {"a0.h0->m0", "a1.h0->m1", "a2.h0->a3.h0<v>", "a2.h0->a3.h1<v>", "a3.h0->m3", "a3.h1->m3",
                "input->a0.h0<k>", "input->a0.h0<q>", "input->a0.h0<v>", "input->a1.h0<v>", "input->a2.h0<q>",
                "input->a2.h0<v>", "input->a3.h0<k>", "input->a3.h1<k>", "input->m0", "m0->a1.h0<k>",
                "m0->a1.h0<q>", "m0->m1", "m1->a2.h0<k>", "m1->a3.h0<q>", "m1->a3.h1<q>", "m3->logits"}


def test_correspondence_adjacent_attention_case81():
    hl_truth = Circuit.from_edges(CASE81_EDGES)
    corr = tracr_correspondence(CASE81_COMPONENTS, 4, 4)
    # the two adjacent attention layers stay in two LL layers: a2.h0 -> a2.h0, a3.h* -> a3.h*
    assert corr.mapping["a2.h0"] == ("a2.h0",)
    assert corr.mapping["a3.h0"] == ("a3.h0",) and corr.mapping["a3.h1"] == ("a3.h1",)
    assert corr.mapping["m3"] == ("m3",)
    corr.check_order(hl_truth)
    gt = corr.ll_ground_truth(hl_truth)
    assert "a2.h0->a3.h0<v>" in gt.edges and "a2.h0->a3.h1<v>" in gt.edges
    # InterpBench's counter (layer += 1 only after an MLP) puts layer-3 heads into layer 2: the
    # a2.h0 -> a3.h0 edge would then not run forward, which check_order rejects.
    bad = Correspondence(hl_locs=corr.hl_locs, mapping={**corr.mapping, "a3.h0": ("a2.h1",), "a3.h1": ("a2.h2",)},
                         ll_locs=corr.ll_locs)
    with pytest.raises(ValueError, match="does not run forward"):
        bad.check_order(hl_truth)


def test_correspondence_case81_compiled():
    case = _case("81")
    cm = case.cached_model()
    if cm is None:
        pytest.skip("case 81 is not compiled in the cache (compiling takes ~20 s)")
    from cases.tracr.siit import tracr_setup
    st = tracr_setup(case)
    assert st.ll_config["n_layers"] == 4
    assert {"a2.h0", "a3.h0", "a3.h1"} <= set(st.corr.mapping)
    assert st.ll_truth.merged().edges >= {"a2.h0->a3.h0", "a2.h0->a3.h1"}


# ---------------------------------------------------------------------------------------------------
# losses, pairs, data
# ---------------------------------------------------------------------------------------------------

def test_combine_losses_applies_each_weight_once():
    losses = {"iit": torch.tensor(2.0), "strict": torch.tensor(3.0), "behavior": torch.tensor(5.0)}
    assert float(combine_losses(losses, {"iit": 1.0, "strict": 0.4, "behavior": 1.0})) == pytest.approx(8.2)
    assert float(combine_losses(losses, {"iit": 0.0, "strict": 0.4, "behavior": 0.0})) == pytest.approx(1.2)
    with pytest.raises(ValueError):
        combine_losses(losses, {})


class _Recorder(SIITTrainer):
    """A trainer whose losses are fixed numbers (with gradients), recording what the optimizer sees."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.stepped: list[float] = []
        self.sources: list[torch.Tensor] = []

    def losses(self, base, source, mask, base_target, hl_node, strict_nodes, which=("iit", "strict", "behavior"),
               source_mask=None, pair=None):
        self.sources.append(source.clone())
        p = next(self.ll.parameters())
        z = (p * 0).sum()
        vals = {"iit": 2.0, "strict": 3.0, "behavior": 5.0}
        return {k: z + vals[k] for k in which}

    def _step(self, loss):
        self.stepped.append(float(loss.detach()))


def _tiny_trainer(setup, data, cls=SIITTrainer, **cfg):
    from cases.tracr.siit import build_ll
    ll = build_ll(setup.ll_config)
    return cls(setup.hl, ll, setup.corr, data, setup.output_type, TrainConfig(**cfg))


@pytest.fixture(scope="module")
def data3(case3):
    from cases.tracr.siit import tracr_data
    return tracr_data(case3, 1000, seed=0)


def test_strict_weight_applied_once_in_training(setup3, data3):
    t = _tiny_trainer(setup3, data3, _Recorder, single_loss=True, strict_weight=0.4, epochs=1, batch_size=512)
    t.train_epoch()
    assert t.stepped and all(v == pytest.approx(2.0 + 0.4 * 3.0 + 5.0) for v in t.stepped)
    t2 = _tiny_trainer(setup3, data3, _Recorder, single_loss=False, strict_weight=0.4, siit_sampling="all",
                       epochs=1, batch_size=512)
    t2.train_epoch()
    assert t2.stepped[:3] == pytest.approx([2.0, 0.4 * 3.0, 5.0])  # sequential: IIT, strict, behaviour


def test_interchange_targets_from_the_tables_equal_full_hl_runs(setup3, data3):
    """The trainer's interchange tables (each HL node's source activation and the residual entering its
    block, computed once per split; the HL then runs from that block only) give the targets of two full HL
    runs bit for bit on every HL node (case 3: an MLP and a head), and an epoch trained with them takes
    the same steps."""
    t = _tiny_trainer(setup3, data3)
    order, src = epoch_pairs(len(data3.train), 0, 0)
    bi, si = order[:64], src[order[:64]]
    base, source = data3.train.tokens[bi], data3.train.tokens[si]
    table = t._hl_table("train")
    assert table is not None and set(table["layer"]) == set(t.hl_nodes) == {"m0", "a1.h0"}
    for n in t.hl_nodes:
        assert torch.equal(t._hl_interchange_target(base, source, n),
                           t._hl_interchange_target(base, source, n, ("train", bi, si)))
    with_tables, without = (_tiny_trainer(setup3, data3, epochs=1, batch_size=256) for _ in range(2))
    without._hl_table = lambda split: None
    with_tables.train_epoch()
    without.train_epoch()
    assert all(torch.equal(a, b) for a, b in zip(with_tables.ll.state_dict().values(), without.ll.state_dict().values()))
    assert with_tables.evaluate("val") == without.evaluate("val")


def test_fresh_pairs_every_epoch(setup3, data3):
    a0, s0 = epoch_pairs(100, 0, 0)
    a0b, s0b = epoch_pairs(100, 0, 0)
    a1, s1 = epoch_pairs(100, 0, 1)
    assert torch.equal(s0, s0b) and torch.equal(a0, a0b)  # reproducible (resume sees the same pairs)
    assert not torch.equal(s0[a0], s1[a1]) and sorted(a0.tolist()) == list(range(100))
    t = _tiny_trainer(setup3, data3, _Recorder, single_loss=True, epochs=2, batch_size=4096)
    t.train_epoch()
    t.epoch = 1
    t.train_epoch()
    assert len(t.sources) == 2 and not torch.equal(t.sources[0], t.sources[1])


def test_train_val_test_disjoint(data3, case3):
    data3.check_disjoint()
    rows = {k: {tuple(r) for r in getattr(data3, k).tokens.tolist()} for k in ("train", "val", "test")}
    assert not rows["train"] & rows["test"] and not rows["train"] & rows["val"] and not rows["val"] & rows["test"]
    assert data3.meta["exhaustive"] and sum(len(v) for v in rows.values()) == case3.input_space_size()
    # duplicates in the input are dropped before splitting
    tok = torch.tensor([[1, 2], [1, 2], [3, 4], [5, 6], [7, 8], [1, 2]])
    d = split_disjoint(tok, torch.ones_like(tok, dtype=torch.bool), 0.25, 0.25, seed=0)
    assert len(d.train) + len(d.val) + len(d.test) == 4 and d.meta["n_duplicates_dropped"] == 2
    bad = SIITData(Split(tok[:2], tok[:2] > 0), Split(tok[2:3], tok[2:3] > 0), Split(tok[3:], tok[3:] > 0))
    with pytest.raises(ValueError):
        bad.check_disjoint()


def test_defined_positions_drop_none_outputs_and_mask_interchanges():
    """Case 13 (trend of token and next token): the program's output at the last position is None, and the
    compiled model's output there depends on padding; ``scored="defined"`` drops exactly those positions,
    and scores an interchange only where the source is defined as well."""
    from cases.tracr.siit import tracr_data
    case13 = _case("13")
    real = tracr_data(case13, 300, seed=0)
    defined = tracr_data(case13, 300, seed=0, scored="defined")
    assert "scored" not in real.meta and defined.meta["scored"] == "defined"
    assert defined.pair_masked and not real.pair_masked
    for k in ("train", "val", "test"):
        r, d = getattr(real, k), getattr(defined, k)
        assert torch.equal(r.tokens, d.tokens) and bool((d.mask <= r.mask).all())
        rows, last = torch.arange(len(r)), r.mask.sum(1)  # BOS at 0, so the last real position is the count
        assert bool(r.mask[rows, last].all()) and not bool(d.mask[rows, last].any())
        assert torch.equal(d.mask.sum(1), r.mask.sum(1) - 1)
    b, s = defined.test.mask[:4], defined.test.mask[4:8]
    assert torch.equal(defined.iit_mask(b, s), b & s) and not torch.equal(b & s, b)
    assert torch.equal(real.iit_mask(b, s), b)
    with pytest.raises(ValueError, match="source mask"):
        defined.iit_mask(b, None)
    with pytest.raises(ValueError, match="scored positions"):
        tracr_data(case13, 10, seed=0, scored="all")


def test_strict_sampling_modes(setup3, data3):
    import numpy as np
    nc = setup3.corr.non_circuit
    draws = {}
    for mode in ("individual", "sample_all", "all", "any_size"):
        t = _tiny_trainer(setup3, data3, siit_sampling=mode)
        rng = np.random.default_rng(0)
        draws[mode] = [t._sample_strict(rng) for _ in range(2000)]
        assert all(set(d) <= set(nc) and len(set(d)) == len(d) for d in draws[mode])
    assert {len(d) for d in draws["individual"]} == {1} and all(d == list(nc) for d in draws["all"])
    sizes = np.bincount([len(d) for d in draws["any_size"]], minlength=len(nc) + 1)
    assert sizes[0] == 0 and (sizes[1:] > 2000 / len(nc) * 0.7).all()  # every size 1..n, about equally often
    assert sum(len(d) == len(nc) for d in draws["sample_all"]) < sizes[-1] / 5  # "all together" is rare there


def test_joint_strict_accuracy_patches_every_non_circuit_node_at_once():
    from cases.tracr.siit import evaluate_trained
    from core.patching import capture, patched_forward
    from training.trainer import eval_pairs
    t, m = evaluate_trained(_case("3"), "siit", max_pairs=256, per_node=True)
    d = t.data.test
    b, s = eval_pairs(len(d), 256, t.cfg.seed)
    base, mask, target = d.tokens[b], d.mask[b], t._targets["test"][b]
    locs = [t.corr.ll_locs[n] for n in t.non_circuit]
    _, cache = capture(t.ll, d.tokens[s], [loc.hook for loc in locs])
    with torch.no_grad():
        out = patched_forward(t.ll, base, [(loc, slice(0, len(b)), cache[loc.hook]) for loc in locs])
    by_hand = float((((out[..., 0] - target).abs() < t.cfg.atol) & mask).sum() / mask.sum())
    assert m["strict_accuracy_joint"] == pytest.approx(by_hand)
    assert len(locs) > 1 and 0 < by_hand <= 1


def test_seed_reaches_model_init(setup3):
    from cases.tracr.siit import build_ll
    a = build_ll({**setup3.ll_config, "seed": 0})
    b = build_ll({**setup3.ll_config, "seed": 0})
    c = build_ll({**setup3.ll_config, "seed": 1})
    assert torch.equal(a.W_E, b.W_E) and not torch.equal(a.W_E, c.W_E)


def test_early_stop_criterion(setup3, data3):
    m = {"iia": 0.999, "iia_min": 0.999, "accuracy": 1.0, "strict_accuracy": 0.996, "strict_accuracy_min": 0.97}
    mean = _tiny_trainer(setup3, data3, early_stop_threshold=0.995)
    worst = _tiny_trainer(setup3, data3, early_stop_threshold=0.995, early_stop_criterion="min")
    natural = _tiny_trainer(setup3, data3, iit_weight=0, strict_weight=0, early_stop_threshold=0.995)
    assert mean.reached(m) and not worst.reached(m)
    assert natural.reached({**m, "iia": 0.1, "strict_accuracy": 0.1})
    joint = _tiny_trainer(setup3, data3, early_stop_threshold=0.995, early_stop_criterion="min_joint")
    good = {**m, "strict_accuracy_min": 0.999}
    assert worst.reached({**good, "strict_accuracy_joint": 0.6}) and not joint.reached({**good, "strict_accuracy_joint": 0.6})
    assert joint.reached({**good, "strict_accuracy_joint": 0.996}) and joint.score({**good, "strict_accuracy_joint": 0.6}) == 0.6
    with pytest.raises(ValueError, match="min_joint"):
        TrainConfig(early_stop_criterion="joint")


def test_config_validation():
    with pytest.raises(ValueError):
        TrainConfig(siit_sampling="some")
    with pytest.raises(ValueError):
        TrainConfig(iit_weight=0, strict_weight=0, behavior_weight=0)
    with pytest.raises(ValueError):
        TrainConfig(strict_weight=-1)


# ---------------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------------

def test_tiny_training_improves_iia(setup3, data3, tmp_path):
    t = _tiny_trainer(setup3, data3, single_loss=True, siit_sampling="sample_all", lr=3e-3, clip_grad_norm=1.0,
                      epochs=8, min_steps_per_epoch=4, eval_pairs=256, seed=0)
    before = t.evaluate("val", max_pairs=256)
    t.fit(checkpoint=tmp_path / "ck.pt", progress=False)
    after = t.evaluate("val", max_pairs=256)
    assert after["iia"] > before["iia"] + 0.15, (before, after)
    assert after["accuracy"] > before["accuracy"]
    assert len(t.history) == 8 and "val_iia" in t.history[-1]
    # resume: a fresh trainer continues from the checkpoint with the same weights and epoch
    t2 = _tiny_trainer(setup3, data3, single_loss=True, siit_sampling="sample_all", lr=3e-3, clip_grad_norm=1.0,
                       epochs=8, min_steps_per_epoch=4, eval_pairs=256, seed=0)
    t2.load_checkpoint(tmp_path / "ck.pt")
    assert t2.epoch == 8 and all(torch.equal(p, q) for p, q in zip(t.ll.parameters(), t2.ll.parameters()))
    t3 = _tiny_trainer(setup3, data3, single_loss=True, lr=1e-2, epochs=8)
    with pytest.raises(ValueError, match="other settings"):
        t3.load_checkpoint(tmp_path / "ck.pt")


# ---------------------------------------------------------------------------------------------------
# model files, hub
# ---------------------------------------------------------------------------------------------------

def _saved_dir(setup3, tmp_path):
    from cases.tracr.siit import build_ll
    ll = build_ll(setup3.ll_config, graph_flags=True)
    return model_files.save_model_dir(tmp_path / "m", ll, ground_truth=setup3.ll_truth, metadata={"case": "3"},
                                      correspondence=setup3.corr), ll


def test_model_dir_round_trip(setup3, tmp_path):
    d, ll = _saved_dir(setup3, tmp_path)
    assert {p.name for p in d.iterdir()} == set(model_files.FILES)
    model, gt = model_files.load_model_dir(d)
    assert model.cfg.use_attn_result and model.cfg.use_split_qkv_input and model.cfg.use_hook_mlp_in
    tokens = torch.randint(0, setup3.ll_config["d_vocab"], (8, setup3.ll_config["n_ctx"]))
    with torch.no_grad():
        assert torch.equal(ll(tokens), model(tokens))
    assert gt == setup3.ll_truth
    assert model_files.load_correspondence(d).mapping == setup3.corr.mapping
    assert model_files.read_metadata(d) == {"case": "3"}
    with pytest.raises(FileNotFoundError):
        model_files.load_model_dir(tmp_path / "nothing")


class FakeHub:
    """The three HfApi methods push/pull use, backed by a local folder."""

    def __init__(self, root: Path):
        self.root = root
        self.repos: set[str] = set()

    def create_repo(self, repo_id, exist_ok=False, private=False):
        self.repos.add(repo_id)

    def upload_folder(self, folder_path, repo_id, path_in_repo=None, allow_patterns=None, commit_message=""):
        assert repo_id in self.repos
        dest = self.root / repo_id / (path_in_repo or "")
        dest.mkdir(parents=True, exist_ok=True)
        for f in Path(folder_path).iterdir():
            if allow_patterns is None or f.name in allow_patterns:
                shutil.copyfile(f, dest / f.name)
        return f"commit {path_in_repo}"

    def hf_hub_download(self, repo_id, filename, revision=None):
        p = self.root / repo_id / filename
        if not p.is_file():
            raise FileNotFoundError(filename)
        return str(p)


def test_hub_push_pull_with_fake_api(setup3, tmp_path):
    d, ll = _saved_dir(setup3, tmp_path)
    (d / "checkpoint.pt").write_bytes(b"not uploaded")
    hub = FakeHub(tmp_path / "hub")
    model_files.push_to_hub(d, "me/bench", "3/siit", api=hub)
    assert not (tmp_path / "hub" / "me/bench/3/siit/checkpoint.pt").exists()
    out = model_files.pull_from_hub("me/bench", tmp_path / "pulled", "3/siit", api=hub)
    model, gt = model_files.load_model_dir(out)
    tokens = torch.randint(0, setup3.ll_config["d_vocab"], (4, setup3.ll_config["n_ctx"]))
    with torch.no_grad():
        assert torch.equal(ll(tokens), model(tokens))
    with pytest.raises(FileNotFoundError):
        model_files.pull_from_hub("me/bench", tmp_path / "x", "4/siit", api=hub)


def test_registry_local_dir(setup3, tmp_path, monkeypatch):
    """A locally trained model (in train's default output) is listed and loads by directory only: a kind
    (``--model natural``) never picks it up in place of a shipped model (issue 18)."""
    monkeypatch.setenv(registry.LOCAL_ENV, str(tmp_path / "local"))
    from cases.tracr.siit import build_ll
    d = tmp_path / "local" / "toy-x" / "natural"
    model_files.save_model_dir(d, build_ll(setup3.ll_config), ground_truth=setup3.ll_truth, metadata={})
    assert registry.available_models("toy-x") == []
    assert registry.trained_models("toy-x") == {"natural": str(d)}
    model, gt = registry.load_trained("toy-x", "natural", directory=d)
    assert gt == setup3.ll_truth
    with pytest.raises(FileNotFoundError, match="has no trained 'natural'"):
        registry.load_trained("toy-x", "natural")
    with pytest.raises(FileNotFoundError, match="has no trained 'siit'"):
        registry.load_trained("toy-x", "siit")
    ref = registry.explicit_ref("toy-x", d, "natural")
    assert ref.source == "trained" and ref.sha256 == sha256_file(d / "model.safetensors")
    assert ref.label == f"natural-{ref.sha256[:8]}"


# ---------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------

def _args(*argv):
    from benchmark.commands.train import add_train_iit_arguments
    p = argparse.ArgumentParser(allow_abbrev=False)
    add_train_iit_arguments(p)
    return p.parse_args(list(argv))


def test_cli_bad_values_are_usage_errors(tmp_path):
    from benchmark.cli import UsageError
    from benchmark.commands.train import run_train_iit
    for argv in (["-i", "3", "--epochs", "0"], ["-i", "3", "--lr", "-1"], ["-i", "3", "-s", "-0.1"],
                 ["-i", "3", "--model-kind", "natural", "-iit", "1"], ["-i", "3", "--model-kind", "iit", "-s", "0.4"],
                 ["-i", "3", "-s", "0"], ["-i", "nope"], ["-i", "3", "--early-stop-accuracy-threshold", "101"]):
        with pytest.raises(UsageError) as err:
            run_train_iit(_args(*argv, "--out", str(tmp_path)))
        assert "\n" not in str(err.value)
    a = _args("-i", "3", "-s", "0.4", "-iit", "1", "-b", "1", "--strict_weight", "0.5")
    assert (a.strict_weight, a.iit_weight, a.behavior_weight) == (0.5, 1.0, 1.0)


def test_cli_choices_match_the_trainer():
    """The CLI spells its choices out (it must not import torch to build its parser): they stay in step."""
    from benchmark.commands.train import add_train_iit_arguments
    from cases.tracr.siit import SCORED_POSITIONS
    from training.trainer import EARLY_STOP_CRITERIA, SAMPLING_MODES
    p = add_train_iit_arguments(argparse.ArgumentParser())
    choices = {a.dest: tuple(a.choices) for a in p._actions if a.choices}
    assert choices["siit_sampling"] == SAMPLING_MODES and choices["early_stop_criterion"] == EARLY_STOP_CRITERIA
    assert choices["scored_positions"] == SCORED_POSITIONS


def test_cli_tiny_run_and_resume(tmp_path):
    from benchmark.commands.train import run_train_iit
    common = ["-i", "3", "--num-samples", "200", "--eval-pairs", "64", "--out", str(tmp_path), "--no-progress",
              "--use-single-loss", "--model-kind", "iit"]
    assert run_train_iit(_args(*common, "--epochs", "1", "--keep-checkpoint")) == 0
    d = tmp_path / "3" / "iit"
    meta = model_files.read_metadata(d)
    assert meta["epochs_run"] == 1 and meta["train_config"]["strict_weight"] == 0
    assert set(meta["metrics"]["test"]) >= {"iia", "accuracy", "strict_accuracy"}
    assert (d / "checkpoint.pt").exists()
    assert run_train_iit(_args(*common, "--epochs", "2", "--resume")) == 0
    meta = model_files.read_metadata(d)
    assert meta["epochs_run"] == 2 and len(meta["history"]) == 2 and not (d / "checkpoint.pt").exists()
    model, gt = model_files.load_model_dir(d)
    assert gt.nodes == {"input", "m0", "a1.h0", "logits"}



def test_cli_defined_positions_recorded_and_read_back(tmp_path, monkeypatch):
    from benchmark.commands.train import run_train_iit
    from training import registry
    from cases.tracr.siit import evaluate_trained
    monkeypatch.setenv(registry.LOCAL_ENV, str(tmp_path))
    assert run_train_iit(_args("-i", "13", "--num-samples", "200", "--eval-pairs", "64", "--no-progress",
                               "--use-single-loss", "--epochs", "1", "--scored-positions", "defined")) == 0
    meta = model_files.read_metadata(tmp_path / "13" / "siit")
    assert meta["data"]["scored"] == "defined"
    trainer, m = evaluate_trained(_case("13"), "siit", max_pairs=64, per_node=False, directory=tmp_path / "13" / "siit")
    assert trainer.data.pair_masked and m["iia"] == pytest.approx(meta["metrics"]["test"]["iia"])

# ---------------------------------------------------------------------------------------------------
# shipped models
# ---------------------------------------------------------------------------------------------------

def _evaluate_shipped(cid, name, max_pairs=512):
    from cases.tracr.siit import evaluate_trained
    return evaluate_trained(_case(cid), _kind(name), max_pairs=max_pairs, per_node=False,
                            directory=registry.SHIPPED_DIR / cid / name)


# the default suite evaluates a spread sample of the shipped models (every kind among them); the slow suite all
SHIPPED_SAMPLE = set(SHIPPED[::max(1, len(SHIPPED) // 8)]) | {next(m for m in SHIPPED if m[1] == k)
                                                             for k in registry.KINDS if any(m[1] == k for m in SHIPPED)}


@pytest.mark.parametrize("cid,kind", [pytest.param(c, k, marks=() if (c, k) in SHIPPED_SAMPLE else pytest.mark.slow)
                                      for c, k in SHIPPED]
                         or [pytest.param("3", "siit", marks=pytest.mark.skip("no shipped models"))])
def test_shipped_models_reach_99(cid, kind):
    """Every metric a model was trained for is >= 99% on held-out data: SIIT all three (strictness per
    non-circuit node and with all of them resampled at once), the IIT baseline IIA and accuracy, the
    natural baseline accuracy (its IIA is what the realism comparison measures)."""
    _, m = _evaluate_shipped(cid, kind)
    trained = {"siit": ("iia", "accuracy", "strict_accuracy", "strict_accuracy_joint"), "iit": ("iia", "accuracy"),
               "natural": ("accuracy",)}
    assert all(m[k] >= 0.99 for k in trained[_kind(kind)]), m


def test_every_shipped_model_records_its_command_and_metrics():
    """Every shipped model (all of them, in the default suite: no evaluation, only its files) says how it
    was trained: a single-case reproducing command, and recorded held-out test metrics at its kind's bar."""
    trained = {"siit": ("iia", "accuracy", "strict_accuracy", "strict_accuracy_joint"), "iit": ("iia", "accuracy"),
               "natural": ("accuracy",)}
    assert SHIPPED
    from benchmark.train_queue import recipe_of

    for cid, name in SHIPPED:
        kind = _kind(name)
        meta = model_files.read_metadata(registry.SHIPPED_DIR / cid / name)
        assert meta["status"] == "finished" and meta["case"] == cid and meta["model_kind"] == kind, (cid, name)
        if name != kind:  # a further training seed: the seed its name says, the primary's recipe otherwise
            primary = model_files.read_metadata(registry.SHIPPED_DIR / cid / kind)
            assert name == f"{kind}{registry.SEED_SUFFIX}{meta['seed']}" and meta["seed"] != primary["seed"]
            assert recipe_of(meta["command"]) == recipe_of(primary["command"]), (cid, name)
            assert registry.model_seeds(cid, kind)[meta["seed"]] == registry.SHIPPED_DIR / cid / name
        assert meta["command"].startswith(f"python main.py train iit -i {cid} "), (cid, kind)
        test = meta["metrics"]["test"]
        # the models trained before strict_accuracy_joint existed do not record it (test_shipped_models_reach_99
        # evaluates it); every model the queue trains does
        need = [k for k in trained[kind] if k in test or "recipe" in meta]
        assert need and all(test[k] >= 0.99 for k in need), (cid, kind, test)
        assert not (registry.SHIPPED_DIR / cid / name / "checkpoint.pt").exists()


def test_shipped_case3_model_quick():
    if ("3", "siit") not in SHIPPED:
        pytest.skip("no shipped case-3 SIIT model")
    assert registry.available_models("3")[:1] == ["siit"]
    _, m = _evaluate_shipped("3", "siit", max_pairs=400)
    assert m["iia"] >= 0.99 and m["accuracy"] >= 0.99 and m["strict_accuracy"] >= 0.99, m


def test_eval_iit_resample_ablation_case3():
    """``eval iit``-style node effects on the shipped case-3 model: resample-ablating a non-circuit
    node changes ~0% (at most a few %) of the outputs whose HL label changes, a circuit node most of them."""
    if ("3", "siit") not in SHIPPED:
        pytest.skip("no shipped case-3 SIIT model")
    from core.patching import capture, patched_forward
    t, _ = _evaluate_shipped("3", "siit", max_pairs=64)
    d = t.data.test
    b, s = torch.meshgrid(torch.arange(len(d)), torch.arange(len(d)), indexing="ij")
    b, s = b.reshape(-1), s.reshape(-1)
    base, source, mask = d.tokens[b], d.tokens[s], d.mask[b]
    with torch.no_grad():
        hl_b, hl_s = t.hl(base)[..., 0], t.hl(source)[..., 0]
        changed = mask & ((hl_b - hl_s).abs() > t.cfg.atol)
        _, cache = capture(t.ll, source, [loc.hook for loc in t.corr.ll_locs.values()])
        effects = {}
        for node, loc in t.corr.ll_locs.items():
            out = patched_forward(t.ll, base, [(loc, slice(0, len(b)), cache[loc.hook])])[..., 0]
            effects[node] = float(((out - hl_b).abs() >= t.cfg.atol)[changed].float().mean())
    circuit = set(t.corr.circuit_ll)
    # InterpBench's effect: among positions whose HL label changes, the fraction whose LL output changes
    assert max(v for n, v in effects.items() if n not in circuit) <= 0.05, effects
    assert min(v for n, v in effects.items() if n in circuit) >= 0.5, effects
