"""Hostile inputs (issue 27): files a user is handed run no code; broken files and killed runs leave
nothing wrong behind. Every test here failed on 907489c."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from training import model_files

ROOT = Path(__file__).resolve().parents[2]
torch.set_num_threads(1)


def cli(*argv, cwd=None, env=None, timeout=600):
    """``python main.py ARGV`` in a subprocess: (exit status, stdout, stderr)."""
    e = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
    p = subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, argv)], capture_output=True, text=True,
                       cwd=cwd, env=e, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def main_(*argv):
    """The CLI in this process (fast): its exit status."""
    from benchmark.cli import main
    return main([str(a) for a in argv])


def one_line_error(err: str) -> bool:
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("circuit-bench: error:")]
    return len(lines) == 1 and "Traceback" not in err


# ---------------------------------------------------------------------------------------------------
# 1. no code runs from data files
# ---------------------------------------------------------------------------------------------------

class _Planted:
    """Unpickling this writes a marker file: what a hostile checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


def plant_checkpoint(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": _Planted(marker), "config": {}}, path)
    return path


def test_planted_checkpoint_never_runs_code(tmp_path):
    from training.trainer import load_checkpoint_file

    marker = tmp_path / "pwned"
    ck = plant_checkpoint(tmp_path / "ck.pt", marker)
    with pytest.raises(ValueError, match="ck.pt.*not a circuit-bench trainer checkpoint"):
        load_checkpoint_file(ck)
    assert not marker.exists()
    # a plain pickle (not a torch zip) too
    ck2 = tmp_path / "plain.pt"
    ck2.write_bytes(pickle.dumps(_Planted(marker)))
    with pytest.raises(ValueError, match="plain.pt"):
        load_checkpoint_file(ck2)
    assert not marker.exists()
    # IOI's training checks a checkpoint to resume from before any work (export_checkpoint, dead code, is gone)
    from cases.ioi.train import DEFAULTS, check_options
    params = {k: DEFAULTS[k] for k in ("n_layers", "n_heads", "d_model", "d_mlp", "epochs", "lr", "batch_size", "seed",
                                       "n_train", "n_eval", "normalization")}
    with pytest.raises(ValueError, match="ck.pt"):
        check_options({**params, "kind": "siit"}, {}, ck)
    assert not marker.exists() and not (tmp_path / "exported").exists()


def test_planted_checkpoint_cli_train_iit_resume(tmp_path):
    marker = tmp_path / "pwned"
    plant_checkpoint(tmp_path / "out" / "3" / "iit" / "checkpoint.pt", marker)
    rc, out, err = cli("train", "iit", "-i", "3", "--model-kind", "iit", "--out", tmp_path / "out", "--resume",
                       "--epochs", "1", "--num-samples", "100", "--no-progress")
    assert rc == 2 and one_line_error(err), err
    assert "checkpoint.pt" in err and not marker.exists()


def test_planted_checkpoint_cli_train_ioi(tmp_path):
    marker = tmp_path / "pwned"
    ck = plant_checkpoint(tmp_path / "ck.pt", marker)
    rc, out, err = cli("train", "ioi", "--checkpoint", ck, "--out", tmp_path / "m", "--epochs", "1",
                       "--n-train", "64", "--n-eval", "32")
    assert rc == 2 and one_line_error(err), err
    assert "ck.pt" in err and not marker.exists()


def _tiny(epochs, seed=0):
    from cases import get_case
    from cases.tracr.siit import build_ll, tracr_data, tracr_setup
    from training.trainer import SIITTrainer, TrainConfig

    case = get_case("3")
    setup = tracr_setup(case, seed=0)
    data = tracr_data(case, 300, seed=0)
    torch.manual_seed(seed)
    ll = build_ll(setup.ll_config)
    cfg = TrainConfig(epochs=epochs, batch_size=64, eval_pairs=64, seed=seed, early_stop=False, lr=3e-3)
    return SIITTrainer(setup.hl, ll, setup.corr, data, setup.output_type, cfg)


def test_checkpoint_loads_weights_only_and_resume_is_bit_for_bit(tmp_path):
    """What the trainer saves loads under weights_only=True, and 1 epoch + resume + 1 epoch gives
    exactly the weights, optimizer state and history of 2 epochs in one go."""
    straight = _tiny(2)
    straight.fit(progress=False)
    first = _tiny(2)
    first.cfg.epochs = 1
    first.fit(checkpoint=tmp_path / "ck.pt", progress=False)
    st = torch.load(tmp_path / "ck.pt", weights_only=True)  # raises if anything but tensors/plain types
    assert st["epoch"] == 1
    resumed = _tiny(2)
    resumed.load_checkpoint(tmp_path / "ck.pt")
    resumed.fit(progress=False)
    assert resumed.epoch == straight.epoch == 2
    for (k, p), (_, q) in zip(straight.ll.state_dict().items(), resumed.ll.state_dict().items()):
        assert torch.equal(p, q), k
    so, ro = straight.opt.state_dict()["state"], resumed.opt.state_dict()["state"]
    assert all(torch.equal(so[i]["exp_avg_sq"], ro[i]["exp_avg_sq"]) for i in so)
    strip = [{k: v for k, v in r.items() if k not in ("seconds", "cpu_seconds")} for r in straight.history]
    assert strip == [{k: v for k, v in r.items() if k not in ("seconds", "cpu_seconds")} for r in resumed.history]


def _copy_model_dir(tmp_path) -> Path:
    src = ROOT / "cases" / "siit" / "models" / "3" / "siit"
    d = tmp_path / "models" / "3" / "siit"
    shutil.copytree(src, d)
    return d


def _edit_config(d: Path, **changes):
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(changes)
    (d / "config.json").write_text(json.dumps(cfg))


def _plant_tokenizer_code(tmp_path: Path, marker: Path) -> Path:
    """A 'tokenizer' directory whose remote code writes a marker when imported."""
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "config.json").write_text(json.dumps({"model_type": "x", "auto_map": {"AutoTokenizer": ["evil.Tok", None]}}))
    (tok / "tokenizer_config.json").write_text(json.dumps({"auto_map": {"AutoTokenizer": ["evil.Tok", None]}}))
    (tok / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('code ran')\nclass Tok: pass\n")
    return tok


@pytest.mark.parametrize("field,value", [("tokenizer_name", "TOK"), ("trust_remote_code", True),
                                         ("load_in_4bit", True), ("from_checkpoint", True),
                                         ("quantization_method", "gptq"), ("evil_field", 1),
                                         ("d_model", "12"), ("d_model", 10 ** 30), ("n_layers", -1),
                                         ("eps", None), ("act_fn", "os.system"), ("use_attn_result", "yes")])
def test_model_config_allow_list(tmp_path, field, value):
    marker = tmp_path / "pwned"
    tok = _plant_tokenizer_code(tmp_path, marker)
    d = _copy_model_dir(tmp_path)
    changes = {field: str(tok) if value == "TOK" else value}
    if field == "tokenizer_name":
        changes["trust_remote_code"] = True
    _edit_config(d, **changes)
    with pytest.raises(ValueError) as info:
        model_files.load_model_dir(d)
    msg = str(info.value)
    assert "config.json" in msg and "\n" not in msg and ("'" + (field if field != "tokenizer_name" else "")) in msg
    assert not marker.exists()


def test_shipped_configs_pass_the_allow_list():
    configs = sorted(ROOT.glob("cases/**/models/**/config.json"))
    assert len(configs) > 20
    for p in configs:
        model_files.read_config(p)


def test_model_config_cli_run_never_imports_code(tmp_path):
    """The audit's attack: a model directory (given with --model-dir: the only way a directory other than
    the shipped model is read) whose config names a tokenizer directory with remote code: an error
    naming the file and field, no code run."""
    marker = tmp_path / "pwned"
    tok = _plant_tokenizer_code(tmp_path, marker)
    d = _copy_model_dir(tmp_path)
    _edit_config(d, tokenizer_name=str(tok), trust_remote_code=True)
    rc, out, err = cli("run", "eap", "-i", "3", "--model-dir", d, "--out", tmp_path / "res", "-n", "8")
    assert not marker.exists()
    assert rc != 0 and "Traceback" not in err
    assert "config.json" in (out + err) and "tokenizer_name" in (out + err)


def test_direction_and_tracr_configs_checked(tmp_path):
    from cases.direction.case import load_direction_model

    src = ROOT / "cases" / "direction" / "models" / "sentiment" / "siit"
    d = tmp_path / "dir"
    shutil.copytree(src, d)
    _edit_config(d, trust_remote_code=True)
    with pytest.raises(ValueError, match="config.json.*trust_remote_code"):
        load_direction_model(d)
    from cases.tracr.compiled import CompiledModel, META_FILE
    from cases import get_case
    cm = get_case("3").compiled_model()
    cm.save(tmp_path / "tr")
    meta = json.loads((tmp_path / "tr" / META_FILE).read_text())
    meta["config"]["tokenizer_name"] = "gpt2"
    (tmp_path / "tr" / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="tokenizer_name"):
        CompiledModel.load(tmp_path / "tr")


# ---------------------------------------------------------------------------------------------------
# 2. killing the parent kills its workers; nothing written after it is gone
# ---------------------------------------------------------------------------------------------------

def _session_processes(sid: int) -> list[int]:
    """Live (non-zombie) processes of session ``sid``."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
            pids.append(int(stat.parent.name))
    return pids


def _results_under(out: Path) -> set[str]:
    return {str(p) for p in out.rglob("result.json")} if out.exists() else set()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux) to list the session")
def test_sigkill_parent_kills_workers(tmp_path):
    out = tmp_path / "res"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", HOSTILE_SLEEP="4")
    p = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "benchmark", "--cases", "toy", "3", "4", "6", "7",
                          "12", "--methods", "benchmark.hostile:Slow", "--workers", "2", "--out", str(out),
                          "-n", "8"], cwd=ROOT, env=env, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 480
        while not _results_under(out) and time.time() < deadline and p.poll() is None:
            time.sleep(0.2)
        assert p.poll() is None and _results_under(out), "the benchmark finished or failed before the kill"
        assert len(_session_processes(p.pid)) >= 3  # parent, 2 workers (and the resource tracker)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        at_kill = _results_under(out)
        deadline = time.time() + 5
        while _session_processes(p.pid) and time.time() < deadline:
            time.sleep(0.1)
        assert _session_processes(p.pid) == [], "processes of the killed benchmark survive"
        time.sleep(5)  # a surviving worker would write its next result within HOSTILE_SLEEP seconds
        assert _results_under(out) == at_kill
        assert len(at_kill) < 6
    finally:
        for pid in _session_processes(p.pid):
            os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------------------------------------------
# 3. readers validate result files: skip a bad one with a warning, never crash
# ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def good_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("good")
    assert main_("run", "random", "-i", "toy", "--out", out, "-n", "8") == 0
    (path,) = list(out.rglob("result.json"))
    return path


BAD_RESULTS = {
    "list": "[1, 2]",
    "string": '"result"',
    "not-json": "{not json",
    "empty": "",
    "binary": b"\xff\xfe\x00garbage",
    "deep": "[" * 5000 + "]" * 5000,
}


def _bad_docs(good: dict) -> dict[str, object]:
    def without(*keys):
        return {k: v for k, v in good.items() if k not in keys}

    def roc(**edges):
        return dict(good, roc=dict(good["roc"], edges=dict(good["roc"]["edges"], **edges)))
    return {
        "no-case": without("case"), "no-method": without("method"), "no-status": without("status"),
        "no-roc": without("roc"), "no-schema": without("schema"), "schema-99": dict(good, schema=99),
        "roc-list": dict(good, roc=[]), "roc-edges-str": dict(good, roc=dict(good["roc"], edges="x")),
        "no-fpr-ok": roc(fpr="0.1"), "auroc-str": roc(auroc="0.9"), "auroc-2": roc(auroc=2.0),
        "huge-int": dict(good, timing={"seconds": 10 ** 400}), "seconds-str": dict(good, timing={"seconds": "1"}),
        "case-int": dict(good, case=3), "case-dotdot": dict(good, case=".."), "model-slash": dict(good, model="a/b"),
        "method-dotdot": dict(good, method=".."), "params-list": dict(good, params=[1]),
        "scores-str": dict(good, scores={"edges": {"a": "x"}}), "sweep-dict": dict(good, sweep={"a": 1}),
        "status-weird": dict(good, status="done"),
    }


def _write(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        path.write_text(json.dumps(content))
    return path


def test_validate_result_accepts_good_and_extra_fields(good_result):
    from core import results
    doc = json.loads(good_result.read_text())
    assert results.validate_result(doc) == []
    assert results.validate_result(dict(doc, provenance={"git": "abc"}, extra=[1, 2])) == []
    assert results.validate_result(dict(doc, status="error", error="x", roc=None)) == []


def test_validate_result_nan_and_infinity_tokens(good_result):
    from core import results
    text = good_result.read_text().replace('"auroc": 1.0', '"auroc": NaN', 1)
    assert results.validate_result(json.loads(text)) != [] or '"auroc": NaN' not in text
    assert results.validate_result(dict(json.loads(good_result.read_text()), timing={"seconds": float("inf")}))


@pytest.mark.parametrize("name", sorted(BAD_RESULTS) + sorted(_bad_docs({"roc": {"edges": {}}}).keys()))
def test_one_bad_result_never_crashes_eval_and_leaderboard(tmp_path, good_result, name, capsys):
    good = json.loads(good_result.read_text())
    content = BAD_RESULTS[name] if name in BAD_RESULTS else _bad_docs(good)[name]
    out = tmp_path / "res"
    shutil.copytree(good_result.parents[4], out)
    bad = _write(out / "toy" / "toy" / "random" / "run-bad" / "result.json", content)
    before = {p for p in tmp_path.parent.rglob("*")}
    assert main_("leaderboard", "--out", out) == 0
    err = capsys.readouterr().err
    assert f"skip {bad}" in err and "skipped 1 invalid result file" in err and "Traceback" not in err
    assert main_("eval", "roc", out, "--out", tmp_path / "plots") == 0
    err = capsys.readouterr().err
    assert f"skip {bad}" in err and "skipped 1 invalid result file" in err
    rc = main_("eval", "roc", bad)  # the bad file alone: nothing valid left, a one-line usage error
    err = capsys.readouterr().err
    assert rc == 2 and one_line_error(err) and f"skip {bad}" in err
    assert {p for p in tmp_path.parent.rglob("*")} - before <= set(tmp_path.rglob("*"))  # nothing outside


def test_resume_recomputes_a_malformed_result(tmp_path):
    out = tmp_path / "res"
    assert main_("run", "random", "-i", "toy", "--out", out, "-n", "8") == 0
    (path,) = list(out.rglob("result.json"))
    path.write_text("[]")
    assert main_("run", "random", "-i", "toy", "--out", out, "-n", "8", "--resume") == 0
    assert json.loads(path.read_text())["status"] == "ok"


# ---------------------------------------------------------------------------------------------------
# 4. writes stay under the directory given; symlinks inside --out
# ---------------------------------------------------------------------------------------------------

def test_safe_component_never_leaves_its_parent():
    from core.results import safe_component
    for name in ("..", ".", "", "...", "a/../b", "/etc", "..\\x", "\x00"):
        c = safe_component(name)
        assert c not in ("", ".", "..") and "/" not in c and "\\" not in c, (name, c)
    assert safe_component("pkg.mod:Cls") == "pkg.mod_Cls" and safe_component("eap-ig") == "eap-ig"


def test_eval_roc_never_writes_outside_out(tmp_path, good_result):
    """A result whose case/model are '..' is invalid (skipped); and plots go under --out, or next to
    the result, never above it."""
    good = json.loads(good_result.read_text())
    res = tmp_path / "a" / "b" / "res"
    _write(res / "x" / "result.json", dict(good, case="..", model=".."))
    _write(res / "y" / "result.json", good)
    before = set(tmp_path.rglob("*"))
    assert main_("eval", "roc", res / "x" / "result.json", res / "y" / "result.json") == 0
    new = set(tmp_path.rglob("*")) - before
    assert new and all(res in p.parents for p in new), new  # plots next to the result, under res/
    assert main_("eval", "roc", res, "--out", tmp_path / "plots") == 0
    assert not any(p.suffix == ".png" for p in (tmp_path / "a").iterdir())
    assert not list(tmp_path.glob("*.png")) and not list((tmp_path / "a" / "b").glob("*.png"))


def test_symlinks_inside_out_policy(tmp_path, good_result, capsys):
    """Never followed on write (a clear error, nothing written through the link); on read skipped with
    a warning naming the link (README, "Result files")."""
    out, elsewhere = tmp_path / "res", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "toy").symlink_to(elsewhere, target_is_directory=True)
    rc = main_("run", "random", "-i", "toy", "--out", out, "-n", "8")
    cap = capsys.readouterr()
    assert rc == 1 and "symbolic link" in cap.out + cap.err and not list(elsewhere.rglob("*"))
    # on read: a linked result folder is skipped with a warning, and counted
    (out / "toy").unlink()
    shutil.copytree(good_result.parents[4], out, dirs_exist_ok=True)
    linked = tmp_path / "linked"
    shutil.copytree(good_result.parents[4] / "toy", linked)
    (out / "other").symlink_to(linked, target_is_directory=True)
    assert main_("leaderboard", "--out", out) == 0
    err = capsys.readouterr().err
    assert f"skip {out / 'other'}: a symbolic link" in err and "skipped 1" in err
    # a plot directory that is a link inside --out: refused, nothing written through it
    (out / "toy" / "toy").rename(out / "toy" / "real")
    (out / "toy" / "toy").symlink_to(elsewhere, target_is_directory=True)
    rc = main_("eval", "roc", out / "toy" / "real", "--out", out)
    err = capsys.readouterr().err
    assert rc == 2 and one_line_error(err) and "symbolic link" in err and not list(elsewhere.rglob("*"))


# ---------------------------------------------------------------------------------------------------
# 5. an unusable --out fails before any work
# ---------------------------------------------------------------------------------------------------

def test_unusable_out_fails_before_work(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    for argv in (["run", "random", "-i", "toy", "--out", f], ["run", "random", "-i", "toy", "--out", f / "sub"],
                 ["benchmark", "--cases", "toy", "--methods", "random", "--out", f],
                 ["eval", "roc", tmp_path, "--out", f], ["train", "iit", "-i", "3", "--out", f],
                 ["run", "random", "-i", "toy", "--out", "/proc/circuit-bench-out"]):
        rc = main_(*argv)
        err = capsys.readouterr().err
        assert rc == 2 and one_line_error(err) and "--out" in err, (argv, err)
    assert f.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories; /proc covers this as root")
def test_read_only_out_fails_before_work(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert main_("run", "random", "-i", "toy", "--out", ro) == 2
        assert one_line_error(capsys.readouterr().err)
    finally:
        ro.chmod(0o755)


# ---------------------------------------------------------------------------------------------------
# 6. run-level flags range-checked at parse time; method output checked
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["run", "random", "-i", "toy", "-n", "0"], ["run", "random", "-i", "toy", "-n", "-5"],
    ["run", "random", "-i", "toy", "--seed", "-1"], ["benchmark", "--cases", "toy", "-n", "0"],
    ["benchmark", "--cases", "toy", "--seed", "-1"], ["benchmark", "--cases", "toy", "--workers", "0"],
    ["eval", "ig-steps", "-i", "toy", "--steps", "0"], ["eval", "iit", "-i", "toy", "-n", "0"],
    ["run", "acdc", "-i", "toy", "--threshold", "nan"], ["run", "acdc", "-i", "toy", "--threshold", "inf"],
    ["run", "sp", "-i", "toy", "--lambda-reg", "nan"],
    ["train", "iit", "-i", "3", "--seed", "-1"], ["train", "iit", "-i", "3", "-d", "cuda"],
    ["train", "iit", "-i", "3", "-d", "tpu"], ["run", "random", "-i", "toy", "-n", "abc"],
])
def test_bad_run_level_flags_exit_2_before_work(tmp_path, argv, capsys):
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    rc = main_(*argv, "--out", tmp_path / "res")
    err = capsys.readouterr().err
    assert rc == 2 and one_line_error(err), err
    assert not list((tmp_path / "res").rglob("result.json"))


@pytest.mark.parametrize("method,why", [("NaNScores", "non-finite"), ("InfScores", "non-finite"),
                                        ("Exits", "sys.exit(3)")])
def test_bad_method_output_fails_that_run(tmp_path, method, why, capsys):
    out = tmp_path / "res"
    rc = main_("benchmark", "--cases", "toy", "--methods", f"benchmark.hostile:{method}", "random",
               "--out", out, "-n", "8")
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    docs = [json.loads(p.read_text()) for p in out.rglob("result.json")]
    by_method = {d["method"]: d for d in docs}
    assert by_method["random"]["status"] == "ok"  # the other method's run goes on
    bad = by_method[f"benchmark.hostile:{method}"]
    assert bad["status"] == "error" and why in bad["error"] and "roc" not in bad


def test_plugin_syntax_error_is_one_line(tmp_path):
    (tmp_path / "broken_plugin.py").write_text("def discover(:\n")
    env = {"PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}
    rc, out, err = cli("run", "broken_plugin:M", "-i", "toy", "--out", tmp_path / "res", env=env)
    assert rc == 2 and one_line_error(err) and "broken_plugin.py line 1" in err, err
    rc, out, err = cli("run", "broken_plugin:M", "-i", "toy", "--out", tmp_path / "res",
                       env={**env, "CIRCUIT_BENCH_DEBUG": "1"})
    assert "Traceback" in err and "SyntaxError" in err


# ---------------------------------------------------------------------------------------------------
# 7. eval roc --recompute FILE in either order; case-insensitive close matches
# ---------------------------------------------------------------------------------------------------

def test_recompute_either_order_and_case_hint(tmp_path, good_result, capsys):
    out = tmp_path / "res"
    shutil.copytree(good_result.parents[4], out)
    (path,) = list(out.rglob("result.json"))
    assert main_("eval", "roc", "--recompute", path) == 0
    assert main_("eval", "roc", path, "--recompute") == 0
    capsys.readouterr()
    assert main_("run", "random", "-i", "IOI") == 2
    assert "did you mean ioi" in capsys.readouterr().err
    assert main_("run", "random", "-i", "Toy") == 2
    assert "did you mean toy" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------
# 8. concurrent runs on one --out claim jobs
# ---------------------------------------------------------------------------------------------------

def test_job_lock_claims_and_stale_locks(tmp_path):
    from benchmark.safety import LOCK, JobLock

    a = JobLock(tmp_path / "run")
    assert a.acquire() and (tmp_path / "run" / LOCK).exists()
    b = JobLock(tmp_path / "run")
    assert not b.acquire() and b.owner["pid"] == os.getpid()  # held (our own pid: not stale to a 2nd lock)
    a.release()
    assert not (tmp_path / "run" / LOCK).exists() and b.acquire()
    b.release()
    # a lock of a dead process is stale: taken over
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "run" / LOCK).write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename}))
    c = JobLock(tmp_path / "run")
    assert c.acquire()
    c.release()
    # a lock of a live process on this host, or of another host, is respected
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        from benchmark.safety import _start_time
        (tmp_path / "run" / LOCK).write_text(json.dumps({"pid": live.pid, "host": os.uname().nodename,
                                                          "start": _start_time(live.pid)}))
        assert not JobLock(tmp_path / "run").acquire()
    finally:
        live.kill()
        live.wait()
    (tmp_path / "run" / LOCK).write_text(json.dumps({"pid": 1, "host": "another-host"}))
    assert not JobLock(tmp_path / "run").acquire()


def test_two_concurrent_resume_runs_split_the_work(tmp_path):
    out, log = tmp_path / "res", tmp_path / "computed.log"
    cases = ["toy", "3", "4", "6", "7"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", HOSTILE_SLEEP="1", HOSTILE_LOG=str(log))
    argv = [sys.executable, str(ROOT / "main.py"), "benchmark", "--cases", *cases, "--methods",
            "benchmark.hostile:Slow", "--out", str(out), "-n", "8", "--resume"]
    procs = [subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    computed = log.read_text().split("\n")[:-1]
    per_case = {c: sum(1 for line in computed if line.split()[0] == c) for c in cases}
    assert per_case == {c: 1 for c in cases}, per_case  # every job computed exactly once
    docs = [json.loads(p.read_text()) for p in out.rglob("result.json")]
    assert len(docs) == len(cases) and all(d["status"] == "ok" for d in docs)
    assert not list(out.rglob("lock"))  # released on exit


# ---------------------------------------------------------------------------------------------------
# 9. fuzz: malformed result files, model configs and flags through every reader and command
# ---------------------------------------------------------------------------------------------------

def _snapshot(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def test_fuzz_result_files_every_reader(tmp_path, good_result, capsys):
    """100+ malformed result files in one results tree: every reader (leaderboard md/csv/html, eval roc,
    eval faithfulness, load_result, iter_results, is_finished) skips each bad one with a warning naming
    it, keeps the good one, exits 0, prints no traceback and writes nothing outside --out."""
    from core import results
    from benchmark.hostile import bad_result_docs, encode

    good = json.loads(good_result.read_text())
    table = bad_result_docs(good)
    assert len(table) >= 100
    out = tmp_path / "res"
    shutil.copytree(good_result.parents[4], out)
    paths = {}
    for i, (name, content) in enumerate(table.items()):
        p = out / "toy" / "toy" / "random" / f"run-bad{i:03d}" / "result.json"
        p.parent.mkdir(parents=True)
        p.write_bytes(encode(content))
        paths[name] = p
    invalid = {n for n, p in paths.items() if results.validate_result(_try_json(p)) or _try_json(p) is _BAD}
    # almost every mutation is invalid; the few that are not (e.g. an optional block set to null) stay valid
    assert len(invalid) >= 0.9 * len(table), sorted(set(table) - invalid)
    for name, p in paths.items():
        assert results.is_finished(p) == (name not in invalid and _try_json(p).get("status") == "ok")
        if name in invalid:
            with pytest.raises(ValueError, match=str(p)):
                results.load_result(p)
    skipped = []
    got = list(results.iter_results(out, on_skip=lambda p, why: skipped.append(p)))
    assert out / good_result.relative_to(good_result.parents[4]) in {p for p, _ in got}
    assert set(skipped) == {paths[n] for n in invalid}
    outside = _snapshot(tmp_path.parent) - _snapshot(tmp_path)
    for argv in (["leaderboard", "--out", out], ["leaderboard", "--out", out, "--format", "csv"],
                 ["leaderboard", "--out", out, "--format", "html"], ["eval", "roc", out, "--out", tmp_path / "plots"],
                 ["eval", "faithfulness", out, "--out", tmp_path / "plots", "-n", "8"]):
        rc = main_(*argv)
        cap = capsys.readouterr()
        assert rc == 0 and "Traceback" not in cap.err, (argv, cap.err[-2000:])
        warned = [ln for ln in cap.err.splitlines() if ln.startswith("circuit-bench: warning: skip")]
        assert all(any(f"skip {paths[n]}:" in ln for ln in warned) for n in invalid), argv
        extra = [ln for ln in warned if not any(f"skip {paths[n]}:" in ln for n in invalid)]
        # faithfulness rebuilds each result's case: a valid file naming a model that is not here is skipped too
        assert all("cannot rebuild its case" in ln for ln in extra) and (not extra or argv[1] == "faithfulness")
        assert f"skipped {len(warned)} invalid result file(s)" in cap.err
    assert _snapshot(tmp_path.parent) - _snapshot(tmp_path) == outside  # nothing written outside tmp_path


_BAD = object()


def _try_json(p: Path):
    try:
        return json.loads(p.read_bytes())
    except (ValueError, RecursionError):
        return _BAD


def test_fuzz_model_configs(tmp_path):
    """Malformed config.json files: the loader raises a one-line ValueError naming the file and the
    field for everything outside the allow-list (never another exception from the check, never code)."""
    from benchmark.hostile import bad_configs

    src = ROOT / "cases" / "siit" / "models" / "3" / "siit"
    cfg = json.loads((src / "config.json").read_text())
    table = bad_configs(cfg)
    assert len(table) >= 100
    d = tmp_path / "m"
    shutil.copytree(src, d)
    rejected = 0
    for name, bad in table.items():
        (d / "config.json").write_text(json.dumps(bad, allow_nan=True))
        try:
            model_files.read_config(d / "config.json")
        except ValueError as err:
            msg = str(err)
            assert "\n" not in msg and str(d / "config.json") in msg, (name, msg)
            field = {"unknown_field": "auto_map", "tokenizer+remote": "tokenizer_name"}.get(
                name, name.split("=")[0].removeprefix("missing-"))
            assert f"'{field}'" in msg or name == "not-object", (name, msg)
            rejected += 1
        else:
            pytest.fail(f"config mutation {name} accepted")
    assert rejected == len(table)


def test_fuzz_command_lines(tmp_path, capsys):
    """Bad command lines: a one-line error, exit 2, no traceback, nothing written (in --out or elsewhere)."""
    from benchmark.hostile import TAKES_OUT, bad_command_lines

    table = bad_command_lines()
    assert len(table) >= 40
    before = _snapshot(tmp_path)
    for argv in table:
        full = argv + (["--out", str(tmp_path / "res")] if argv[0] in TAKES_OUT and argv[0] != "eval" else [])
        rc = main_(*full)
        err = capsys.readouterr().err
        assert rc == 2 and one_line_error(err), (full, err)
    assert not list(tmp_path.rglob("result.json"))
    assert _snapshot(tmp_path) - before <= {tmp_path / "res"} | set((tmp_path / "res").rglob("*"))


@pytest.mark.slow
def test_fuzz_command_lines_in_subprocesses(tmp_path):
    """The same table through real processes (exit status as the shell sees it, stderr as printed)."""
    from benchmark.hostile import TAKES_OUT, bad_command_lines

    for argv in bad_command_lines():
        full = argv + (["--out", str(tmp_path / "res")] if argv[0] in TAKES_OUT and argv[0] != "eval" else [])
        rc, out, err = cli(*full)
        assert rc == 2 and one_line_error(err), (full, err)


def test_plugin_that_exits_while_imported_is_one_line(tmp_path):
    """A plug-in module calling sys.exit() at import is a usage error (exit 2, one line), never the end of
    the command with its own exit status."""
    (tmp_path / "exiting_plugin.py").write_text("import sys\nsys.exit(3)\n")
    env = {"PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}
    rc, out, err = cli("run", "exiting_plugin:M", "-i", "toy", "--out", tmp_path / "res", env=env)
    assert rc == 2 and one_line_error(err) and "sys.exit(3)" in err, err
    assert not list((tmp_path / "res").rglob("result.json"))
