"""Ground-truth node realism (InterpBench's "circuit score") of each model kind of the SIIT paper set.

    python benchmarks/siit_realism.py [--cases 3 4 ...] [--models tracr siit iit natural]
                                      [--ablations zero mean] [-n 200]

For every case and model kind: keep the ground-truth heads and MLPs, ablate every other one (zero or
per-position mean), and report the fraction of the positions the full model gets right that stay right
(``evaluations.realism.gt_node_realism``). A model that implements its ground truth keeps ~1.0; the
natural baseline was never told which nodes to use. Prints a Markdown table; a missing model is ``-``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys

from benchmark.runner import Job, build_problem
from cases import get_case
from evaluations.realism import gt_node_realism

PAPER_SET = ("3", "4", "11", "13", "18", "19", "20", "21", "26", "29", "33", "34", "35", "36", "37")


def realism(case_id: str, model: str, ablations: list[str], n: int, seed: int = 0) -> dict[str, float] | None:
    """Ground-truth realism under each ablation; the model and data are built once for all of them."""
    from dataclasses import replace

    case = get_case(case_id)
    if model not in case.models:
        return None
    job = Job(case=str(case.id), method="none", model=model, seed=seed, n=n, ablation=ablations[0])
    with contextlib.redirect_stdout(io.StringIO()):  # TransformerLens prints "Moving model to device"
        problem = build_problem(job, case, model)
    truth = case.ground_truth(model)
    return {a: gt_node_realism(replace(problem, ablation=a).engine(), truth).score for a in ablations}


def main(argv=None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=list(PAPER_SET))
    ap.add_argument("--models", nargs="+", default=["tracr", "siit", "iit", "natural"])
    ap.add_argument("--ablations", nargs="+", default=["zero", "mean"], choices=["zero", "mean", "corrupted"])
    ap.add_argument("-n", type=int, default=200)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cols = [(m, a) for a in args.ablations for m in args.models]
    print("| case | " + " | ".join(f"{m} ({a})" for m, a in cols) + " |")
    print("|---|" + "---|" * len(cols))
    sums = {c: [] for c in cols}
    for cid in args.cases:
        by_model = {m: realism(cid, m, args.ablations, args.n) for m in args.models}
        cells = []
        for m, a in cols:
            v = None if by_model[m] is None else by_model[m][a]
            cells.append("-" if v is None else f"{v:.3f}")
            if v is not None:
                sums[(m, a)].append(v)
        print(f"| {cid} | " + " | ".join(cells) + " |", flush=True)
    print("| mean | " + " | ".join(f"{sum(v) / len(v):.3f}" if v else "-" for v in sums.values()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
