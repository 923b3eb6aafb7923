"""How much of a method's edge AUROC varies with the model's training seed, and how much with the data seed.

    python main.py benchmark --cases 66 68 --model siit --model-seeds 0 1 2 --seeds 0 1 2 --methods eap exact --out DIR
    python benchmarks/seed_variance.py DIR [--model siit]

For each method variant and case with runs on at least two model seeds and two data seeds (a full grid of
model seed x data seed), the edge AUROCs form a table ``a[m, d]``. Printed per variant, as means over
cases: the spread over model seeds (the standard deviation over m of the data-seed means ``mean_d
a[m, d]``), the spread over data seeds (the standard deviation over d of ``mean_m a[m, d]``), the
range over the whole grid, and in how many cases the model seed spread is the larger. Population
standard deviations (ddof 0): these are descriptions of the grid, not estimates.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmark import variants  # noqa: E402
from core.results import iter_results  # noqa: E402


def grids(out: Path, model: str) -> dict[str, dict[str, dict[tuple[int, int], float]]]:
    """{variant label: {case: {(model seed, data seed): edge AUROC}}} of the finished runs on ``model``."""
    docs = [(p, variants.as_result(d)) for p, d in iter_results(out)]
    docs = [(p, r) for p, r in docs if r.ok and r.model_label == model and r.model_seed is not None]
    keys = [variants.variant_key(r) for _, r in docs]
    labels = variants.label_variants(keys)
    out_: dict[str, dict[str, dict[tuple[int, int], float]]] = {}
    for (_, r), key in zip(docs, keys):
        auroc = r.roc_level("edges").get("auroc")
        if isinstance(auroc, (int, float)):
            out_.setdefault(labels[key], {}).setdefault(str(r.case), {})[(r.model_seed, r.seed)] = float(auroc)
    return out_


def summarise(grid: dict[tuple[int, int], float]) -> dict[str, float] | None:
    ms = sorted({m for m, _ in grid})
    ds = sorted({d for _, d in grid})
    if len(ms) < 2 or len(ds) < 2 or len(grid) != len(ms) * len(ds):
        return None  # not a full grid of at least 2 x 2
    by_model = [statistics.fmean(grid[m, d] for d in ds) for m in ms]
    by_data = [statistics.fmean(grid[m, d] for m in ms) for d in ds]
    return {"model_sd": statistics.pstdev(by_model), "data_sd": statistics.pstdev(by_data),
            "range": max(grid.values()) - min(grid.values()), "n_model": len(ms), "n_data": len(ds)}


def table(out: Path, model: str) -> str:
    lines = ["| variant | cases (grid) | model-seed sd | data-seed sd | range over the grid | cases where model sd > data sd |",
             "|---|---|---|---|---|---|"]
    for label, cases in sorted(grids(out, model).items()):
        rows = {c: s for c, g in cases.items() if (s := summarise(g)) is not None}
        if not rows:
            continue
        shape = sorted({(s["n_model"], s["n_data"]) for s in rows.values()})
        mean = {k: statistics.fmean(s[k] for s in rows.values()) for k in ("model_sd", "data_sd", "range")}
        more = sum(s["model_sd"] > s["data_sd"] for s in rows.values())
        lines.append(f"| {label} | {len(rows)} ({', '.join(f'{m}x{d}' for m, d in shape)}) | {mean['model_sd']:.4f} | "
                     f"{mean['data_sd']:.4f} | {mean['range']:.4f} | {more} of {len(rows)} |")
    return "\n".join(lines)


def per_case(out: Path, model: str, label: str) -> str:
    lines = [f"{label}: | case | model-seed sd | data-seed sd | AUROC by model seed (mean over data seeds) |",
             "|---|---|---|---|"]
    for case, g in sorted(grids(out, model).get(label, {}).items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else 0):
        s = summarise(g)
        if s is None:
            continue
        ms = sorted({m for m, _ in g})
        by_model = " / ".join(f"{statistics.fmean(v for (m2, _), v in g.items() if m2 == m):.3f}" for m in ms)
        lines.append(f"| {case} | {s['model_sd']:.4f} | {s['data_sd']:.4f} | {by_model} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--model", default="siit")
    ap.add_argument("--per-case", default=None, metavar="VARIANT", help="also the per-case table of one variant")
    a = ap.parse_args(argv)
    print(table(Path(a.out), a.model))
    if a.per_case:
        print()
        print(per_case(Path(a.out), a.model, a.per_case))
    return 0


if __name__ == "__main__":
    sys.exit(main())
