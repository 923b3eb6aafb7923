"""Intervals and paired tests on per-case tables already in EXPERIMENTS.md (issue 22: what changes in
sections 2-3 once uncertainty is shown), with the leaderboard's procedures (evaluations.stats).

    python benchmarks/uncertainty_tables.py [EXPERIMENTS.md]

Reads the per-case edge-AUROC tables whose first row starts with ``| case | ACDC | node SP`` (the
compiled-Tracr table of section 2 and the SIIT table of section 3; one seed each, so the bootstrap is
over cases only) and prints, per table, each method's mean with its 95% interval and the paired
Wilcoxon tests of EAP, EAP-IG inputs, exact and ACDC (and node SP) against each other, as Markdown.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluations import stats  # noqa: E402

COMPARE = ("ACDC", "EAP", "EAP-IG inputs", "exact", "node SP")


def tables(text: str) -> list[tuple[list[str], dict[str, dict[str, float]]]]:
    out, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("| case | ACDC | node SP"):
            continue
        head = [c.strip() for c in line.strip("|").split("|")]
        cols = {m: {} for m in head[1:] if not m.startswith("paper")}
        for row in lines[i + 2:]:
            if not row.startswith("|"):
                break
            cells = [c.strip() for c in row.strip("|").split("|")]
            if not cells[0].isdigit():
                continue
            for m, v in zip(head[1:], cells[1:]):
                if m in cols:
                    cols[m][cells[0]] = float(v)
        out.append((head, cols))
    return out


def report(cols: dict[str, dict[str, float]]) -> str:
    lines = ["| method | cases | mean edge AUROC | 95% CI |", "|---|---|---|---|"]
    for m, v in cols.items():
        iv = stats.bootstrap_ci({c: [x] for c, x in v.items()})
        lines.append(f"| {m} | {iv.n_cases} | {iv.mean:.3f} | [{iv.low:.3f}, {iv.high:.3f}] |")
    lines += ["", "| a | b | mean a-b | win/tie/loss | p (Wilcoxon) |", "|---|---|---|---|---|"]
    for a, b in itertools.combinations([m for m in COMPARE if m in cols], 2):
        p = stats.paired_comparison({c: [x] for c, x in cols[a].items()}, {c: [x] for c, x in cols[b].items()}, (a, b))
        lines.append(f"| {a} | {b} | {p.mean_diff:+.3f} | {p.wins}/{p.ties}/{p.losses} | {p.p_value:.3g} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[0]) if argv else Path(__file__).resolve().parents[1] / "EXPERIMENTS.md"
    for i, (_, cols) in enumerate(tables(path.read_text())):
        print(f"### Table {i + 1} ({len(next(iter(cols.values())))} cases, one seed)\n")
        print(report(cols))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
