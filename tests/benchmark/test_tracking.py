"""Optional integrations of ``benchmark``: experiment tracking with W&B (``--wandb-project``) and the
Ray executor (``--executor ray``). Both are optional extras, imported only when asked for."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import importlib.util
import sys
import types

import pytest

from benchmark.cli import main
from core.results import iter_results


class FakeRun:
    def __init__(self, calls, kwargs):
        self.calls, self.kwargs, self.logged, self.summary, self.finished = calls, kwargs, [], {}, False

    def log(self, data):
        self.logged.append(dict(data))

    def finish(self):
        self.finished = True


@pytest.fixture
def fake_wandb(monkeypatch):
    """A stand-in ``wandb`` module that records every run instead of logging anywhere."""
    module = types.ModuleType("wandb")
    module.__spec__ = importlib.machinery.ModuleSpec("wandb", None)  # availability probes see a package
    module.runs = []

    def init(**kwargs):
        run = FakeRun(module.runs, kwargs)
        module.runs.append(run)
        return run

    module.init = init
    monkeypatch.setitem(sys.modules, "wandb", module)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_DIR", raising=False)
    return module


def test_wandb_logs_each_finished_job_offline(tmp_path, capsys, fake_wandb):
    out = tmp_path / "res"
    args = ["benchmark", "--cases", "toy", "--methods", "random", "eap", "--out", str(out), "-n", "8",
            "--wandb-project", "circuits"]
    assert main(args) == 0
    runs = {r.kwargs["config"]["method"]: r for r in fake_wandb.runs}
    assert set(runs) == {"random", "eap"}
    for method, run in runs.items():
        kw = run.kwargs
        assert kw["project"] == "circuits" and kw["mode"] == "offline" and kw["reinit"] is True
        assert kw["dir"] == str(out) and kw["name"] == f"toy/toy/{method}"
        assert kw["config"]["case"] == "toy" and kw["config"]["model"] == "toy"
        assert kw["config"]["data"]["n"] == 8 and "params" in kw["config"]
        assert run.summary["status"] == "ok" and run.summary["seconds"] > 0
        assert 0 <= run.summary["edges_auroc"] <= 1 and "nodes_auroc" in run.summary
        assert run.logged and run.logged[0]["edges_auroc"] == run.summary["edges_auroc"]
        assert run.finished
    doc = next(d for _, d in iter_results(out) if d["method"] == "eap")
    assert runs["eap"].summary["edges_auroc"] == doc["roc"]["edges"]["auroc"]
    assert runs["eap"].kwargs["config"]["params"] == doc["params"]
    assert "logged 2 run(s) to project 'circuits'" in capsys.readouterr().err

    # resumed jobs were logged when they ran: nothing new
    assert main(args + ["--resume"]) == 0
    assert len(fake_wandb.runs) == 2


def test_wandb_mode_comes_from_the_environment_and_failures_do_not_stop_the_benchmark(monkeypatch, capsys,
                                                                                      fake_wandb, tmp_path):
    from benchmark.tracking import WandbTracker

    doc = {"case": "3", "model": "tracr", "method": "eap", "status": "ok", "params": {"a": 1},
           "roc": {"edges": {"auroc": float("nan")}}, "timing": {"seconds": 1.5}}
    monkeypatch.setenv("WANDB_MODE", "online")  # only when the user asks
    tracker = WandbTracker("p", out=tmp_path)
    tracker.log_result(doc)
    assert fake_wandb.runs[-1].kwargs["mode"] == "online"
    assert fake_wandb.runs[-1].summary["edges_auroc"] is None  # nan is not a number W&B can chart

    def broken(**kwargs):
        raise RuntimeError("no network")

    fake_wandb.init = broken
    tracker = WandbTracker("p", out=tmp_path)
    tracker.log_result(doc)
    tracker.log_result(doc)  # tracking stopped after the first failure: reported once
    assert capsys.readouterr().err.count("wandb: tracking stopped after 0 run(s): RuntimeError: no network") == 1

    monkeypatch.setenv("WANDB_MODE", "sometimes")
    assert main(["benchmark", "--cases", "toy", "--methods", "random", "--out", str(tmp_path / "r"),
                 "--wandb-project", "p"]) == 2
    assert "WANDB_MODE='sometimes'" in capsys.readouterr().err


def test_missing_optional_extras_give_a_one_line_error_before_any_work(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    monkeypatch.setitem(sys.modules, "ray", None)
    base = ["benchmark", "--cases", "toy", "--methods", "random", "--out", str(tmp_path), "-n", "8"]
    assert main(base + ["--wandb-project", "p"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'circuit-bench[wandb]'" in err
    assert main(base + ["--executor", "ray"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'circuit-bench[ray]'" in err
    assert not list(tmp_path.rglob("result.json"))


class _RecordImports(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Offers stand-ins for ``names`` and records which ones get *imported* (executed). A mere
    availability probe (``importlib.util.find_spec``, as accelerate does for wandb) is not an import."""

    def __init__(self, names):
        self.names, self.imported = names, []

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.names:
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        self.imported.append(module.__name__)


def test_without_the_flags_wandb_and_ray_are_never_imported(monkeypatch, tmp_path, capsys):
    names = {"wandb", "ray"}
    for name in [m for m in sys.modules if m.split(".")[0] in names]:
        monkeypatch.delitem(sys.modules, name)
    finder = _RecordImports(names)
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    out = tmp_path / "res"
    assert main(["benchmark", "--cases", "toy", "--methods", "random", "--out", str(out), "-n", "8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["failed"] == 0
    assert main(["leaderboard", "--out", str(out), "--format", "html"]) == 0
    assert finder.imported == []
    assert not names & {m.split(".")[0] for m in sys.modules}


# the Ray tests need the optional extra (pip install 'circuit-bench[ray]'); looked up, not imported
ray_missing = importlib.util.find_spec("ray") is None


@pytest.mark.slow
@pytest.mark.skipif(ray_missing, reason="ray is not installed (optional extra: pip install 'circuit-bench[ray]')")
def test_ray_executor_runs_the_same_jobs_on_a_local_instance(tmp_path, capsys, monkeypatch, fake_wandb):
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    local, remote = tmp_path / "local", tmp_path / "ray"
    base = ["benchmark", "--cases", "toy", "--methods", "random", "eap", "-n", "8", "--json"]
    assert main(base + ["--out", str(local)]) == 0
    capsys.readouterr()
    assert main(base + ["--out", str(remote), "--executor", "ray", "--wandb-project", "p"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["method"] for r in doc["results"]] == ["random", "eap"]  # job order, whatever finished first
    assert not ray.is_initialized()  # the instance it started is shut down
    by_local = {d["run_id"]: d for _, d in iter_results(local)}
    by_ray = {d["run_id"]: d for _, d in iter_results(remote)}
    assert set(by_local) == set(by_ray)  # same jobs, same ids
    for rid, d in by_ray.items():
        assert d["status"] == "ok"
        assert d["roc"]["edges"]["auroc"] == pytest.approx(by_local[rid]["roc"]["edges"]["auroc"])
        assert d["scores"] == by_local[rid]["scores"]
    assert {r.kwargs["config"]["method"] for r in fake_wandb.runs} == {"random", "eap"}  # logged by the driver

    # --resume on Ray skips finished jobs too
    capsys.readouterr()
    assert main(base + ["--out", str(remote), "--executor", "ray", "--resume"]) == 0
    assert all(r["skipped"] for r in json.loads(capsys.readouterr().out)["results"])
