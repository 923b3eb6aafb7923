"""Seconds of each method's ``discover`` on the benchmark's own problems, and what it returned, so that
two checkouts can be timed against each other on the same cases (interleaved by the caller).

    OMP_NUM_THREADS=1 python benchmarks/method_speed.py --cases 3 5 81 --methods edge-pruning ugs sp \
        'sp[edgewise=True]' --epochs 20 --json /tmp/after.json [--compare /tmp/before.json]

A method is a name or a variant ``NAME[key=value,...]`` (``benchmark --methods``' spelling). To time
another checkout with this script, put it first on the path: ``PYTHONPATH=/path/to/other python
benchmarks/method_speed.py ...`` runs the other tree's harness.

Each (case, method) is run on the benchmark's problem (``benchmark.runner.build_problem``: n = 200,
seed 0, corrupted ablation, the benchmark's default sweep for the method); ``--epochs`` shortens the mask
trainers (SP, Edge Pruning, UGS) to that many epochs, so a row is "seconds per that many epochs", not
a whole run. The engine is built before the clock starts (its clean/ablated passes are not counted).
``--json`` writes the seconds (wall and process CPU), the edge scores and the sweep's circuits;
``--compare`` reads another run's file and prints, per row, the CPU-time ratio (a loaded machine
stretches wall time, not CPU time), the largest score difference and whether every sweep circuit is
the same. Measured, never asserted on.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

from benchmark.defaults import sweep_params
from benchmark.methodflags import parse_method
from benchmark.runner import DEFAULT_N, Job, build_problem
from cases import get_case
from methods import get_method

TRAINERS = {"sp", "edge-pruning", "ugs"}


def run(case_id: str, model: str | None, methods: list[str], epochs: int | None, n: int) -> list[dict]:
    job = Job(case=case_id, method=methods[0], model=model, seed=0, n=n, out="")
    case = get_case(case_id)
    problem = build_problem(job, case, case.resolve_model(model))
    problem.engine()
    rows = []
    for spec in methods:
        name, given = parse_method(spec)
        params = {**sweep_params(name), **given}
        if epochs is not None and name in TRAINERS:
            params["epochs"] = epochs
        method = get_method(name, **params)
        t, c = time.perf_counter(), time.process_time()
        out = method.discover(problem)
        seconds, cpu = time.perf_counter() - t, time.process_time() - c
        rows.append({"case": case_id, "method": spec, "edges": problem.graph.n_edges, "seconds": seconds,
                     "cpu_seconds": cpu,
                     "scores": [float(out.edge_scores[e]) for e in problem.graph.edges],
                     "sweep": [sorted(c.edges) for _, c in (out.sweep or [])]})
        print(f"{case_id:>6} {spec:>18} {problem.graph.n_edges:>6} edges {seconds:9.2f} s  {cpu:9.2f} CPU s",
              flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="+", default=["3", "5", "81"])
    p.add_argument("--model", default=None, help="model kind (default: the case's default)")
    p.add_argument("--methods", nargs="+", default=["eap", "exact", "acdc", "sp", "edge-pruning", "ugs"])
    p.add_argument("--epochs", type=int, default=None, help="epochs of SP / Edge Pruning / UGS (default: theirs)")
    p.add_argument("-n", type=int, default=DEFAULT_N)
    p.add_argument("--json", default=None, help="write the rows here")
    p.add_argument("--compare", default=None, help="another run's --json file: print ratios and differences")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = [r for c in args.cases for r in run(c, args.model, args.methods, args.epochs, args.n)]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f)
    if args.compare:
        with open(args.compare) as f:
            other = {(r["case"], r["method"]): r for r in json.load(f)}
        print("| case | edges | method | other CPU s | this CPU s | this / other | max score diff | same circuits |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            o = other.get((r["case"], r["method"]))
            if o is None:
                continue
            diff = max((abs(a - b) for a, b in zip(r["scores"], o["scores"])), default=0.0)
            a, b = o.get("cpu_seconds", o["seconds"]), r.get("cpu_seconds", r["seconds"])
            print(f"| {r['case']} | {r['edges']} | {r['method']} | {a:.2f} | {b:.2f} | "
                  f"{b / a:.2f} | {diff:.1e} | {r['sweep'] == o['sweep']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
