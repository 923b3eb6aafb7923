"""The direction commands: ``run das|mean-diff|... -i sentiment`` and ``eval direction`` (over
:mod:`benchmark.direction`, the library; its ValueError / TypeError for the user's input become usage errors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from benchmark.methodflags import method_parser
from benchmark.console import UsageError, _hint, check_out_dir, emit, json_stdout, log, setup_torch, user_input
from benchmark.direction import (DEFAULT_N_FIT, DirectionJob, is_direction_case, make_method, read_direction_docs,
                                 run_direction, summary_line, write_leaderboard)
from evaluations.direction import leaderboard_rows, to_markdown
from methods import direction_method_class, is_direction_method, method_names

__all__ = ["cmd_run_direction", "cmd_eval_direction"]


def _check_run(args, method: str, extra: Sequence[str]) -> dict[str, Any]:
    """The method's parameters from its flags, after the checks of ``run METHOD -i CASE`` (usage errors)."""
    if not is_direction_case(args.case):
        raise UsageError(f"{method} is a direction method; it runs on direction cases only "
                         f"(e.g. -i sentiment), not on case {args.case!r}")
    if ":" not in method and not is_direction_method(method):
        raise UsageError(f"{method} is not a direction method; case {args.case} is a direction case "
                         f"(its methods: {', '.join(method_names('direction'))})")
    cls = direction_method_class(method)  # unknown name: UnknownNameError -> exit 2 with close matches
    p = method_parser(method, cls)
    ns, rest = p.parse_known_args(list(extra))
    if rest:
        raise UsageError(f"unrecognized arguments for method {method}: {' '.join(rest)}"
                         f"{_hint(p, 'unrecognized arguments: ' + ' '.join(rest))}")
    if args.device != "cpu":
        raise UsageError("direction runs are CPU-only (tiny models): drop --device")
    if getattr(args, "model_dir", None):
        raise UsageError(f"case {args.case}: direction cases load their shipped model only (no --model-dir)")
    return vars(ns)


def cmd_run_direction(args, method: str, extra: Sequence[str]) -> int:
    with user_input():  # everything up to the run checks the user's input: exit 2, before any model is built
        params = _check_run(args, method, extra)
        setup_torch(args.device)
        check_out_dir(args.out)
        job = DirectionJob(case=str(args.case), method=method, model=args.model, params=params, seed=args.seed,
                           n_fit=args.n or DEFAULT_N_FIT, out=args.out)
        make_method(method, params)
        log(f"case {args.case}: {job.model_ref().describe()}")
    with json_stdout(args.json) as out:
        doc = run_direction(job, log=log)
        if args.json:
            emit(doc, out)
        else:
            print(summary_line(doc), file=out)
    return 0


def cmd_eval_direction(args) -> int:
    """Print the direction leaderboard; write leaderboard md/csv/html and a PNG next to the results."""
    if not args.paths:
        raise UsageError("eval needs result files or directories (e.g. results/sentiment/direction)")
    with user_input():
        docs = read_direction_docs(args.paths)
    rows = leaderboard_rows(d for _, d in docs)
    first = Path(args.paths[0])
    where = Path(args.out) if args.out else first if first.is_dir() else docs[0][0].parent
    files = write_leaderboard(rows, where)
    with json_stdout(args.json) as out:
        if args.json:
            emit({"rows": rows, "files": {k: str(v) for k, v in files.items()}}, out)
        else:
            out.write(to_markdown(rows))
            for k, v in files.items():
                out.write(f"  {k}: {v}\n")
    return 0
