"""Intervals and paired tests on per-case tables already in EXPERIMENTS.md (issue 22: what changes in
sections 2-3 once uncertainty is shown), with the leaderboard's procedures (evaluations.stats).

    python benchmarks/uncertainty_tables.py [EXPERIMENTS.md]

Reads the per-case edge-AUROC tables whose first row starts with ``| case | ACDC | node SP`` (the
compiled-Tracr table of section 2 and the SIIT table of section 3; one seed each, so the bootstrap is
over cases only) and prints, per table, each method's mean with its 95% interval and the paired
Wilcoxon tests of EAP, EAP-IG inputs, exact and ACDC (and node SP) against each other, as Markdown.
"""

from __future__ import annotations

import sys
from pathlib import Path

from benchmark.uncertainty import auroc_table_report as report
from benchmark.uncertainty import read_auroc_tables as tables


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[0]) if argv else Path(__file__).resolve().parents[1] / "EXPERIMENTS.md"
    for i, (_, cols) in enumerate(tables(path.read_text())):
        print(f"### Table {i + 1} ({len(next(iter(cols.values())))} cases, one seed)\n")
        print(report(cols))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
