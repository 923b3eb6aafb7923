"""``export mib RESULT --out FILE`` and ``import mib FILE -i CASE``: results as MIB/EAP-IG graph files."""

from __future__ import annotations

from pathlib import Path

from benchmark.console import UsageError, emit, json_stdout, user_input
from benchmark.mib import MIBFormatError, export_path, import_path, read_file
from cases import get_case
from core import results


def cmd_export(args) -> int:
    """``export mib RESULT --out FILE``: a result as a MIB/EAP-IG graph JSON (benchmark/mib.py)."""
    src = Path(args.result)
    src = src / results.RESULT if src.is_dir() else src
    if not src.is_file():
        raise UsageError(f"no result file {str(src)!r}")
    if args.top_n is not None and args.top_n < 0:
        raise UsageError(f"--top-n must be >= 0 (got {args.top_n})")
    try:
        doc = results.load_result(src)
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot read {src}: {err}") from None
    if doc.get("status") != "ok":
        raise UsageError(f"{src}: the run did not finish (status {doc.get('status')!r})")
    with user_input():  # a result MIB's graph cannot hold (MIBFormatError)
        path = export_path(src, args.out, signed=args.signed, top_n=args.top_n)
    with json_stdout(args.json) as out:
        if args.json:
            emit({"path": str(path), "result": str(src)}, out)
        else:
            print(f"wrote {path}", file=out)
    return 0


def cmd_import(args) -> int:
    """``import mib FILE -i CASE [--model KIND] --out DIR``: a MIB graph JSON as a circuit-bench result."""
    with user_input():
        case = get_case(args.case)
        case.resolve_model(args.model)
    try:
        read_file(args.file)  # bad files fail before any model is loaded
        path = import_path(args.file, str(case.id), args.model, args.out, name=args.name)
    except MIBFormatError as err:
        raise UsageError(str(err)) from None
    doc = results.load_result(path)
    with json_stdout(args.json) as out:
        if args.json:
            emit(dict(doc, path=str(path)), out)
        else:
            e = (doc.get("roc") or {}).get("edges") or {}
            print(f"case {doc['case']} / {doc['model']} / {doc['method']}: edge AUROC {_fmt(e.get('auroc'))} -> {path}",
                  file=out)
    return 0


def _fmt(x) -> str:
    return "  nan" if x is None else f"{x:.3f}"
