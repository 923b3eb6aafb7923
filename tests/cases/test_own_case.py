"""Your own case (issue 24): case plug-ins, RASP programs as cases, cases from files, logit-diff."""

from __future__ import annotations

import itertools
import json
import re
import sys
from pathlib import Path

import pytest
import torch

from benchmark.cli import main
from tracr.rasp import rasp


def make_program():
    """(token + previous token) mod 3: an MLP shifts the indices, a head reads the previous token, an MLP adds."""
    shifted = rasp.categorical(rasp.Map(lambda i: max(i - 1, 0), rasp.indices))
    prev = rasp.categorical(rasp.Aggregate(rasp.Select(rasp.indices, shifted, rasp.Comparison.EQ), rasp.tokens))
    return rasp.categorical(rasp.SequenceMap(lambda a, b: (a + b) % 3, rasp.tokens, prev))


make_program.vocab = {0, 1, 2}
make_program.max_seq_len = 4


def no_vocab_program():
    return rasp.Map(lambda x: x, rasp.tokens)


def cli(capsys, *argv):
    capsys.readouterr()  # drop what was printed before (e.g. TransformerLens' messages in a fixture)
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("circuit-bench: error:")]
    assert len(lines) == 1, err
    return lines[0]


# ---- a RASP program as a case ----------------------------------------------------------------------

def test_rasp_program_runs_as_a_case(tmp_path, capsys, monkeypatch):
    from cases import get_case
    from cases.tracr import cache as cache_mod

    monkeypatch.delenv("CIRCUIT_BENCH_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    package_cache = sorted(p.name for p in cache_mod.SHIPPED_CACHE.iterdir())
    spec = "tests.cases.test_own_case:make_program"
    rc, out, err = cli(capsys, "run", "exact", "-i", spec, "-n", 64, "--out", tmp_path / "res", "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["status"] == "ok" and doc["case"] == spec and doc["model"] == "tracr"
    assert doc["roc"]["edges"]["auroc"] == 1.0 and doc["roc"]["nodes"]["auroc"] == 1.0
    truth = doc["ground_truth"]
    assert {"a1.h0", "m0", "m1"} <= set(truth["nodes"]) and "m0->a1.h0<q>" in truth["edges"]
    # the path's case component is a safe directory name
    rel = Path(doc["path"]).relative_to(tmp_path / "res").parts
    assert rel[0] == "tests.cases.test_own_case_make_program" and len(rel) == 5
    # compiled into the user cache, never into the package's cache
    entries = list((tmp_path / "xdg" / "circuit-bench" / "tracr").iterdir())
    assert len(entries) == 1 and (entries[0] / "compiled.json").is_file()
    assert sorted(p.name for p in cache_mod.SHIPPED_CACHE.iterdir()) == package_cache
    case = get_case(spec)
    assert case.kind == "rasp" and case.models == ("tracr",) and case.cache_key() == entries[0].name
    # the compiled model agrees with the RASP evaluator; defects are flagged as for the built-in cases
    inputs = [["BOS", *x] for x in itertools.product([0, 1, 2], repeat=4)]
    assert case.run(case.compiled_model().model, inputs) == case.evaluate(inputs)
    assert any(f.startswith("tracr:") for f in case.flags)
    from cases.plugins import ProgramCase
    fresh = ProgramCase(spec, make_program)
    assert fresh.cached_model() is not None  # a second process would load it from the user cache


def test_rasp_program_without_vocab_is_a_usage_error(capsys):
    rc, _, err = cli(capsys, "run", "eap", "-i", "tests.cases.test_own_case:no_vocab_program")
    assert rc == 2 and "vocab and max_seq_len" in one_line_error(err)


def test_rasp_settings_in_the_spec(capsys):
    from cases import get_case

    case = get_case("tests.cases.test_own_case:no_vocab_program[vocab=a,b,c;max_seq_len=3;causal=true]")
    assert case.kind == "rasp" and case.vocab == ("a", "b", "c") and case.max_seq_len == 3 and case.spec.causal
    assert case.output_type == "categorical" and len(case.cache_key()) == 64  # no compile needed for these
    ints = get_case("tests.cases.test_own_case:make_program[max_seq_len=5]")  # the spec overrides the attribute
    assert ints.vocab == (0, 1, 2) and ints.max_seq_len == 5 and ints.cache_key() != get_case(
        "tests.cases.test_own_case:make_program").cache_key()
    rc, _, err = cli(capsys, "run", "eap", "-i", "tests.cases.test_own_case:no_vocab_program[colour=red]")
    assert rc == 2 and "'colour=red' is not KEY=VALUE" in one_line_error(err)


def test_unknown_plugin_is_a_usage_error(capsys):
    rc, _, err = cli(capsys, "run", "eap", "-i", "tests.cases.test_own_case:nothing_here")
    assert rc == 2 and "has no attribute 'nothing_here'" in one_line_error(err)
    rc, _, err = cli(capsys, "run", "eap", "-i", "no_such_module_xyz:Case")
    assert rc == 2 and "no_such_module_xyz" in one_line_error(err)


# ---- the built-in toy case as files ------------------------------------------------------------------

def test_toy_exported_to_files_gives_the_same_scores(tmp_path, capsys):
    from cases import get_case
    from cases.files import export_case

    toml = export_case(get_case("toy"), tmp_path / "toy_case", n=32)
    out = tmp_path / "res"
    docs = {}
    for method in ("exact", "eap"):
        for spec in ("toy", toml, toml.parent):
            rc, o, err = cli(capsys, "run", method, "-i", spec, "-n", 32, "--out", out, "--json")
            assert rc == 0, err
            docs[method, str(spec)] = json.loads(o)
    for method in ("exact", "eap"):
        ref = docs[method, "toy"]
        for spec in (toml, toml.parent):
            doc = docs[method, str(spec)]
            assert doc["case"] == str(toml.resolve()) and doc["model"] == "file"
            assert doc["ground_truth"] == ref["ground_truth"]
            assert doc["scores"]["edges"].keys() == ref["scores"]["edges"].keys()
            for e, s in ref["scores"]["edges"].items():
                assert doc["scores"]["edges"][e] == pytest.approx(s, abs=1e-6), e
            for level in ("edges", "nodes", "nodes_no_endpoints"):
                assert doc["roc"][level]["auroc"] == pytest.approx(ref["roc"][level]["auroc"])
    assert docs["exact", "toy"]["roc"]["edges"]["auroc"] == 1.0  # the planted circuit is found
    rc, o, err = cli(capsys, "cases", "show", toml.parent, "--json")
    info = json.loads(o)
    assert rc == 0 and info["kind"] == "file" and info["models"] == ["file"] and info["data"]["rows"] == 32
    assert info["ground_truth"] == docs["exact", "toy"]["ground_truth"] and len(info["model"]["weights_sha256"]) == 64


# ---- a local GPT-2 checkpoint through run, benchmark, eval faithfulness and leaderboard ---------------

WORDS = ["<bos>", "<pad>", "When", "Mary", "John", "Alice", "Bob", "went", "to", "the", "park", ",", "gave", "a",
         "ball"]
NAMES = ["Mary", "John", "Alice", "Bob"]


def save_tiny_gpt2(directory: Path, seed: int = 0) -> Path:
    """A GPT-2-architecture Hugging Face checkpoint with random weights and a word-level tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<bos>", pad_token="<pad>",
                            unk_token="<pad>").save_pretrained(directory)
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=len(WORDS), n_positions=16, n_ctx=16, n_embd=16, n_layer=2, n_head=2,
                     bos_token_id=0, eos_token_id=0)
    GPT2LMHeadModel(cfg).save_pretrained(directory, safe_serialization=True)
    return directory


def write_ioi_like_case(root: Path, checkpoint: str = "gpt2", metric: str | None = "logit-diff") -> Path:
    lines = []
    for a, b in itertools.permutations(NAMES, 2):
        c = next(n for n in NAMES if n not in (a, b))
        lines.append({"clean": f"When {a} , {b} went to the park , {b} gave a ball to",
                      "corrupted": f"When {a} , {b} went to the park , {c} gave a ball to", "answer": a, "wrong": b})
    (root / "data.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\n")
    toml = root / "case.toml"
    toml.write_text((f'metric = "{metric}"\n' if metric else "") +
                    f'[model]\nhf_checkpoint = "{checkpoint}"\n[data]\npath = "data.jsonl"\n')
    return toml


def test_local_gpt2_checkpoint_through_every_command(tmp_path, capsys, monkeypatch):
    from transformers import AutoModelForCausalLM

    from cases import get_case
    from core.graph import Graph

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    save_tiny_gpt2(tmp_path / "case" / "gpt2")
    toml = write_ioi_like_case(tmp_path / "case")
    case = get_case(str(toml))
    assert case.default_metric == "logit-diff" and case.wrong_answers and case.ground_truth() is None

    # the model is the checkpoint's: same logits as Hugging Face's own forward pass
    model, data = case.load_model(), case.dataset(n=200)
    assert len(data) == 12 and data.mask[:, -1].all() and data.mask.sum() == 12
    assert data.clean[0, 0] == 0  # the tokenizer's BOS
    hf = AutoModelForCausalLM.from_pretrained(str(tmp_path / "case" / "gpt2"), local_files_only=True).eval()
    with torch.no_grad():
        ours, theirs = model(data.clean), hf(data.clean).logits
    assert torch.allclose(ours, theirs, atol=1e-4)
    graph = Graph.from_model(model)  # the hook flags are on
    assert graph.n_edges == Graph.expected_edge_count(2, 2)
    last = theirs[:, -1]
    ld = (last.gather(1, data.clean_labels[:, -1:]) - last.gather(1, data.wrong_labels[:, -1:])).mean()

    out = tmp_path / "res"
    rc, o, err = cli(capsys, "run", "eap", "-i", toml, "--out", out, "--json")
    assert rc == 0, err
    doc = json.loads(o)
    assert doc["data"]["metric"] == "logit-diff" and doc["method_info"]["attribution_metric"] == "logit-diff"
    assert "no ground truth" in doc["roc"]["skipped"] and doc["ground_truth"] is None
    rc, o, err = cli(capsys, "run", "exact", "-i", toml, "--out", out, "--json")
    exact = json.loads(o)
    assert exact["method_info"]["loss_full_model"] == pytest.approx(-float(ld), abs=1e-4)
    rc, o, err = cli(capsys, "run", "exact", "-i", toml, "--out", out, "--metric", "kl", "--json")
    assert rc == 0 and json.loads(o)["data"]["metric"] == "faithfulness"
    assert json.loads(o)["run_id"] != exact["run_id"]

    rc, o, err = cli(capsys, "benchmark", "--cases", toml.parent, "--methods", "eap-ig", "acdc", "--out", out,
                     "--json")
    assert rc == 0, err
    bench = json.loads(o)
    assert bench["failed"] == 0 and {r["case"] for r in bench["results"]} == {str(toml.resolve())}
    rc, o, err = cli(capsys, "eval", "faithfulness", out, "--json")
    assert rc == 0, err
    rows = json.loads(o)["cases"][0]["methods"]
    assert {r["method"].split(" ")[0] for r in rows} == {"eap", "exact", "eap-ig", "acdc"}
    assert all(0 <= r["cpr"] <= 1.5 and r["ground_truth_faithfulness"] is None for r in rows)
    rc, o, err = cli(capsys, "eval", "roc", out)
    assert rc == 0 and "no ground truth: ROC skipped" in err
    rc, o, err = cli(capsys, "leaderboard", "--out", out, "--json")
    assert rc == 0, err
    summary = {r["method"]: r for r in json.loads(o)["summary"]}
    assert set(summary) == {"eap", "exact", "eap-ig", "acdc"}
    assert all(r["model"] == "file" and r["errors"] == 0 and r["n_cases"] == 1 for r in summary.values())


def test_logit_diff_needs_wrong_answers(tmp_path, capsys):
    rc, _, err = cli(capsys, "run", "eap", "-i", "toy", "--metric", "logit-diff", "--out", tmp_path)
    assert rc == 2 and "no answer/wrong-answer tokens" in one_line_error(err)
    rc, _, err = cli(capsys, "benchmark", "--cases", "toy", "--methods", "eap", "--metric", "logit-diff",
                     "--out", tmp_path)
    assert rc == 2 and "no answer/wrong-answer tokens" in one_line_error(err)
    assert not any(tmp_path.rglob("result.json"))  # before any work


def test_logit_diff_loss_is_minus_the_logit_difference(toy):
    from core.graph import Graph
    from core.protocols import Problem

    case, model, data = toy
    wrong = (data.clean_labels + 1) % 6
    data = type(data)(data.clean, data.corrupted, data.clean_labels, data.corrupted_labels, data.mask, 0,
                      wrong_labels=wrong)
    problem = Problem(model, Graph.from_model(model), data, "categorical", metric="logit-diff")
    with torch.no_grad():
        logits = model(data.clean)
    expect = -(logits.gather(-1, data.clean_labels[..., None]) - logits.gather(-1, wrong[..., None])).mean()
    assert float(problem.loss_fn()(logits[None])[0]) == pytest.approx(float(expect), abs=1e-5)


# ---- malformed files: one line naming the file and the field, exit 2 ---------------------------------

@pytest.fixture()
def toy_files(tmp_path):
    from cases import get_case
    from cases.files import export_case

    return export_case(get_case("toy"), tmp_path / "c", n=8)


def _edit_json(path: Path, fn):
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc))


def _edit_line(path: Path, k: int, fn):
    lines = path.read_text().splitlines()
    doc = json.loads(lines[k])
    fn(doc)
    lines[k] = json.dumps(doc)
    path.write_text("\n".join(lines) + "\n")


MALFORMED = {
    "missing_field": (lambda d: (d / "case.toml").write_text(
        (d / "case.toml").read_text().replace('[data]\npath = "data.jsonl"\n', "")),
        r"case\.toml: data: missing"),
    "missing_corrupted": (lambda d: _edit_line(d / "data.jsonl", 1, lambda x: x.pop("corrupted")),
                          r"data\.jsonl: line 2: corrupted: missing"),
    "wrong_lengths": (lambda d: _edit_line(d / "data.jsonl", 2, lambda x: x["corrupted"].append(1)),
                      r"data\.jsonl: line 3: clean and corrupted have different lengths \(4 and 5 tokens\)"),
    "unknown_node": (lambda d: _edit_json(d / "ground_truth.json", lambda g: g["edges"].append("a7.h0->logits")),
                     r"ground_truth\.json: edges\[18\]: 'a7\.h0->logits' names node 'a7\.h0', which is not in the "
                     r"model's graph"),
    "weights_mismatch": (lambda d: _edit_json(d / "model" / "config.json", lambda c: c.update(d_mlp=32)),
                         r"model\.safetensors: blocks\.0\.mlp\.W_in: has shape \[16, 16\], but the config "
                         r"config\.json implies \[16, 32\]"),
    "tokenizer_in_config": (lambda d: _edit_json(d / "model" / "config.json", lambda c: c.update(tokenizer_name="gpt2")),
                            r"config\.json: tokenizer_name: must be null"),
    "remote_code": (lambda d: _edit_json(d / "model" / "config.json", lambda c: c.update(trust_remote_code=True)),
                    r"config\.json: trust_remote_code: must be false"),
    "unknown_config_field": (lambda d: _edit_json(d / "model" / "config.json", lambda c: c.update(my_field=1)),
                             r"config\.json: my_field: not a HookedTransformerConfig field"),
    "config_type": (lambda d: _edit_json(d / "model" / "config.json", lambda c: c.update(n_layers="2")),
                    r"config\.json: n_layers: expected int, got \"2\""),
    "token_out_of_vocab": (lambda d: _edit_line(d / "data.jsonl", 0, lambda x: x.update(clean=[0, 1, 2, 99])),
                           r"data\.jsonl: line 1: clean: token id 99 is outside the vocabulary \(0\.\.5\)"),
    "bad_json_line": (lambda d: (d / "data.jsonl").write_text((d / "data.jsonl").read_text() + "{oops\n"),
                      r"data\.jsonl: line 9: not valid JSON"),
    "toml_syntax": (lambda d: (d / "case.toml").write_text("[model\n"), r"case\.toml: \(syntax\): not valid TOML"),
    "unknown_toml_field": (lambda d: (d / "case.toml").write_text("colour = 1\n" + (d / "case.toml").read_text()),
                           r"case\.toml: colour: unknown field"),
    "prompt_without_tokenizer": (lambda d: _edit_line(d / "data.jsonl", 0, lambda x: x.update(clean="a b c d")),
                                 r"data\.jsonl: line 1: clean: a prompt needs a tokenizer"),
    "logit_diff_without_wrong": (lambda d: (d / "case.toml").write_text('metric = "logit-diff"\n' +
                                                                        (d / "case.toml").read_text()),
                                 r"case\.toml: metric: logit-diff needs a 'wrong' answer on every data line"),
    "edge_backwards": (lambda d: _edit_json(d / "ground_truth.json", lambda g: g["edges"].append("a1.h0->a0.h1<q>")),
                       r"ground_truth\.json: edges\[18\]: 'a1\.h0->a0\.h1<q>' is not an edge of the model's graph"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_case_files(name, toy_files, capsys, tmp_path):
    edit, pattern = MALFORMED[name]
    edit(toy_files.parent)
    rc, _, err = cli(capsys, "run", "eap", "-i", toy_files, "--out", tmp_path / "res")
    assert rc == 2
    line = one_line_error(err)
    assert re.search(pattern, line), line
    assert not (tmp_path / "res").exists()  # before any work


def test_missing_case_file(capsys, tmp_path):
    rc, _, err = cli(capsys, "run", "eap", "-i", tmp_path / "nope" / "case.toml")
    assert rc == 2 and "no such case file" in one_line_error(err)


def test_hf_weights_that_do_not_match_their_config(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ckpt = save_tiny_gpt2(tmp_path / "gpt2")
    _edit_json(ckpt / "config.json", lambda c: c.update(n_embd=32))
    toml = write_ioi_like_case(tmp_path)
    rc, _, err = cli(capsys, "run", "eap", "-i", toml, "--out", tmp_path / "res")
    assert rc == 2
    assert re.search(r"model\.safetensors: transformer\.wte\.weight: has shape \[15, 16\], but .*config\.json "
                     r"implies \[15, 32\]", one_line_error(err))
    _edit_json(ckpt / "config.json", lambda c: c.pop("n_ctx"))
    rc, _, err = cli(capsys, "run", "eap", "-i", toml, "--out", tmp_path / "res")
    assert rc == 2 and re.search(r"config\.json: n_ctx: missing \(TransformerLens reads it", one_line_error(err))


# ---- plug-ins: the README's examples, and an entry point -------------------------------------------

def _readme_block(first_line: str) -> str:
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        if block.startswith(first_line):
            return block
    raise AssertionError(f"README has no python block starting with {first_line!r}")


@pytest.fixture()
def readme_pkg(tmp_path, monkeypatch):
    pkg = tmp_path / "my_pkg"
    pkg.mkdir()
    for name in ("my_case", "my_method"):
        (pkg / f"{name}.py").write_text(_readme_block(f"# my_pkg/{name}.py"))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for mod in [m for m in sys.modules if m == "my_pkg" or m.startswith("my_pkg.")]:
        del sys.modules[mod]


def test_readme_examples_run(readme_pkg, capsys):
    out = readme_pkg / "res"
    rc, o, err = cli(capsys, "run", "eap", "-i", "my_pkg.my_case:FirstTokenCase", "--out", out, "--json")
    assert rc == 0, err
    doc = json.loads(o)
    assert doc["case"] == "my_pkg.my_case:FirstTokenCase" and doc["roc"]["edges"]["auroc"] == 1.0
    rc, o, err = cli(capsys, "run", "my_pkg.my_method:WeightNorm", "-i", "toy", "--power", 2, "--out", out, "--json")
    assert rc == 0 and json.loads(o)["params"] == {"power": 2.0}
    # a plug-in case by its entry point, through benchmark and the leaderboard
    dist = readme_pkg / "my_pkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[circuit_bench.cases]\nfirst = my_pkg.my_case:FirstTokenCase\n")
    rc, o, err = cli(capsys, "benchmark", "--cases", "first", "--methods", "exact", "--out", out, "--json")
    assert rc == 0, err
    assert json.loads(o)["results"][0]["case"] == "first"
    rc, o, err = cli(capsys, "leaderboard", "--out", out, "--json")
    assert rc == 0 and {r["model"] for r in json.loads(o)["summary"]} >= {"random"}


def test_a_file_case_run_id_follows_its_files_contents(toy_files):
    """Weights or data changed in place give another run id (the model's and the data's sha256 are in it)."""
    from benchmark.runner import Job
    from cases.files import FileCase

    case_file = toy_files / "case.toml" if (toy_files / "case.toml").exists() else toy_files

    def rid():
        job = Job(case=str(case_file), method="random", n=4)
        return job.run_id, job.model_ref().sha256

    first, sha = rid()
    assert sha is not None and rid() == (first, sha)
    case = FileCase(case_file)
    weights = case.weights_file
    from safetensors.torch import load_file, save_file

    state = load_file(str(weights))
    name = next(k for k in state if k.endswith("W_O"))
    state[name] = state[name] + 1.0
    save_file(state, str(weights))
    second, sha2 = rid()
    assert sha2 != sha and second != first
    data = case.data_file
    data.write_text(data.read_text().splitlines()[0] + "\n")
    third, _ = rid()
    assert third != second
