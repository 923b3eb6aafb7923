"""Seconds of each method's ``discover`` on the benchmark's own problems, and what it returned, so that
two checkouts can be timed against each other on the same cases (interleaved by the caller).

    OMP_NUM_THREADS=1 python benchmarks/method_speed.py --cases 3 5 81 --methods edge-pruning ugs sp \
        --epochs 20 --json /tmp/after.json [--compare /tmp/before.json]

Each (case, method) is run on the benchmark's problem (``benchmark.runner.build_problem``: n = 200,
seed 0, corrupted ablation, the benchmark's default sweep for the method); ``--epochs`` shortens the mask
trainers (SP, Edge Pruning, UGS) to that many epochs, so a row is "seconds per that many epochs", not
a whole run. The engine is built before the clock starts (its clean/ablated passes are not counted).
``--json`` writes the seconds, the edge scores and the sweep's circuits; ``--compare`` reads another
run's file and prints, per row, the speed ratio, the largest score difference and whether every sweep
circuit is the same. Measured, never asserted on.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

from benchmark.defaults import sweep_params
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
    for name in methods:
        params = dict(sweep_params(name))
        if epochs is not None and name in TRAINERS:
            params["epochs"] = epochs
        method = get_method(name, **params)
        t = time.perf_counter()
        out = method.discover(problem)
        seconds = time.perf_counter() - t
        rows.append({"case": case_id, "method": name, "edges": problem.graph.n_edges, "seconds": seconds,
                     "scores": [float(out.edge_scores[e]) for e in problem.graph.edges],
                     "sweep": [sorted(c.edges) for _, c in (out.sweep or [])]})
        print(f"{case_id:>6} {name:>14} {problem.graph.n_edges:>6} edges {seconds:9.2f} s", flush=True)
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
        print("| case | edges | method | other s | this s | this / other | max score diff | same circuits |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            o = other.get((r["case"], r["method"]))
            if o is None:
                continue
            diff = max((abs(a - b) for a, b in zip(r["scores"], o["scores"])), default=0.0)
            print(f"| {r['case']} | {r['edges']} | {r['method']} | {o['seconds']:.2f} | {r['seconds']:.2f} | "
                  f"{r['seconds'] / o['seconds']:.2f} | {diff:.1e} | {r['sweep'] == o['sweep']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
