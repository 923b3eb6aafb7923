"""``benchmark --executor ray --ray-address`` on a real multi-node Ray cluster on this machine (a head
and two worker nodes): a lost worker node, a driver killed with SIGKILL and resumed. Slow: a cluster
takes ~10-20 s to start and each driver run ships the project to its workers."""

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.results import iter_results

ROOT = Path(__file__).resolve().parents[2]
ray_missing = importlib.util.find_spec("ray") is None
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(ray_missing, reason="ray is not installed (optional extra: pip install "
                                                     "'circuit-bench[ray]')")]

SLOW = "tests.plugin_methods:Slow"
BENCH = ["benchmark", "--cases", "toy", "3", "--methods", "eap", "random", SLOW, "-n", "16", "--json"]
NODE = {"num_cpus": 1, "object_store_memory": 80 * 2**20}


@pytest.fixture(scope="module")
def markers(tmp_path_factory):
    d = tmp_path_factory.mktemp("markers")
    os.environ["CIRCUIT_BENCH_TEST_MARKERS"] = str(d)  # inherited by the cluster's processes
    yield d
    os.environ.pop("CIRCUIT_BENCH_TEST_MARKERS", None)


@contextlib.contextmanager
def outside_checkout(cwd):
    """Start cluster processes in ``cwd`` without PYTHONPATH: they inherit both."""
    old, pythonpath = os.getcwd(), os.environ.pop("PYTHONPATH", None)
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(old)
        if pythonpath is not None:
            os.environ["PYTHONPATH"] = pythonpath


@pytest.fixture(scope="module")
def cluster(markers, tmp_path_factory):
    """Nodes that know nothing of this checkout: started outside it, without PYTHONPATH (as on remote
    machines; the code must come through the runtime environment)."""
    from ray.cluster_utils import Cluster

    with outside_checkout(tmp_path_factory.mktemp("nodes")):
        c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": 80 * 2**20})
        nodes = [c.add_node(**NODE), c.add_node(**NODE)]
        c.wait_for_nodes()
    yield c, nodes
    c.shutdown()


def driver(args, out, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    env.pop("CIRCUIT_BENCH_TEST_MARKERS", None)  # only the cluster's workers drop markers
    return subprocess.Popen([sys.executable, "main.py", *args, "--out", str(out)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def by_run(out):
    return {d["run_id"]: d for _, d in iter_results(out)}


@pytest.fixture(scope="module")
def local_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    p = driver(BENCH, out)
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 0, stderr
    return by_run(out)


def wait_for(predicate, timeout, what):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def same_results(got, want):
    assert set(got) == set(want)  # every job exactly once (one result per run id, nothing extra)
    for rid, doc in got.items():
        assert doc["status"] == "ok", doc.get("error")
        assert doc["scores"] == want[rid]["scores"]
        assert doc["roc"]["edges"]["auroc"] == pytest.approx(want[rid]["roc"]["edges"]["auroc"])


def test_a_lost_worker_node_has_its_jobs_retried_elsewhere(cluster, markers, local_results, tmp_path):
    c, nodes = cluster
    out = tmp_path / "out"
    before = set(tmp_path.rglob("*"))
    p = driver(BENCH + ["--executor", "ray", "--ray-address", c.address], out)
    # the slow method drops a marker naming its node as it starts: kill the node that runs it
    wait_for(lambda: any(markers.iterdir()), 240, "a slow job to start")
    node_id, core_file = next(markers.iterdir()).read_text().splitlines()
    # the workers run the code shipped through the runtime environment, not the driver's checkout
    assert not Path(core_file).resolve().is_relative_to(ROOT), core_file
    victim = next(n for n in nodes if n.node_id == node_id)
    c.remove_node(victim, allow_graceful=False)
    stdout, stderr = p.communicate(timeout=400)
    assert p.returncode == 0, stderr
    assert "retried" in stderr and "retry 1/2" in stderr, stderr
    summary = json.loads(stdout)
    assert summary["jobs"] == 6 and summary["failed"] == 0
    files = list(out.rglob("result.json"))
    assert len(files) == 6
    same_results(by_run(out), local_results)
    # nothing written outside --out (the driver is the only writer; its cwd is the repo)
    assert {p for p in set(tmp_path.rglob("*")) - before if out not in p.parents and p != out} == set()
    nodes.remove(victim)
    with outside_checkout(tmp_path):
        nodes.append(c.add_node(**NODE))  # back to two workers for the next test
        c.wait_for_nodes()


def test_driver_killed_mid_sweep_then_resume_gives_the_same_results(cluster, markers, local_results, tmp_path):
    c, _ = cluster
    out = tmp_path / "out"
    for f in markers.iterdir():
        f.unlink()
    args = BENCH + ["--executor", "ray", "--ray-address", c.address, "--ray-split"]
    p = driver(args, out, start_new_session=True)
    wait_for(lambda: len(list(out.rglob("result.json"))) >= 2, 300, "the first results")
    os.killpg(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    time.sleep(8)  # workers never write: nothing appears after the driver is gone
    written = {f: f.stat().st_mtime_ns for f in out.rglob("result.json")}
    assert 2 <= len(written) < 6
    time.sleep(4)
    assert {f: f.stat().st_mtime_ns for f in out.rglob("result.json")} == written
    p = driver(args + ["--resume"], out)
    stdout, stderr = p.communicate(timeout=400)
    assert p.returncode == 0, stderr
    assert f"{len(written)} of 6 jobs already finished" in stderr
    assert {f: f.stat().st_mtime_ns for f in written} == written  # finished results not rewritten
    assert len(list(out.rglob("result.json"))) == 6
    same_results(by_run(out), local_results)
