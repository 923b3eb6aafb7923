"""``leaderboard``: the results under ``--out`` aggregated (md, csv, or a self-contained html page)."""

from __future__ import annotations

import base64
from pathlib import Path

from benchmark import direction, report
from benchmark.console import UsageError, check_out_dir, emit, json_stdout, log
from benchmark.resultdocs import report_skips
from core import results
from evaluations import direction as dlb


def cmd_leaderboard(args) -> int:
    if not Path(args.out).is_dir():
        raise UsageError(f"no results directory {args.out!r} (run `benchmark` or `run` first, or pass --out)")
    check_out_dir(args.out)  # the leaderboard is written there
    if args.score_floor is not None and not 0 <= args.score_floor < 1:
        raise UsageError(f"--score-floor must be in [0, 1), got {args.score_floor}")
    with results.skip_report() as skipped:  # bad files: one warning each, a count at the end
        if args.write_reference:
            try:
                return report.cmd_write_reference(args)
            finally:
                report_skips(skipped, "leaderboard")
        summary, detail, extra = report.collect(args)
        drows = direction.collect_direction_rows(args.out)
    if not summary and not drows:
        report_skips(skipped, "leaderboard")
        raise UsageError(f"no valid result.json or direction_result.json files under {args.out!r}")
    if args.compare:
        report_skips(skipped, "leaderboard")
        return report.cmd_compare(args, extra)
    if not summary:  # direction results only: the direction leaderboard
        text = {"md": lambda: dlb.to_markdown(drows), "csv": lambda: dlb.to_csv(drows),
                "html": lambda: dlb.to_html(drows)}[args.format]()
    else:
        text = {"md": lambda: report.to_markdown(extra["analysis"]), "csv": lambda: report.to_csv(extra["analysis"]),
                "html": lambda: report.to_html(extra["analysis"], extra["rows"], detail, _embedded_plots(args.out),
                                               drows, extra.get("reference"))}[args.format]()
        if drows and args.format == "md":  # circuit and direction results: both tables (csv: circuit only)
            text += "\n## Direction methods\n\n" + dlb.to_markdown(drows)
    path = results.write_atomic(Path(args.out) / f"leaderboard.{args.format}", text)
    with json_stdout(args.json) as out:
        if args.json:
            emit({"summary": summary, "runs": detail, "path": str(path), **report.json_extra(extra)}, out)
        else:
            out.write(text if args.format != "html" else f"wrote {path}\n")
    report_skips(skipped, "leaderboard")
    return 0


# the plots that `eval roc` and `eval faithfulness` write to OUT/<case>/<model>/, in page order
PLOT_CAPTIONS = {"roc_edges.png": "edge ROC (eval roc)", "faithfulness.png": "faithfulness curve (eval faithfulness)"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _embedded_plots(out: str) -> dict[str, str]:
    """The per-case plots under ``out`` as ``{caption: data URI}``: ``OUT/<case>/<model>/roc_edges.png``
    and ``faithfulness.png``, captioned with case, model, plot kind and file. Other PNGs (e.g. a
    tracker's media) and files that are not PNGs are left out, so the page stays small and valid."""
    root = Path(out)
    found = []
    for name, what in PLOT_CAPTIONS.items():
        for png in root.glob(f"*/*/{name}"):
            if any(p.is_symlink() for p in (png, png.parent, png.parent.parent)):  # README: links are not followed
                results.warn_skip(png, "a symbolic link (not followed)")
                continue
            data = png.read_bytes()
            if not data.startswith(PNG_MAGIC):
                log(f"leaderboard: skip {png} (not a PNG)")
                continue
            case, model = png.parent.parent.name, png.parent.name
            found.append(((case, model, list(PLOT_CAPTIONS).index(name)),
                          f"case {case} ({model}): {what} \u2014 {png.relative_to(root).as_posix()}",
                          "data:image/png;base64," + base64.b64encode(data).decode()))
    return {caption: uri for _, caption, uri in sorted(found)}
