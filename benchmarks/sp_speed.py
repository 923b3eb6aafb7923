"""Subnetwork Probing: lambdas trained one at a time vs together in one batched pass.

    OMP_NUM_THREADS=1 python benchmarks/sp_speed.py --cases 3 4 21 --edgewise

Prints one row per case: edges, seconds one-at-a-time (lambda_batch=1) and batched (all lambdas in
one pass), the speed-up, and whether both give the same circuits.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from benchmark.defaults import sweep_params  # noqa: E402
from benchmark.runner import DEFAULT_N, Job, build_problem  # noqa: E402
from cases import get_case  # noqa: E402
from methods.sp import SubnetworkProbing  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", nargs="+", default=["3", "4", "21"])
    ap.add_argument("--model", default=None)
    ap.add_argument("--edgewise", action="store_true")
    ap.add_argument("-n", type=int, default=DEFAULT_N)
    args = ap.parse_args()
    torch.set_num_threads(1)
    params = sweep_params("sp")
    lams = params["lambdas"] if not args.edgewise else [0.001, 0.002, 0.004, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1]
    print("| case | edges | lambdas | one at a time s | batched s | speed-up | same circuits |")
    print("|---|---|---|---|---|---|---|")
    for cid in args.cases:
        job = Job(case=cid, method="sp", model=args.model, params={}, seed=0, n=args.n, ablation="corrupted",
                  metric="faithfulness", device="cpu", out="")
        case = get_case(cid)
        problem = build_problem(job, case, case.resolve_model(args.model))
        problem.engine()
        times, sweeps = [], []
        for batch in (1, 0):
            t = time.perf_counter()
            out = SubnetworkProbing(lambdas=lams, edgewise=args.edgewise, lambda_batch=batch).discover(problem)
            times.append(time.perf_counter() - t)
            sweeps.append([c.edges for _, c in out.sweep])
        print(f"| {cid} | {problem.graph.n_edges} | {len(lams)} | {times[0]:.1f} | {times[1]:.1f} | "
              f"{times[0] / times[1]:.1f}x | {sweeps[0] == sweeps[1]} |", flush=True)


if __name__ == "__main__":
    main()
