"""Result integrity (issue 18): run ids from the resolved configuration, provenance in every result, no
silent shadowing by locally trained models, one meaning per method, validation before work, file modes,
and the small CLI fixes."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.runner import Job, run_job
from training import registry
from core.provenance import sha256_file
from core.results import iter_results, load_result
from tests.helpers import perturbed_copy as _perturbed_copy

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, cwd=ROOT, env=None):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=600)


@pytest.fixture()
def local_models(tmp_path, monkeypatch):
    """train's default output in a temporary directory."""
    root = tmp_path / "user-data-models"
    monkeypatch.setenv(registry.LOCAL_ENV, str(root))
    return root


# ---- one identity for a run ----------------------------------------------------------------------------

def test_equivalent_spellings_share_a_run_id():
    assert Job(case="3", method="eap").run_id == Job(case="3", method="eap", model="tracr").run_id
    assert Job(case="ioi", method="eap").run_id == Job(case="ioi", method="eap", model="siit").run_id
    assert Job(case="toy", method="eap-ig").run_id == Job(
        case="toy", method="eap-ig", params={"ig_variant": "inputs", "integrated_grad_steps": 5}).run_id
    assert Job(case="toy", method="acdc").run_id == Job(case="toy", method="acdc", params={"threshold": 0.01}).run_id
    # what does change the run changes the id
    base = Job(case="3", method="eap")
    for other in (Job(case="3", method="eap", model="siit"), Job(case="3", method="eap", n=100),
                  Job(case="3", method="eap", seed=1), Job(case="3", method="eap", ablation="mean"),
                  Job(case="3", method="eap", params={"attribution_metric": "kl"})):
        assert other.run_id != base.run_id
    cfg = base.config()
    assert cfg["schema"] == 2 and cfg["graph"] == {"split_qkv": True, "separate_pos": False}
    assert cfg["model"]["weights_sha256"] and cfg["data"]["corruption"] == "resample"
    assert cfg["data"]["position_scrambling"] is True
    assert Job(case="3", method="eap", model="siit").config()["data"]["position_scrambling"] is False
    assert Job(case="ioi", method="eap").config()["data"]["corruption"] == "abc"


def test_different_weights_never_share_a_run_id(tmp_path):
    shipped = registry.model_dir("3", "siit")
    a = _perturbed_copy(shipped, tmp_path / "a")
    b = _perturbed_copy(a, tmp_path / "b")
    ids = {Job(case="3", method="eap", model="siit").run_id,
           Job(case="3", method="eap", model_dir=str(a)).run_id,
           Job(case="3", method="eap", model_dir=str(b)).run_id}
    assert len(ids) == 3
    same = tmp_path / "same"
    shutil.copytree(shipped, same)  # the shipped weights elsewhere: the same model, so the same run
    assert Job(case="3", method="eap", model_dir=str(same)).run_id == Job(case="3", method="eap", model="siit").run_id
    ref = Job(case="3", method="eap", model_dir=str(a)).model_ref()
    assert ref.source == "path" and ref.sha256 == sha256_file(a / "model.safetensors")
    assert ref.label == f"siit-{ref.sha256[:8]}"  # its results never land among the shipped model's


def test_hashing_builds_no_model(monkeypatch):
    from cases import get_case
    from cases.tracr.case import TracrCase

    def boom(*a, **k):
        raise AssertionError("the run id must not build a model")

    monkeypatch.setattr(TracrCase, "load_model", boom)
    monkeypatch.setattr(TracrCase, "compiled_model", boom)
    for model in (None, "siit", "natural"):
        assert len(Job(case="4", method="eap", model=model).run_id) == 16
    assert get_case("4").model_ref().source == "shipped"


def test_result_carries_provenance(tmp_path):
    doc = run_job(Job(case="toy", method="random", n=8, out=str(tmp_path)))
    assert doc["status"] == "ok" and doc["schema"] == 2
    model = doc["provenance"]["model"]
    assert model["kind"] == "toy" and model["source"] == "builtin" and len(model["weights_sha256"]) == 64
    assert doc["provenance"]["data"]["n"] == 8 and "corruption" in doc["provenance"]["data"]
    assert {"python", "torch", "circuit-bench"} <= set(doc["versions"])
    doc = run_job(Job(case="3", method="random", model="siit", n=8, out=str(tmp_path)))
    model = doc["provenance"]["model"]
    assert model["source"] == "shipped" and model["training_command"].startswith("python main.py train iit -i 3")
    assert model["weights_sha256"] == sha256_file(registry.model_dir("3", "siit") / "model.safetensors")


def test_old_results_still_rebuild_their_job():
    from benchmark.runner import job_from_result

    job = job_from_result({"schema": 1, "case": "3", "method": "eap", "model": "siit", "params": {}, "seed": 0,
                           "data": {"n": 20}})
    assert (job.model, job.model_dir, job.n) == ("siit", None, 20)


# ---- no silent shadowing -------------------------------------------------------------------------------

def test_a_locally_trained_model_does_not_change_model_siit(tmp_path, local_models):
    before = run_job(Job(case="3", method="eap", model="siit", n=20, out=str(tmp_path / "before")))
    _perturbed_copy(registry.model_dir("3", "siit"), local_models / "3" / "siit")  # train's default output
    after = run_job(Job(case="3", method="eap", model="siit", n=20, out=str(tmp_path / "after")))
    assert before["status"] == after["status"] == "ok"
    assert before["run_id"] == after["run_id"] and before["scores"] == after["scores"]
    assert after["provenance"]["model"]["source"] == "shipped"
    # asked for by directory, the trained model is used, under its own id and path
    mine = run_job(Job(case="3", method="eap", n=20, out=str(tmp_path / "after"),
                       model_dir=str(local_models / "3" / "siit")))
    assert mine["status"] == "ok" and mine["run_id"] != after["run_id"] and mine["scores"] != after["scores"]
    assert mine["provenance"]["model"]["source"] == "trained"
    assert Path(mine["path"]).parts[-4] != "siit"


def test_cases_show_lists_models_and_where(local_models, capsys):
    _perturbed_copy(registry.model_dir("3", "siit"), local_models / "3" / "siit")
    assert main(["cases", "show", "3", "--json"]) == 0
    files = json.loads(capsys.readouterr().out)["model_files"]
    assert {files[k]["source"] for k in ("tracr", "siit", "iit", "natural")} == {"shipped"}
    assert files["siit"]["directory"] == str(registry.model_dir("3", "siit").resolve())
    assert files["siit (trained, --model-dir)"]["directory"] == str(local_models / "3" / "siit")
    assert main(["cases", "show", "3"]) == 0
    text = capsys.readouterr().out
    assert f"  siit: shipped {registry.model_dir('3', 'siit').resolve()} (sha256 " in text
    assert f"  siit (trained, --model-dir): trained {local_models / '3' / 'siit'}" in text


def test_train_writes_to_the_user_data_directory(monkeypatch):
    import argparse

    from benchmark.commands.train import add_train_iit_arguments

    monkeypatch.delenv(registry.LOCAL_ENV, raising=False)
    assert registry.local_dir() == registry.user_data_dir() / "models"
    assert not str(registry.local_dir()).startswith(os.getcwd() + os.sep + "trained")
    assert add_train_iit_arguments(argparse.ArgumentParser()).parse_args(["-i", "3"]).out is None  # -> local_dir()


@pytest.mark.parametrize("missing", ["model.safetensors", "config.json", "ground_truth.json"])
def test_incomplete_model_dir_is_a_usage_error(tmp_path, capsys, missing):
    d = tmp_path / "m"
    shutil.copytree(registry.model_dir("3", "siit"), d)
    (d / missing).unlink()
    out = tmp_path / "out"
    assert main(["run", "eap", "-i", "3", "--model-dir", str(d), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and missing in err
    assert main(["benchmark", "--cases", "3", "--methods", "eap", "--model-dir", str(d), "--out", str(out)]) == 2
    assert not out.exists()


def test_model_dir_of_another_case_is_refused(tmp_path, capsys):
    assert main(["run", "eap", "-i", "4", "--model-dir", str(registry.model_dir("3", "siit")),
                 "--out", str(tmp_path)]) == 2
    assert "a model of case 3, not of case 4" in capsys.readouterr().err


def test_every_run_says_which_model_it_used(tmp_path):
    p = cli("run", "random", "-i", "3", "--model", "siit", "-n", "8", "--out", str(tmp_path))
    assert p.returncode == 0, p.stderr
    sha = sha256_file(registry.model_dir("3", "siit") / "model.safetensors")
    assert f"model siit (shipped, sha256 {sha[:12]})" in p.stderr
    assert "Moving model to device" not in p.stdout and p.stdout.count("\n") == 1  # only the summary line


# ---- one meaning per method ----------------------------------------------------------------------------

def test_default_sweeps_do_not_depend_on_the_numpy_version():
    """A default grid is part of every run's identity: one computed by ``np.logspace`` changed with numpy 2.4
    (9.999999999999999e-06 for 1e-05), so new ACDC runs stopped pooling with the shipped reference's. The grid is
    exact decimal powers, and every ACDC run of the shipped reference has it."""
    from benchmark import reference
    from methods.acdc import default_thresholds

    taus = default_thresholds()
    assert len(taus) == 21 and taus[0] == 1e-05 and taus[8] == 0.001 and taus[16] == 0.1 and taus[-1] == 1.0
    assert taus == [10 ** (-5 + i / 4) for i in range(21)]
    _, docs = reference.load()
    grids = {tuple(d["params"]["thresholds"]) for d in docs if d["method"] == "acdc"}
    assert grids == {tuple(taus)}


def test_run_and_benchmark_share_defaults_and_sweeps(tmp_path, capsys):
    from benchmark.defaults import sweep_params
    from methods.acdc import ACDC, default_thresholds

    assert sweep_params("acdc") == ACDC.default_sweep() == {"thresholds": default_thresholds()}
    out = str(tmp_path)
    assert main(["run", "acdc", "-i", "toy", "-n", "8", "--out", out, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["sweep"]) == len(default_thresholds())
    assert main(["benchmark", "--cases", "toy", "--methods", "acdc", "-n", "8", "--out", out, "--resume",
                 "--json"]) == 0
    cap = capsys.readouterr()
    bench = json.loads(cap.out)
    assert bench["skipped"] == 1 and bench["results"][0]["path"] == doc["path"]  # the same run
    assert "1 of 1 jobs skipped" in cap.err and f"skipped (finished) -> {doc['path']}" in cap.err
    # a user's single value replaces the grid
    assert ACDC.with_default_sweep({"threshold": 0.1}) == {"threshold": 0.1}


def test_run_method_help_lists_its_flags_defaults_and_sweep(capsys):
    assert main(["run", "sp", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--lambda-reg FLOAT" in text and "default 1.0" in text and "--epochs INT" in text and "default 200" in text
    assert "lambdas (11 values)" in text and "--edgewise / --no-edgewise" in text
    assert main(["run", "eap-ig", "-h"]) == 0
    text = capsys.readouterr().out
    assert "--ig-variant STR" in text and "default 'inputs'" in text and "default sweep: none" in text
    assert main(["run", "das", "--help"]) == 0  # direction methods too
    assert "--steps INT" in capsys.readouterr().out


# ---- validate before work -------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,needle", [
    (["eap-ig", "--ig-variant", "bogus"], "ig_variant"),
    (["eap-ig", "--integrated-grad-steps", "0"], "integrated_grad_steps"),
    (["eap", "--integrated-grad-steps", "-3"], "integrated_grad_steps"),
    (["sp", "--epochs", "0"], "epochs"),
    (["sp", "--lr", "0"], "lr"),
    (["sp", "--lr", "inf"], "lr"),
    (["sp", "--lambda-reg", "-1"], "lambda_reg"),
    (["sp", "--lambdas", "0.1", "nan"], "lambdas"),
    (["sp", "--mask-p", "1.5"], "mask_p"),
    (["sp", "--n-samples", "0"], "n_samples"),
    (["acdc", "--threshold", "nan"], "threshold"),
    (["acdc", "--threshold", "-0.1"], "threshold"),
    (["acdc", "--thresholds", "0.1", "inf"], "thresholds"),
    (["acdc", "--min-window", "0"], "min_window"),
    (["exact", "--chunk", "0"], "chunk"),
    (["eap", "--attribution-metric", "bogus"], "attribution_metric"),
])
def test_bad_method_values_exit_2_before_any_work(tmp_path, capsys, monkeypatch, argv, needle):
    from cases.toy import ToyCase

    def boom(*a, **k):
        raise AssertionError("a model was built before the arguments were checked")

    monkeypatch.setattr(ToyCase, "load_model", boom)
    monkeypatch.setattr(ToyCase, "dataset", boom)
    out = tmp_path / "out"
    assert main(["run", argv[0], "-i", "toy", "--out", str(out), *argv[1:]]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and needle in err, err
    assert not out.exists()


def test_benchmark_validates_every_job_before_running_any(tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["benchmark", "--cases", "toy", "3", "--methods", "random", "eap", "--model", "siit", "--out", str(out)])
    assert rc == 2 and "case toy has no model 'siit'" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("argv", [
    ["eval", "ig-steps", "-i", "toy", "--steps", "0"],
    ["eval", "pareto", "-i", "toy", "-n", "0"],
    ["eval", "node_realism", "-i", "toy", "--nodes", "a0.h0", "bogus"],
    ["eval", "overlap", "-i", "toy", "--methods", "eap", "eap-ig"],
])
def test_bad_evaluation_values_exit_2(tmp_path, capsys, argv):
    assert main(argv + ["--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("what", ["node_realism", "gt_node_realism", "iit", "pareto", "agreement", "ig-steps",
                                  "overlap", "roc", "faithfulness"])
def test_eval_on_a_direction_case_is_a_one_line_error(tmp_path, capsys, what):
    rc = main(["eval", what, "-i", "sentiment", "--nodes", "m0", "--out", str(tmp_path)])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err


# ---- files readable ------------------------------------------------------------------------------------

def test_output_files_get_the_umask_mode(tmp_path):
    from core.results import write_atomic
    from evaluations.plots import plot_roc

    old = os.umask(0o022)
    try:
        assert stat.S_IMODE(write_atomic(tmp_path / "a.json", "{}").stat().st_mode) == 0o644
        png = plot_roc({"m": {"fpr": [0, 1], "tpr": [0, 1], "auroc": 0.5}}, tmp_path / "roc.png")
        assert stat.S_IMODE(png.stat().st_mode) == 0o644
        doc = run_job(Job(case="toy", method="random", n=8, out=str(tmp_path / "res")))
        assert stat.S_IMODE(Path(doc["path"]).stat().st_mode) == 0o644
        os.umask(0o077)
        assert stat.S_IMODE(write_atomic(tmp_path / "b.json", "{}").stat().st_mode) == 0o600
    finally:
        os.umask(old)


# ---- the small things ----------------------------------------------------------------------------------

@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_train_help(capsys, flag):
    assert main(["train", flag]) == 0
    text = capsys.readouterr().out
    assert "iit" in text and "ioi" in text and "direction" in text and "--model-dir" in text
    assert main(["train"]) == 2


def test_cases_list_siit_and_columns(capsys):
    assert main(["cases", "list", "--kind", "siit", "--json"]) == 0
    ids = [r["id"] for r in json.loads(capsys.readouterr().out)]
    assert ids and sorted(ids, key=int) == sorted({p.parent.name for p in registry.SHIPPED_DIR.glob("*/siit")
                                                   if (p / "model.safetensors").is_file()}, key=int)
    assert main(["cases", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["id", "kind", "output", "models"]
    col = lines[0].index("kind")
    assert all(line[col - 2:col] == "  " and line[col] != " " for line in lines[1:])


def test_eval_overlap_with_one_case(tmp_path, capsys):
    assert main(["eval", "overlap", "-i", "toy", "-n", "16", "--out", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["settings"]) == 2


def test_resume_counts_skipped_jobs(tmp_path, capsys):
    args = ["benchmark", "--cases", "toy", "--methods", "random", "eap", "-n", "8", "--out", str(tmp_path)]
    assert main(args) == 0
    paths = sorted(str(p) for p, _ in iter_results(tmp_path))
    capsys.readouterr()
    assert main(args + ["--resume"]) == 0
    cap = capsys.readouterr()
    assert "--resume: 2 of 2 jobs skipped" in cap.err and "(2 skipped" in cap.out
    assert all(f"skipped (finished) -> {p}" in cap.err for p in paths)


def test_plugin_method_from_the_working_directory(tmp_path):
    pkg = tmp_path / "my_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "my_method.py").write_text(
        "from core.protocols import Method, MethodOutput\n"
        "class WeightNorm(Method):\n"
        "    name = 'weight-norm'\n"
        "    def __init__(self, power: float = 1.0):\n"
        "        self.power = power\n"
        "    def discover(self, problem):\n"
        "        return MethodOutput(edge_scores={e: float(i) ** self.power for i, e in enumerate(problem.graph.edges)})\n")
    p = cli("run", "my_pkg.my_method:WeightNorm", "-i", "toy", "--power", "2", "-n", "8", "--out", "res", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert load_result(next((tmp_path / "res").rglob("result.json")))["params"] == {"power": 2.0}


def test_tracr_cache_key_ignores_bytecode():
    from cases import get_case
    from cases.tracr import cache

    def f(x):
        return x + 1

    def g(x):
        return x * 2 - 7

    same_source = type(f)(f.__code__.replace(co_code=g.__code__.co_code, co_consts=g.__code__.co_consts), f.__globals__)
    assert cache.function_fingerprint(same_source) == cache.function_fingerprint(f)
    assert cache.function_fingerprint(f) != cache.function_fingerprint(g)
    case = get_case("3")  # the shipped entry is found under the new key, and the legacy key differs
    kw = case.compile_kwargs()
    legacy = cache.legacy_cache_key(case.program, kw["vocab"], kw["max_seq_len"], causal=kw["causal"],
                                    compiler_bos="BOS", compiler_pad="PAD")
    assert legacy != case.cache_key() and (cache.SHIPPED_CACHE / case.cache_key()).is_dir()


def test_every_shipped_tracr_model_is_found_and_the_package_is_never_written(tmp_path, monkeypatch):
    from cases import case_ids, get_case
    from cases.tracr import cache

    monkeypatch.delenv(cache.ENV_VAR, raising=False)
    monkeypatch.setattr(cache, "user_cache_dir", lambda: tmp_path / "user-cache")
    assert cache.default_cache_dir() == tmp_path / "user-cache"
    missing = [cid for cid in case_ids("tracr") if cache.find_entry(get_case(cid).cache_key()) is None]
    assert missing == []
    before = sorted(p.name for p in cache.SHIPPED_CACHE.iterdir())
    compiled = cache.load_cached(get_case("3").cache_key())
    key = "f" * 64
    cache.store(compiled, key)  # a new entry goes to the user cache, readable, never into the package
    assert (tmp_path / "user-cache" / key / "compiled.json").is_file()
    assert stat.S_IMODE((tmp_path / "user-cache" / key).stat().st_mode) & 0o055 == 0o055 & ~_umask()
    assert sorted(p.name for p in cache.SHIPPED_CACHE.iterdir()) == before
    assert cache.find_entry(key) == tmp_path / "user-cache" / key


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
