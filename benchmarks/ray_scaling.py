"""Wall time of a benchmark in one process vs on a local multi-node Ray cluster, and the projection to N nodes.

    python benchmarks/ray_scaling.py --nodes 2 --cases 1 2 3 --methods eap eap-ig random acdc [--out DIR]
    python benchmarks/ray_scaling.py --project-only DIR     # projection from a finished results directory
    python benchmarks/ray_scaling.py --compare-only DIR/single DIR/ray   # the two result sets, by run id

Starts a Ray cluster on this machine (a head with no CPUs and ``--nodes`` worker nodes of one CPU each,
``ray.cluster_utils.Cluster``), runs the same ``main.py benchmark`` command once single-process and once
through ``--ray-address``, and prints both wall times with the load average. Then, from the per-case job
times of the single-process run (the sum of ``timing.seconds`` of a case's jobs: one Ray task per case),
the expected wall time on N nodes: the makespan of a longest-first schedule of the case totals, bounded
below by the longest case (named), plus nothing for start-up (measured separately as the difference
between the measured 2-node wall time and its projection).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from core.results import iter_results  # noqa: E402


def case_totals(out: Path) -> dict[str, float]:
    totals: dict[str, float] = {}
    for _, doc in iter_results(out):
        key = f"{doc.get('case')}/{doc.get('model')}"
        totals[key] = totals.get(key, 0.0) + float((doc.get("timing") or {}).get("seconds") or 0.0)
    return totals


def compare(a: Path, b: Path) -> str:
    """The two runs' result sets compared by run id: the same ids, and the largest differences of edge
    scores and edge/node AUROCs between runs of one id (0.0 when the executors agree bit for bit)."""
    def load(out: Path) -> dict:
        return {(str(d.get("case")), str(d.get("method")), d.get("run_id")): d for _, d in iter_results(out)}

    x, y = load(a), load(b)
    auc = score = 0.0
    failed = sum(d.get("status") != "ok" for d in (*x.values(), *y.values()))
    for key in set(x) & set(y):
        for level in ("edges", "nodes"):
            u, v = (((d.get("roc") or {}).get(level) or {}).get("auroc") for d in (x[key], y[key]))
            if isinstance(u, float) and isinstance(v, float) and u == u and v == v:
                auc = max(auc, abs(u - v))
        su, sv = (((d.get("scores") or {}).get("edges") or {}) for d in (x[key], y[key]))
        score = max([score, *(abs(su[e] - sv[e]) for e in su if su[e] is not None and sv.get(e) is not None)])
    return (f"{len(x)} and {len(y)} runs, the same run ids: {set(x) == set(y)}, {failed} not ok; max |edge score "
            f"difference| {score:g}, max |AUROC difference| {auc:g}")


def makespan(totals: list[float], nodes: int) -> float:
    """Longest-processing-time-first schedule of ``totals`` on ``nodes`` identical workers."""
    loads = [0.0] * nodes
    for t in sorted(totals, reverse=True):
        i = loads.index(min(loads))
        loads[i] += t
    return max(loads)


def projection(totals: dict[str, float], nodes=(1, 2, 4, 8, 16, 32, 64)) -> str:
    longest = max(totals, key=totals.get)
    lines = [f"{len(totals)} case tasks, {sum(totals.values()):.0f} s of jobs in all; the longest case task is "
             f"{longest} ({totals[longest]:.0f} s), a floor on the wall time with one task per case "
             "(--ray-split spreads its jobs)",
             "| nodes | projected wall s | speed-up |", "|---|---|---|"]
    one = makespan(list(totals.values()), 1)
    for n in nodes:
        m = makespan(list(totals.values()), n)
        lines.append(f"| {n} | {m:.0f} | {one / m:.2f}x |")
    return "\n".join(lines)


def bench(args: list[str], out: Path) -> tuple[float, str]:
    """Wall seconds of one ``main.py benchmark`` run and the load average seen during it (sampled each 30 s)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    loads, t = [os.getloadavg()[0]], time.perf_counter()
    proc = subprocess.Popen([sys.executable, "main.py", "benchmark", *args, "--out", str(out)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL)
    while True:
        try:
            rc = proc.wait(timeout=30)
            break
        except subprocess.TimeoutExpired:
            loads.append(os.getloadavg()[0])
    if rc:
        raise subprocess.CalledProcessError(rc, proc.args)
    wall = time.perf_counter() - t
    return wall, f"load average (1 min) during it: mean {sum(loads) / len(loads):.2f}, max {max(loads):.2f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--cases", nargs="+", default=None)
    ap.add_argument("--methods", nargs="+", default=["eap", "eap-ig", "random", "acdc"])
    ap.add_argument("-n", type=int, default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--project-only", default=None, metavar="DIR")
    ap.add_argument("--compare-only", nargs=2, default=None, metavar=("SINGLE", "RAY"),
                    help="compare two finished result sets by run id (scores, AUROCs)")
    a = ap.parse_args(argv)
    if a.compare_only:
        print(compare(Path(a.compare_only[0]), Path(a.compare_only[1])))
        return 0
    if a.project_only:
        print(projection(case_totals(Path(a.project_only))))
        return 0
    from ray.cluster_utils import Cluster

    out = Path(a.out or tempfile.mkdtemp(prefix="ray_scaling_"))
    common = ["--methods", *a.methods] + (["--cases", *a.cases] if a.cases else []) + (["-n", str(a.n)] if a.n else [])
    print(f"load average before: {os.getloadavg()}", flush=True)
    single, load = bench(common, out / "single")
    print(f"single process: {single:.1f} s wall; {load}", flush=True)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(a.nodes):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        on_ray, load = bench(common + ["--executor", "ray", "--ray-address", cluster.address], out / "ray")
        print(f"{a.nodes}-node Ray cluster: {on_ray:.1f} s wall; {load}", flush=True)
    finally:
        cluster.shutdown()
    totals = case_totals(out / "single")
    print(f"single process: {single:.1f} s wall; {a.nodes}-node Ray cluster: {on_ray:.1f} s wall "
          f"({single / on_ray:.2f}x); load average after: {os.getloadavg()}")
    print(f"projected for {a.nodes} nodes from the per-case times: {makespan(list(totals.values()), a.nodes):.1f} s")
    print("single vs Ray results: " + compare(out / "single", out / "ray"))
    print(projection(totals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
