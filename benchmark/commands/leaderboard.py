"""``leaderboard``: the results under ``--out`` aggregated (md, csv, or a self-contained html page)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Mapping

from benchmark import direction, report
from benchmark import leaderboard as lb
from benchmark import reference as ref
from benchmark import uncertainty as unc
from benchmark.console import UsageError, check_out_dir, check_score_floor, emit, json_stdout, log
from benchmark.resultdocs import report_skips
from core import results
from core.results import iter_results
from evaluations import direction as dlb
from evaluations.roc import DEFAULT_SCORE_FLOOR


def cmd_leaderboard(args) -> int:
    if not Path(args.out).is_dir():
        raise UsageError(f"no results directory {args.out!r} (run `benchmark` or `run` first, or pass --out)")
    check_out_dir(args.out)  # the leaderboard is written there
    if args.extend_reference and not args.write_reference:
        raise UsageError("--extend-reference goes with --write-reference PATH (the reference to extend)")
    check_score_floor(args.score_floor)
    with results.skip_report() as skipped:  # bad files: one warning each, a count at the end
        if args.write_reference:
            try:
                return cmd_write_reference(args)
            finally:
                report_skips(skipped, "leaderboard")
        summary, detail, extra = collect(args)
        drows = direction.collect_direction_rows(args.out)
    if not summary and not drows:
        report_skips(skipped, "leaderboard")
        raise UsageError(f"no valid result.json or direction_result.json files under {args.out!r}")
    if args.compare:
        report_skips(skipped, "leaderboard")
        return cmd_compare(args, extra)
    if not summary:  # direction results only: the direction leaderboard
        text = {"md": lambda: dlb.to_markdown(drows), "csv": lambda: dlb.to_csv(drows),
                "html": lambda: dlb.to_html(drows)}[args.format]()
    else:
        text = {"md": lambda: report.to_markdown(extra["analysis"], extra.get("reference")),
                "csv": lambda: report.to_csv(extra["analysis"]),
                "html": lambda: report.to_html(extra["analysis"], extra["rows"], detail, _embedded_plots(args.out),
                                               drows, extra.get("reference"))}[args.format]()
        if drows and args.format == "md":  # circuit and direction results: both tables (csv: circuit only)
            text += "\n## Direction methods\n\n" + dlb.to_markdown(drows)
    path = results.write_atomic(Path(args.out) / f"leaderboard.{args.format}", text)
    with json_stdout(args.json) as out:
        if args.json:
            emit({"summary": summary, "runs": detail, "path": str(path), **json_extra(extra)}, out)
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


# ---- the leaderboard's parts: --with-reference, --compare, --write-reference ----------------------------------
def collect(args) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """(summary rows with intervals, per-run detail, {"rows", "analysis", "reference"}) for ``args.out``,
    with the reference's rows (labelled ``[ref]``) when ``--with-reference`` is given."""
    floor = DEFAULT_SCORE_FLOOR if args.score_floor is None else args.score_floor
    docs = list(iter_results(args.out))
    header = None
    if getattr(args, "with_reference", None) is not None:
        path = args.with_reference or str(ref.DEFAULT)
        try:
            header, rdocs = ref.load(path)
            mine = [d for _, d in docs if d.get("status") == "ok" and "roc" in d]
            if not mine:
                raise ref.IncompatibleReference(f"no finished results under {args.out!r} to rank against the reference")
            header, rdocs = ref.matching(header, rdocs, mine)
            ref.check_compatible(header, mine)
        except ref.IncompatibleReference as err:
            raise UsageError(f"--with-reference: {err}") from None
        header = {**header, "path": path}
    rows, detail = lb.collect_rows(args.out, floor, docs=docs)
    if header is not None:
        rrows, _ = lb.collect_rows(None, floor, docs=[(Path(f"reference/{i}/result.json"), d) for i, d in enumerate(rdocs)])
        for key, row in rrows.items():
            row.variant += " [ref]"
            rows[("ref",) + key] = row
    analysis = unc.analyse(rows, score_floor=floor)
    return analysis["summary"] if rows else [], detail, {"rows": rows, "analysis": analysis, "reference": header}


def json_extra(extra: Mapping[str, Any]) -> dict[str, Any]:
    a = extra["analysis"]
    out = {k: a[k] for k in ("pairwise", "pairwise_metrics", "per_case", "method")}
    if extra.get("reference"):
        out["reference"] = {k: v for k, v in extra["reference"].items() if k != "settings"}
    return out


def cmd_compare(args, extra: Mapping[str, Any]) -> int:
    try:
        comparisons = unc.compare(extra["rows"], *args.compare, metric=args.compare_metric)
    except ValueError as err:
        raise UsageError(f"--compare: {err}") from None
    text = compare_markdown = unc.compare_markdown(comparisons)
    path = results.write_atomic(Path(args.out) / "compare.md", compare_markdown)
    with json_stdout(args.json) as out:
        if args.json:
            emit({"comparisons": comparisons, "path": str(path), "method": extra["analysis"]["method"]}, out)
        else:
            out.write(text)
    return 0


def cmd_write_reference(args) -> int:
    if args.with_reference is not None or args.compare:
        raise UsageError("--write-reference goes alone (not with --with-reference or --compare)")
    extend = args.extend_reference
    if extend and not Path(args.write_reference).is_file():
        raise UsageError(f"--extend-reference: no reference file {args.write_reference!r} to extend")
    try:
        info = ref.write(args.out, args.write_reference,
                         command=f"leaderboard --out {args.out} --write-reference {args.write_reference}"
                                 + (" --extend-reference" if extend else ""),
                         extend=args.write_reference if extend else None)
    except ref.IncompatibleReference as err:
        raise UsageError(f"--write-reference: {err}") from None
    with json_stdout(args.json) as out:
        if args.json:
            emit(info, out)
        else:
            out.write(f"wrote {info['path']}: {info['n_runs']} runs, {info['bytes']} bytes\n")
    return 0
