"""Regenerate the shipped reference leaderboard (benchmark/reference/reference.jsonl.gz, issue 22).

    python benchmarks/make_reference.py --out reference_results --full --workers 2   # the shipped reference (about 5 h on 2 cores)
    python benchmarks/make_reference.py --out reference_results --workers 2          # SIIT, IOI, Tracr 3 4 12 only (about 2 h)
    python benchmarks/make_reference.py --out reference_results --quick        # a small subset (minutes)

Runs ``benchmark`` (resumable: ``--resume``, so an interrupted run continues) for each group below with
data seeds 0 1 2 and the default n, ablation and metric, then writes the reference from every finished
result under ``--out`` (``leaderboard --write-reference``), printing the wall time of each group, the
reference's size and that of the result files it replaces. Everything finished under ``--out`` goes in,
so use a directory of its own.

- shipped (default): every built-in method at its default settings (``benchmark``'s defaults eap,
  eap-ig, acdc, sp, plus exact and random, and the one-pass frontier methods ifr, nap, node-eap-ig,
  atp-star, atp-qk) and the other IG variants (EAP-IG activations and clean-corrupted, node EAP-IG
  activations) on every shipped SIIT model and IOI (``--model siit``) and on Tracr cases 3, 4, 12.
  Not in it: edge-level SP, Edge Pruning and UGS (``--training-methods``).
- full: the same on every non-trivial Tracr case. ``--training-methods`` adds Edge Pruning and UGS
  (mask training per sparsity target / lambda: minutes a job, so many hours over all cases).
- quick: EAP, EAP-IG (inputs), exact patching, ACDC and random on Tracr cases 3, 4, 12; EAP, EAP-IG
  (inputs) and random on every shipped SIIT model and on IOI.

A user then ranks a method against it without rerunning the baselines:

    python main.py benchmark --methods my_pkg.mod:MyMethod --cases 3 4 12 --seeds 0 1 2
    python main.py leaderboard --with-reference
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmark.cli import main as cli
from benchmark.defaults import default_cases
from core.results import iter_results

ROOT = Path(__file__).resolve().parents[1]

SEEDS = ["0", "1", "2"]
METHODS = ["eap", "eap-ig", "acdc", "sp", "exact", "random", "ifr", "nap", "node-eap-ig", "atp-star", "atp-qk"]
# the IG variants that are not the registry's defaults (``benchmark --methods`` variant specs)
VARIANTS = ["eap-ig[ig_variant=activations]", "eap-ig[ig_variant=clean-corrupted]", "node-eap-ig[ig_variant=activations]"]
TRAINING = ["edge-pruning", "ugs"]


def siit_cases() -> list[str]:
    models = ROOT / "cases" / "siit" / "models"
    return sorted((p.parent.name for p in models.glob("*/siit") if p.is_dir()), key=int)


def groups(full: bool = False, training: bool = False, quick: bool = False) -> list[tuple[str, list[str], list[str]]]:
    """(model kind, cases, methods) to run."""
    if quick:
        return [("tracr", ["3", "4", "12"], ["eap", "eap-ig", "exact", "acdc", "random"]),
                ("siit", siit_cases(), ["eap", "eap-ig", "random"]),
                ("siit", ["ioi"], ["eap", "eap-ig", "random"])]
    every = METHODS + VARIANTS + (TRAINING if training else [])
    tracr = default_cases() if full else ["3", "4", "12"]
    return [("siit", siit_cases(), every), ("siit", ["ioi"], every), ("tracr", tracr, every)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="reference_results", help="results directory (kept, resumable)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true", help="every non-trivial Tracr case too (hours more)")
    mode.add_argument("--quick", action="store_true", help="a small subset: five methods on Tracr, three on SIIT")
    ap.add_argument("--training-methods", action="store_true",
                    help="also Edge Pruning and UGS (minutes per job)")
    ap.add_argument("--reference", default=str(ROOT / "benchmark" / "reference" / "reference.jsonl.gz"))
    ap.add_argument("--workers", default="1")
    args = ap.parse_args(argv)
    if args.quick and args.training_methods:
        ap.error("--training-methods does not go with --quick (the quick subset has no mask-training methods)")
    for model, cases, methods in groups(args.full, args.training_methods, args.quick):
        t = time.perf_counter()
        rc = cli(["benchmark", "--model", model, "--cases", *cases, "--methods", *methods, "--seeds", *SEEDS,
                  "--out", args.out, "--resume", "--workers", args.workers])
        print(f"{model}: {len(cases)} cases x {len(methods)} methods x {len(SEEDS)} seeds: rc {rc}, "
              f"{time.perf_counter() - t:.0f} s", flush=True)
    rc = cli(["leaderboard", "--out", args.out, "--write-reference", args.reference])

    raw = sum(p.stat().st_size for p, d in iter_results(args.out) if d.get("status") == "ok")
    print(f"result files replaced: {raw} bytes; reference: {Path(args.reference).stat().st_size} bytes")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
