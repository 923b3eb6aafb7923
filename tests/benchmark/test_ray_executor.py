"""The Ray executor's pieces that need no cluster: addresses, the runtime environment, flag checks,
and the runner's write-nothing mode that workers use (the cluster itself: tests/benchmark/test_ray_cluster.py)."""

import importlib.util
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.executors import plugin_packages, requirements, resolve_address, runtime_env
from benchmark.runner import Job, compute_jobs, run_job
from core.results import load_result

ROOT = Path(__file__).resolve().parents[2]


def test_address_flag_wins_over_the_environment_and_none_means_local(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert resolve_address(None) is None
    monkeypatch.setenv("RAY_ADDRESS", "10.1.2.3:6379")
    assert resolve_address(None) == "10.1.2.3:6379"
    assert resolve_address("auto") == "auto"


def test_runtime_env_ships_the_project_and_plugin_packages():
    assert plugin_packages(["eap", "tests.plugin_methods:Slow", "core.x:Y", "tests.other:Z"]) == ["tests"]
    env = runtime_env(["tests"])
    shipped = [Path(m) for m in env["py_modules"]]
    assert shipped == [ROOT / p for p in ("core", "cases", "methods", "evaluations", "benchmark", "tests")]
    # the shipped models and the compiled Tracr cache travel inside cases/
    assert (shipped[1] / "siit" / "models").is_dir() and (shipped[1] / "tracr" / "cache").is_dir()
    assert "pip" not in env
    pip = runtime_env(pip=True)["pip"]["packages"]
    assert pip == requirements() and any(r.startswith("torch") for r in pip)
    assert not any("pytest" in r or "ray" in r for r in pip)  # extras stay out


@pytest.mark.parametrize("flags,needle", [
    (["--ray-address", "auto"], "--ray-address needs --executor ray"),
    (["--ray-split", "--ray-pip"], "--ray-split --ray-pip needs --executor ray"),
    (["--executor", "ray", "--ray-retries", "-1"], "--ray-retries must be at least 0"),
])
def test_ray_flags_are_checked_before_any_work(flags, needle, tmp_path, capsys):
    assert main(["benchmark", "--cases", "toy", "--methods", "random", "--out", str(tmp_path)] + flags) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err
    assert not list(tmp_path.rglob("result.json"))


def test_workers_compute_without_writing_and_the_document_says_where_it_goes(tmp_path):
    jobs = [Job(case="toy", method=m, n=8, out=str(tmp_path)) for m in ("random", "eap")]
    docs = compute_jobs(jobs)
    assert not list(tmp_path.rglob("result.json"))  # nothing written
    assert [d["status"] for d in docs] == ["ok", "ok"]
    assert docs[1]["timing"]["problem_reused"] is True  # one case's jobs share its activations
    written = run_job(jobs[0])
    assert written["path"] == docs[0]["path"]
    assert load_result(written["path"])["scores"] == docs[0]["scores"]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed (optional extra)")
def test_a_sigkilled_driver_takes_its_local_ray_instance_with_it(tmp_path):
    """The local instance's raylet, GCS, agents and workers do not outlive a driver killed with SIGKILL,
    and nothing is written after it died (only the driver writes)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    p = subprocess.Popen([sys.executable, "main.py", "benchmark", "--cases", "toy", "3", "--methods", "eap",
                          "tests.plugin_methods:Slow", "--executor", "ray", "--workers", "2", "--out", str(out)],
                         cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)

    def session():
        pids = []
        for d in os.listdir("/proc"):
            if d.isdigit() and int(d) != p.pid:
                try:
                    if os.getsid(int(d)) == p.pid:
                        pids.append(int(d))
                except OSError:
                    pass
        return pids

    t0 = time.time()
    while not any("ray::" in open(f"/proc/{q}/cmdline").read().replace("\0", " ") for q in session()
                  if os.path.exists(f"/proc/{q}/cmdline")):
        assert time.time() - t0 < 240 and p.poll() is None, "the Ray workers never started"
        time.sleep(0.5)
    time.sleep(2)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    deadline = time.time() + 20
    while session() and time.time() < deadline:
        time.sleep(0.5)
    assert session() == [], "processes of the killed driver survive"
    written = sorted(out.rglob("result.json"))
    time.sleep(3)
    assert sorted(out.rglob("result.json")) == written
