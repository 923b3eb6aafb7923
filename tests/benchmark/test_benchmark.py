"""Sweeps over cases and methods: results, resume, failures, leaderboard."""

import csv
import io
import json

from benchmark.cli import main
from core.results import iter_results


def test_benchmark_resume_and_leaderboard(tmp_path, capsys):
    out = tmp_path / "res"
    args = ["benchmark", "--cases", "toy", "--methods", "random", "eap", "acdc", "--out", str(out), "-n", "16"]
    assert main(args) == 0
    runs = {doc["method"]: path for path, doc in iter_results(out)}
    assert set(runs) == {"random", "eap", "acdc"}
    acdc = json.loads(runs["acdc"].read_text())
    assert len(acdc["sweep"]) > 5 and acdc["roc"]["edges"]["source"] == "sweep"  # default threshold grid

    # an interrupted benchmark: one result missing; --resume runs only that one
    runs["eap"].unlink()
    mtimes = {m: p.stat().st_mtime_ns for m, p in runs.items() if m != "eap"}
    capsys.readouterr()
    assert main(args + ["--resume", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    skipped = {r["method"] for r in doc["results"] if r.get("skipped")}
    assert skipped == {"random", "acdc"}
    assert runs["eap"].exists()
    assert all(runs[m].stat().st_mtime_ns == t for m, t in mtimes.items())

    for fmt in ("md", "csv", "html"):
        assert main(["leaderboard", "--out", str(out), "--format", fmt]) == 0
        assert (out / f"leaderboard.{fmt}").stat().st_size > 0
    rows = list(csv.DictReader(io.StringIO((out / "leaderboard.csv").read_text())))
    assert {r["method"] for r in rows} == {"random", "eap", "acdc"}
    eap = next(r for r in rows if r["method"] == "eap")
    assert float(eap["edge_auroc"]) >= 0.99


def test_failing_case_does_not_stop_the_others(tmp_path, capsys):
    out = tmp_path / "res"
    rc = main(["benchmark", "--cases", "toy", "--methods", "tests.plugin_methods:Crashing", "random",
               "--out", str(out), "-n", "8"])
    assert rc == 1
    status = {doc["method"]: doc["status"] for _, doc in iter_results(out)}
    assert status == {"tests.plugin_methods:Crashing": "error", "random": "ok"}


def test_unknown_names_in_benchmark_fail_before_any_work(tmp_path, capsys):
    assert main(["benchmark", "--cases", "toy", "nope", "--out", str(tmp_path)]) == 2
    assert main(["benchmark", "--cases", "toy", "--methods", "eapp", "--out", str(tmp_path)]) == 2
    assert not list(tmp_path.rglob("result.json"))


def test_jobs_of_a_case_share_its_problem_and_get_the_same_results(tmp_path):
    """The per-case activation cache: later jobs reuse the problem, and nothing they compute changes."""
    from benchmark.runner import Job, ProblemCache, case_groups, run_job, run_jobs

    methods = [("eap", {}), ("sp", {"lambdas": [0.01, 0.1], "epochs": 20}), ("acdc", {"thresholds": [0.001, 0.1]}),
               ("exact", {}), ("eap-ig", {}), ("sp", {"edgewise": True, "lambda_reg": 0.1, "epochs": 20})]
    jobs = [Job(case="toy", method=m, params=p, n=40, out=str(tmp_path / "cached")) for m, p in methods]
    jobs.append(Job(case="3", method="eap", n=40, out=str(tmp_path / "cached")))
    assert [len(g) for g in case_groups(jobs)] == [len(methods), 1]
    cached = run_jobs(jobs)
    fresh = [run_job(Job(**{**j.__dict__, "out": str(tmp_path / "fresh")})) for j in jobs]
    assert [d["status"] for d in cached] == ["ok"] * len(jobs)
    assert [d["timing"]["problem_reused"] for d in cached] == [False] + [True] * (len(methods) - 1) + [False]
    for c, f in zip(cached, fresh):
        assert c["scores"] == f["scores"], c["method"]
        assert c.get("sweep") == f.get("sweep"), c["method"]
    cache = ProblemCache()
    a, reused_a = cache.get(jobs[0], *_case_and_kind("toy"))
    b, reused_b = cache.get(Job(case="toy", method="eap", n=41), *_case_and_kind("toy"))  # other data: rebuilt
    assert (reused_a, reused_b) == (False, False) and a is not b


def _case_and_kind(cid):
    from cases import get_case

    case = get_case(cid)
    return case, case.resolve_model(None)
