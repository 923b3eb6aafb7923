"""Edge-AUROC table (case x method) from a results directory, as Markdown, with InterpBench's numbers.

    python benchmarks/auroc_table.py results/ [--model tracr] [--pessimistic] [--score-floor 1e-6] [--summary]

``--score-floor R`` recomputes score-based AUROCs with every |score| <= R * (the run's largest |score|)
set to 0, so that edges whose scores are float dust (gradients of 1e-10 through saturated tracr MLPs)
tie with the exact zeros instead of ranking above them. Sweep-based ROCs are unchanged.
``--summary`` prints one row per method (cases, mean, cases at 1.0) instead of the case table.
"""

from __future__ import annotations

import argparse
import sys

from core.results import RunResult, iter_run_results
from evaluations.roc import floored_edge_roc

# InterpBench paper, edge AUROC on its SIIT models (../shared/reference/interpbench.md §6.6)
PAPER = {  # case: (ACDC, node SP, edge SP, EAP, EAP-IG)
    "3": (.980, .934, 1.0, .990, .990), "4": (.983, .900, .983, .792, .908), "11": (1.0, .927, 1.0, 0, 1.0),
    "13": (.979, .851, .979, .936, .986), "18": (.979, .596, .887, .326, .979), "19": (.940, .900, .860, 0, .900),
    "20": (.922, .725, .529, 0, .725), "21": (.796, .706, .716, .594, .722), "26": (1.0, .961, 1.0, 0, .980),
    "29": (.441, .176, .451, 0, .412), "33": (.794, .853, .824, 0, .912), "34": (.441, .157, .314, 0, .471),
    "35": (1.0, .971, 1.0, 0, 1.0), "36": (.922, .804, .882, 0, .873), "37": (1.0, .971, 1.0, 0, 1.0),
}


def label(r: RunResult) -> str:
    p = r.params
    if r.method == "sp":
        return "edge SP" if p.get("edgewise") else "node SP"
    if r.method == "eap-ig":
        return f"EAP-IG {p.get('ig_variant', 'inputs')}"
    return {"acdc": "ACDC", "eap": "EAP", "exact": "exact", "random": "random"}.get(r.method, r.method)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--model", default=None)
    ap.add_argument("--pessimistic", action="store_true", help="InterpBench's staircase AUC instead of the trapezoid")
    ap.add_argument("--score-floor", type=float, default=None, metavar="R",
                    help="treat |score| <= R * max |score| as 0 (relative), recomputing score-based AUROCs")
    ap.add_argument("--summary", action="store_true", help="one row per method instead of the case table")
    args = ap.parse_args(argv)
    key = "pessimistic_auc" if args.pessimistic else "auroc"
    table: dict[str, dict[str, float]] = {}
    for _, r in iter_run_results(args.out):
        if not r.ok or (args.model and r.model != args.model):
            continue
        roc = r.roc_level("edges")
        v = roc.get(key)
        if args.score_floor is not None and roc.get("source") == "scores":
            v = getattr(floored_edge_roc(r.to_json(), args.score_floor), key)
        table.setdefault(str(r.case), {})[label(r)] = v
    order = ["ACDC", "node SP", "edge SP", "EAP", "EAP-IG inputs", "EAP-IG activations", "EAP-IG clean-corrupted",
             "exact", "random"]
    cols = [c for c in order if any(c in row for row in table.values())]
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    if args.summary:
        print("| method | cases | mean | cases at 1.0 | cases < 0.9 |")
        print("|---|---|---|---|---|")
        for c in cols:
            v = [row[c] for row in table.values() if row.get(c) is not None and row[c] == row[c]]
            print(f"| {c} | {len(v)} | {fmt(sum(v) / len(v)) if v else '-'} | {sum(x >= 1 - 1e-12 for x in v)} "
                  f"| {sum(x < 0.9 for x in v)} |")
        return 0
    print("| case | " + " | ".join(cols) + " | paper ACDC / nSP / eSP / EAP / EAP-IG |")
    print("|---|" + "---|" * (len(cols) + 1))
    for case in sorted(table, key=lambda c: (not c.isdigit(), int(c) if c.isdigit() else 0, c)):
        paper = " / ".join(f"{x:.3f}".rstrip("0").rstrip(".") if x else "0" for x in PAPER[case]) if case in PAPER else ""
        print(f"| {case} | " + " | ".join(fmt(table[case].get(c)) for c in cols) + f" | {paper} |")
    means = {c: [table[k][c] for k in table if table[k].get(c) is not None] for c in cols}
    print("| mean | " + " | ".join(fmt(sum(v) / len(v)) if v else "-" for v in means.values()) + " | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
