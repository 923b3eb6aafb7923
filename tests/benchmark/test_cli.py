"""The command line: errors, JSON output, result files, resume."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.cli import main
from core.results import load_result

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "main.py", *args], cwd=cwd, capture_output=True, text=True,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": "/tmp",
                               "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("args,needle", [
    (["run", "nosuchmethod", "-i", "toy"], "unknown method 'nosuchmethod'"),
    (["cases", "show", "99999"], "unknown case '99999'"),
    (["frobnicate"], "invalid choice"),
    (["cases", "list", "--jsn"], "did you mean --json"),
    (["run", "eap-ig", "-i", "toy", "--integrated-grad-step", "3"], "did you mean --integrated-grad-steps"),
    (["run", "acdc", "-i", "toy", "--lambda-reg", "3"], "--lambda-reg is a flag of sp"),
    (["run", "random", "-i", "toyy"], "did you mean toy"),
])
def test_bad_input_is_one_line_and_exit_2(args, needle, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err


def test_run_writes_a_valid_result_and_json_is_one_document(tmp_path):
    out = tmp_path / "res"
    p = cli("run", "random", "-i", "toy", "--out", str(out), "--json", "-n", "16")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)  # exactly one JSON document on stdout
    path = Path(doc["path"])
    assert path.exists() and path.parent.parent.name == "random"
    on_disk = load_result(path)
    for key in ("schema", "case", "model", "method", "params", "seed", "status", "error", "graph", "scores",
                "roc", "timing", "versions"):
        assert key in on_disk, key
    assert on_disk["status"] == "ok" and on_disk["error"] is None
    assert on_disk["graph"]["n_edges"] == len(on_disk["scores"]["edges"]) == 46
    assert 0.0 <= on_disk["roc"]["edges"]["auroc"] <= 1.0
    assert not list(path.parent.glob(".*.tmp"))  # atomic write left no temporary file


def test_resume_skips_finished_runs(tmp_path, capsys):
    args = ["run", "random", "-i", "toy", "--out", str(tmp_path), "-n", "8"]
    assert main(args) == 0
    (path,) = list(tmp_path.rglob("result.json"))
    before = path.stat().st_mtime_ns
    assert main(args + ["--resume"]) == 0
    assert path.stat().st_mtime_ns == before
    assert main(args) == 0  # without --resume the run is recomputed (same id, same directory)
    assert len(list(tmp_path.rglob("result.json"))) == 1


def test_failed_run_is_recorded_and_exits_nonzero(tmp_path, capsys):
    # the oracle baseline needs a ground truth; a plug-in that raises stands in for a crashing method
    assert main(["run", "tests.plugin_methods:Crashing", "-i", "toy", "--out", str(tmp_path), "-n", "8"]) == 1
    (path,) = list(tmp_path.rglob("result.json"))
    doc = load_result(path)
    assert doc["status"] == "error" and "deliberate failure" in doc["error"]


def test_benchmark_runs_method_variants_given_as_name_with_parameters(tmp_path, capsys):
    """``benchmark --methods 'eap-ig[ig_variant=activations]'``: a variant beside the defaults, each its own
    run and its own leaderboard row; a single sweep value replaces the sweep (as ``run --lambda-reg``)."""
    out = tmp_path / "r"
    assert main(["benchmark", "--cases", "toy", "-n", "8", "--out", str(out), "--methods", "eap-ig",
                 "eap-ig[ig_variant=activations, integrated_grad_steps=3]", "sp[lambda_reg=0.1,epochs=2]"]) == 0
    docs = [load_result(p) for p in out.rglob("result.json")]
    got = sorted((d["method"], d["params"].get("ig_variant"), d["params"].get("integrated_grad_steps")) for d in docs
                 if d["method"] == "eap-ig")
    assert got == [("eap-ig", "activations", 3), ("eap-ig", "inputs", 5)]
    (sp,) = [d for d in docs if d["method"] == "sp"]
    assert sp["params"]["lambda_reg"] == 0.1 and sp["params"]["epochs"] == 2 and sp["params"]["lambdas"] is None
    capsys.readouterr()
    assert main(["leaderboard", "--out", str(out), "--json"]) == 0
    variants = {r["variant"] for r in json.loads(capsys.readouterr().out)["summary"]}
    assert {"eap-ig (activations, 3 steps)", "eap-ig (inputs, 5 steps)"} <= variants


@pytest.mark.parametrize("spec,needle", [("eap-ig[ig_variant=bogus]", "unknown ig_variant 'bogus'"),
                                         ("eap-ig[ig_variant", "bad method spec"),
                                         ("eap-ig[steps=3]", "unexpected keyword argument 'steps'"),
                                         ("eapp[x=1]", "unknown method 'eapp'")])
def test_benchmark_bad_method_variant_is_one_line_exit_2_and_writes_nothing(spec, needle, tmp_path, capsys):
    assert main(["benchmark", "--cases", "toy", "--methods", "eap", spec, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "r").exists()


def test_plugin_method_by_module_path(tmp_path, capsys):
    assert main(["run", "tests.plugin_methods:SenderIndex", "-i", "toy", "--out", str(tmp_path), "-n", "8",
                 "--power", "2"]) == 0
    (path,) = list(tmp_path.rglob("result.json"))
    doc = load_result(path)
    assert doc["params"] == {"power": 2.0}
    assert doc["scores"]["edges"]["input->a0.h1<q>"] == 1.0 and doc["scores"]["edges"]["input->a0.h0<k>"] == 4.0


def test_json_output_stays_one_document_when_libraries_print(tmp_path):
    # loading a model makes TransformerLens print to stdout; with --json that must go to stderr
    p = cli("eval", "gt_node_realism", "-i", "toy", "--json", "-n", "8")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["rows"][0]["score"] == 1.0  # the toy's planted circuit keeps every prediction


def test_study_commands_from_the_cli(tmp_path, capsys):
    for what in ("pareto", "agreement", "ig-steps"):
        args = ["eval", what, "-i", "toy", "-n", "16", "--out", str(tmp_path), "--json", "--steps", "1", "2"]
        assert main(args) == 0, what
        doc = json.loads(capsys.readouterr().out)
        assert doc, what
    assert list(tmp_path.rglob("pareto.png")) and list(tmp_path.rglob("ig_steps.json"))
    assert main(["eval", "pareto", "-i", "toy", "--methods", "eapp", "--out", str(tmp_path)]) == 2


# ---- usage errors and failures: exit 2 before the work, a traceback (exit 1) after it started ----------------
def test_a_value_error_inside_a_methods_work_is_a_failure_with_its_traceback_not_a_usage_error(tmp_path, monkeypatch,
                                                                                                capsys):
    from methods.baselines import RandomScores

    def broken(self, *args, **kwargs):
        raise ValueError("boom inside discover")

    monkeypatch.setattr(RandomScores, "discover", broken)
    assert main(["run", "random", "-i", "toy", "--out", str(tmp_path), "-n", "8", "--json"]) == 1
    captured = capsys.readouterr()
    assert "circuit-bench: error:" not in captured.err  # not reported as a bad command line
    doc = json.loads(captured.out)
    assert doc["status"] == "error" and doc["error"] == "ValueError: boom inside discover"
    assert "Traceback" in doc["traceback"] and "in broken" in doc["traceback"]


def test_a_value_error_after_the_work_started_keeps_its_traceback_and_exit_1(tmp_path):
    """An exception that escapes a command after its validation phase is a bug, not a usage error."""
    code = ("import sys\n"
            "import benchmark.commands.run as run\n"
            "def run_job(job, **kw):\n    raise ValueError('boom after the validation')\n"
            "run.run_job = run_job\n"
            "from benchmark.cli import main\n"
            f"sys.exit(main(['run', 'random', '-i', 'toy', '-n', '8', '--out', {str(tmp_path)!r}]))\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": "/tmp", "PYTHONPATH": str(ROOT)})
    assert p.returncode == 1, p.stderr
    assert "Traceback" in p.stderr and "ValueError: boom after the validation" in p.stderr
    assert "circuit-bench: error:" not in p.stderr


def test_debug_shows_the_traceback_of_a_usage_error(capsys):
    from benchmark.console import UsageError
    from core.registry import UnknownNameError

    assert main(["run", "nosuchmethod", "-i", "toy"]) == 2
    with pytest.raises(UsageError, match="unknown method 'nosuchmethod'") as err:
        main(["--debug", "run", "nosuchmethod", "-i", "toy"])
    assert isinstance(err.value.__cause__, UnknownNameError)  # the library's own exception, chained
    with pytest.raises(UsageError, match="unknown method"):  # anywhere on the command line
        main(["run", "nosuchmethod", "-i", "toy", "--debug"])
    with pytest.raises(UsageError, match="invalid choice"):  # argparse's errors too
        main(["--debug", "frobnicate"])
