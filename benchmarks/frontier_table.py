"""Per-model summary of a results directory: every method (with its ablation) on the cases it ran.

    python benchmarks/frontier_table.py /work/frontier_results [--cases 1 2 3 ...] [--score-floor 1e-6]

One row per (model kind, method, ablation): cases, mean edge AUROC, mean node AUROC (heads and MLPs
only: input/pos/logits left out), cases at edge AUROC 1.0, mean and total method seconds (the
method's own time, ``timing.method_seconds``; setup excluded). Only ``ok`` results are counted; a
method's rows cover the cases it finished, so compare rows over the same ``cases``.
``--score-floor R`` adds the edge AUROC with every |score| <= R * (the run's largest) tied with the zeros
(``benchmarks/auroc_table.py``'s float-dust check; sweep ROCs unchanged).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict

from core.results import iter_results  # noqa: E402
from evaluations.roc import floored_edge_roc as floored_roc  # noqa: E402


def _mean(xs):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return sum(xs) / len(xs) if xs else math.nan


def rows(out: str, cases: set[str] | None = None, floor: float | None = None) -> list[dict]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for _, doc in iter_results(out):
        if doc.get("status") != "ok" or (cases and str(doc["case"]) not in cases):
            continue
        groups[(doc["model"], doc["method"], (doc.get("data") or {}).get("ablation", "corrupted"))].append(doc)
    table = []
    for (model, method, ablation), docs in sorted(groups.items()):
        edge = [(d["roc"].get("edges") or {}).get("auroc") for d in docs]
        node = [(d["roc"].get("nodes_no_endpoints") or {}).get("auroc") for d in docs]
        floored = [floored_roc(d, floor).auroc if floor is not None and d["roc"]["edges"].get("source") == "scores"
                   else (d["roc"].get("edges") or {}).get("auroc") for d in docs]
        secs = [(d.get("timing") or {}).get("method_seconds") or 0.0 for d in docs]
        table.append({"model": model, "method": method, "ablation": ablation, "cases": len(docs),
                      "edge_auroc": _mean(edge), "node_auroc": _mean(node), "floored": _mean(floored),
                      "at_1": sum(1 for e in edge if e is not None and e >= 1 - 1e-12),
                      "mean_s": _mean(secs), "total_s": sum(secs)})
    return table


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--cases", nargs="+", default=None)
    p.add_argument("--score-floor", type=float, default=None, metavar="R")
    args = p.parse_args(argv)
    fl = args.score_floor
    print("| model | method | ablation | cases | mean edge AUROC | " + (f"floored {fl:g} | " if fl else "")
          + "mean node AUROC (no endpoints) | cases at 1.0 | mean s/job | total s |")
    print("|---|---|---|---|---|" + ("---|" if fl else "") + "---|---|---|---|")
    for r in rows(args.out, set(args.cases) if args.cases else None, fl):
        print(f"| {r['model']} | {r['method']} | {r['ablation']} | {r['cases']} | {r['edge_auroc']:.3f} | "
              + (f"{r['floored']:.3f} | " if fl else "")
              + f"{r['node_auroc']:.3f} | {r['at_1']} | {r['mean_s']:.2f} | {r['total_s']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
