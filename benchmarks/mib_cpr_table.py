"""MIB's CPR / CMD (``eval faithfulness --policy mib``'s protocol) for every result of a directory, one
problem per (case, model): the same numbers as the command, without rebuilding the model per result.

    python benchmarks/mib_cpr_table.py RESULTS_DIR [--cases ...] [--model siit] [--methods ...]

Prints one row per method: cases, mean CPR (signed scores), mean CMD (absolute scores), and the
per-case values as JSON on stderr-free stdout after the table with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

from benchmark.mib import mib_faithfulness
from benchmark.runner import build_problem, job_from_result
from cases import get_case
from core.results import iter_results  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--cases", nargs="+", default=None)
    ap.add_argument("--model", default=None)
    ap.add_argument("--methods", nargs="+", default=None)
    ap.add_argument("--json", default=None, help="also write the per-result values to this file")
    args = ap.parse_args(argv)

    groups = defaultdict(list)
    for path, doc in iter_results(args.out):
        if doc.get("status") != "ok" or not (doc.get("scores") or {}).get("edges"):
            continue
        if (args.cases and str(doc["case"]) not in args.cases) or (args.model and doc["model"] != args.model) \
                or (args.methods and doc["method"] not in args.methods):
            continue
        job = job_from_result(doc)
        groups[(job.case, doc["model"], job.n, job.seed, job.ablation)].append((path, doc))
    per = []
    t0 = time.perf_counter()
    for (case, model, n, seed, ablation), items in sorted(groups.items()):
        job = job_from_result(items[0][1])
        problem = build_problem(job, get_case(case), model)
        for path, doc in items:
            res = mib_faithfulness(problem.engine(), problem.graph, doc)
            per.append({"case": case, "model": model, "method": doc["method"], "ablation": ablation,
                        "cpr": res["cpr"], "cmd": res["cmd"], "metric": res["metric"], "selection": res["selection"],
                        "result": str(path)})
        print(f"# case {case} ({model}, {ablation}): {len(items)} results, {time.perf_counter() - t0:.0f} s",
              file=sys.stderr, flush=True)
    rows = defaultdict(list)
    for r in per:
        rows[(r["model"], r["method"], r["ablation"])].append(r)
    print("| model | method | ablation | cases | mean CPR (signed) | mean CMD (absolute) | metric |")
    print("|---|---|---|---|---|---|---|")
    for (model, method, ablation), rs in sorted(rows.items()):
        cpr = [r["cpr"] for r in rs if r["cpr"] is not None and not math.isnan(r["cpr"])]
        cmd = [r["cmd"] for r in rs if r["cmd"] is not None and not math.isnan(r["cmd"])]
        metrics = sorted({r["metric"] for r in rs})
        print(f"| {model} | {method} | {ablation} | {len(rs)} | {sum(cpr) / len(cpr) if cpr else math.nan:.3f} | "
              f"{sum(cmd) / len(cmd) if cmd else math.nan:.3f} | {', '.join(metrics)} |")
    if args.json:
        Path(args.json).write_text(json.dumps(per, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
