"""Wall-clock time of batched ACDC (``methods.acdc.ACDC``) against the one-pass-per-trial reference
(``NaiveACDC``), for one threshold and for a threshold sweep.

    OMP_NUM_THREADS=1 python benchmarks/acdc_speed.py [--cases toy 3] [--n 100] [--sweep 11] [--random 4 4]

Prints one row per (case, mode): edges, rows of data, seconds for each implementation (best of
``--repeat``; a fresh Problem per run, so the engine's caching is included), the speed-up, the
number of model passes each made, and whether both returned the same circuits. ``--random L H``
adds a random L-layer, H-head model (no ground truth) to show how the gap grows with the graph.
Measured, never asserted on.
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
from core.data import CaseData
from core.graph import Graph
from core.protocols import Problem
from methods.acdc import ACDC, NaiveACDC


def default_cases() -> list[str]:
    try:
        tracr = case_ids("tracr")
    except Exception:  # noqa: BLE001 -- the Tracr registry is optional
        tracr = []
    return ["toy"] + [c for c in ("3",) if c in tracr]


def random_setup(n_layers: int, n_heads: int, n: int, seed: int):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=n_layers, n_heads=n_heads, d_model=32, d_head=8, d_mlp=64, d_vocab=10, n_ctx=6,
        act_fn="gelu", normalization_type="LN", seed=seed, use_attn_result=True, use_split_qkv_input=True,
        use_hook_mlp_in=True, default_prepend_bos=False)
    model = HookedTransformer(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    clean, corr = torch.randint(0, 10, (2, n, 6), generator=g)
    zeros = torch.zeros(n, 6, dtype=torch.long)
    return model, CaseData(clean, corr, zeros, zeros, torch.ones(n, 6, dtype=torch.bool), seed), "categorical"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="*", default=None, help="case ids (default: toy and Tracr case 3 if present)")
    p.add_argument("--n", type=int, default=100, help="dataset size")
    p.add_argument("--sweep", type=int, default=11, help="number of taus in the sweep 10^linspace(-5, 0, k)")
    p.add_argument("--threshold", type=float, default=0.01, help="tau of the single-threshold row")
    p.add_argument("--random", nargs=2, type=int, metavar=("L", "H"), default=None)
    p.add_argument("--repeat", type=int, default=1, help="timings per implementation; the best is shown")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    setups = []
    for cid in args.cases if args.cases is not None else default_cases():
        case = get_case(cid)
        setups.append((str(cid), case.load_model(), case.dataset(args.n, seed=args.seed), case.output_type))
    if args.random:
        L, H = args.random
        setups.append((f"rand{L}x{H}", *random_setup(L, H, args.n, args.seed)))

    modes = [("tau=%g" % args.threshold, {"threshold": args.threshold}),
             (f"sweep x{args.sweep}", {"thresholds": [float(t) for t in np.logspace(-5, 0, args.sweep)]})]
    rows = []
    for cid, model, data, output_type in setups:
        graph = Graph.from_model(model)
        for label, params in modes:
            res = {}
            for impl in (NaiveACDC, ACDC):
                times = []
                for _ in range(args.repeat):
                    problem = Problem(model, graph, data, output_type, seed=args.seed, case_id=cid)
                    t0 = time.perf_counter()
                    out = impl(**params).discover(problem)
                    times.append(time.perf_counter() - t0)
                res[impl.__name__] = (min(times), out)
                print(f"  {cid:>8} {label:<10} {impl.__name__:<9} {min(times):8.2f}s", file=sys.stderr)
            (tn, on), (tb, ob) = res["NaiveACDC"], res["ACDC"]
            same = all(a == b for a, b in zip(on.sweep, ob.sweep))
            rows.append((cid, label, graph.n_edges, len(data), tn, tb, on.info["passes"], ob.info["passes"],
                         ob.info["trials"], same, len(ob.sweep[-1 if len(ob.sweep) == 1 else 0][1].edges)))

    head = (f"{'case':>8}  {'mode':<10} {'edges':>6} {'n':>4} {'naive s':>8} {'batched s':>9} {'speed-up':>8} "
            f"{'naive passes':>12} {'batched passes':>14} {'batched trials':>14}  same")
    print(head)
    print("-" * len(head))
    for cid, label, E, n, tn, tb, pn, pb, trials, same, _ in rows:
        print(f"{cid:>8}  {label:<10} {E:>6} {n:>4} {tn:>8.2f} {tb:>9.2f} {tn / tb:>7.1f}x "
              f"{pn:>12} {pb:>14} {trials:>14}  {same}")
    print(f"\ntorch {torch.__version__}, threads {torch.get_num_threads()}, best of {args.repeat}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
