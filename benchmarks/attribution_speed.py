"""Wall-clock time of the attribution methods (EAP, EAP-IG variants, exact patching) per case.

    OMP_NUM_THREADS=1 python benchmarks/attribution_speed.py [--cases toy 3 4] [--n 100] [--repeat 3]

Prints one row per (case, method): edges, the best of ``--repeat`` timings of ``discover`` (the
patching engine's clean/corrupted caching is included: a fresh Problem per run), the edge AUROC
against the case's ground truth and the Pearson correlation of the signed scores with exact
patching's (``exact`` runs first), for orientation. Measured, never asserted on.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from cases import case_ids, get_case
from core.graph import Graph
from core.protocols import Problem
from methods import get_method

METHODS = [
    ("exact", {}),
    ("exact", {"restart": False}),  # every patched run from the embeddings (before the restart trick)
    ("eap", {}),
    ("eap-ig", {"ig_variant": "inputs", "integrated_grad_steps": 5}),
    ("eap-ig", {"ig_variant": "activations", "integrated_grad_steps": 5}),
    ("eap-ig", {"ig_variant": "clean-corrupted"}),
]


def default_cases() -> list[str]:
    tracr = case_ids("tracr")
    return ["toy"] + [c for c in ("3", "4", "11", "18") if c in tracr]


def auroc(truth, scores) -> float:
    from sklearn.metrics import roc_auc_score

    if truth.min() == truth.max():
        return float("nan")
    return float(roc_auc_score(truth, scores))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="*", default=None, help="case ids (default: toy and a few Tracr cases)")
    p.add_argument("--n", type=int, default=100, help="dataset size")
    p.add_argument("--repeat", type=int, default=3, help="timings per method; the best is shown")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    rows = []
    for cid in args.cases or default_cases():
        case = get_case(cid)
        model = case.load_model()
        data = case.dataset(args.n, seed=args.seed)
        graph = Graph.from_model(model)
        truth = graph.mask_for(case.ground_truth()).numpy()
        for name, params in METHODS:
            label = name + (f"[{params['ig_variant']}]" if "ig_variant" in params else "")
            label += "[no restart]" if params.get("restart") is False else ""
            times, out = [], None
            for _ in range(args.repeat):
                problem = Problem(model, graph, data, case.output_type, seed=args.seed, case_id=str(cid))
                method = get_method(name, **params)
                t0 = time.perf_counter()
                out = method.discover(problem)
                times.append(time.perf_counter() - t0)
            scores = [out.edge_scores[e] for e in graph.edges]
            signed = np.array([out.signed_edges[e] for e in graph.edges])
            if name == "exact" and params.get("restart", True):
                exact = signed
            r = float(np.corrcoef(signed, exact)[0, 1]) if signed.std() > 0 and exact.std() > 0 else float("nan")
            rows.append((str(cid), label, graph.n_edges, len(data), min(times), auroc(truth, scores), r,
                         out.info.get("attribution_metric", "")))
            print(f"  {cid:>5} {label:<28} {min(times):8.3f}s", file=sys.stderr)

    head = f"{'case':>5}  {'method':<28} {'edges':>6} {'n':>5} {'seconds':>9} {'AUROC':>6} {'r(exact)':>8}  metric"
    print(head)
    print("-" * len(head))
    for cid, label, E, n, sec, auc, r, metric in rows:
        print(f"{cid:>5}  {label:<28} {E:>6} {n:>5} {sec:>9.4f} {auc:>6.3f} {r:>8.3f}  {metric}")
    print(f"\ntorch {torch.__version__}, threads {torch.get_num_threads()}, best of {args.repeat}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
