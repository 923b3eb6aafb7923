"""``run METHOD -i CASE [METHOD FLAGS]``: one method on one case (its default sweep), one result file."""

from __future__ import annotations

import sys
from typing import Sequence

from benchmark import direction, direction_cli
from benchmark.console import EXIT_FAILED, UsageError, check_out_dir, emit, json_stdout, log, setup_torch, user_input
from benchmark.methodflags import case_metric, check_jobs, method_help, parse_method_flags
from benchmark.runner import DEFAULT_N, Job, run_job
from benchmark.tracking import WandbTracker
from cases import get_case
from methods import method_class, method_names
from methods import direction_method_class, is_direction_method


def cmd_run(args, extra: Sequence[str], parser) -> int:
    method = args.method_opt or args.method
    if args.help:
        return _run_help(method, parser)
    with user_input():
        _check_run_args(args, method)
    if is_direction_method(method) or direction.is_direction_case(args.case):  # direction methods and cases (issue 11)
        return direction_cli.cmd_run_direction(args, method, extra)  # checks its own input, then runs
    with user_input():
        job, tracker = _run_job_of(args, method, extra)
    with json_stdout(args.json) as out:
        doc = run_job(job, resume=args.resume, log=log)
        if tracker is not None and not doc.get("skipped"):
            tracker.log_result(doc)
        if args.json:
            emit(doc, out)
        else:
            print(summary_line(doc), file=out)
    return 0 if doc.get("status") in ("ok", "claimed") else EXIT_FAILED


def _check_run_args(args, method: str | None) -> None:
    if not args.case:
        raise UsageError("run needs a case: -i ID (see `cases list`)")
    if not method:
        raise UsageError("run needs a METHOD (" + ", ".join(method_names()) + ", or pkg.module:Class)")
    if args.method and args.method_opt and args.method != args.method_opt:
        raise UsageError(f"two different methods given: {args.method!r} and --method {args.method_opt!r}")


def _run_job_of(args, method: str, extra: Sequence[str]) -> tuple[Job, WandbTracker | None]:
    """The validation phase of ``run``: the job (every method value and the model resolved), ``--out``
    created and probed, torch set up, the tracker (wandb imported). Nothing is written before."""
    case = get_case(args.case)
    metric = case_metric(case, args.metric)
    method, params = parse_method_flags(method, extra)
    params = method_class(method).with_default_sweep(params)  # the same defaults as `benchmark`
    job = Job(case=str(case.id), method=method, model=args.model, params=params, seed=args.seed,
              n=args.n or DEFAULT_N, ablation=args.ablation, metric=metric, device=args.device, out=args.out,
              model_dir=args.model_dir)
    check_jobs([job])  # every method value and the model, before anything is built
    check_out_dir(args.out)  # then --out (created and probed): a bad value above leaves nothing behind
    setup_torch(args.device)
    tracker = WandbTracker(args.wandb_project, out=args.out) if args.wandb_project else None  # imports wandb
    return job, tracker


def _run_help(method: str | None, parser) -> int:
    text = parser.format_help()
    with user_input():
        if method:
            cls = direction_method_class(method) if is_direction_method(method) else method_class(method)
            text += "\n" + method_help(method, cls)
        else:
            text += "\nmethods: " + ", ".join(method_names()) + " (run METHOD --help: the method's flags)\n"
    sys.stdout.write(text)
    return 0


def summary_line(doc: dict) -> str:
    """One line per finished job: case / model / method, its AUROCs (or why there are none), the job's
    total seconds (``timing.seconds``) and where the result is."""
    where = doc.get("path", "")
    head = f"case {doc['case']} / {doc.get('model')} / {doc['method']}"
    if doc.get("status") == "claimed":
        o = doc.get("claimed_by") or {}
        return (f"{head}: claimed by another run (pid {o.get('pid', '?')} on {o.get('host', '?')}); "
                f"left to it -> {where}")
    if doc.get("skipped"):
        return f"{head}: skipped (finished) -> {where}"
    if doc.get("status") != "ok":
        return f"{head}: ERROR {doc.get('error')} -> {where}"
    roc = doc.get("roc") or {}
    e, n = roc.get("edges") or {}, roc.get("nodes") or {}
    if roc.get("skipped"):
        return f"{head}: {roc['skipped']}, {doc['timing']['seconds']:.2f}s -> {where}"
    return (f"{head}: edge AUROC {_fmt(e.get('auroc'))}, node AUROC {_fmt(n.get('auroc'))}, "
            f"{doc['timing']['seconds']:.2f}s -> {where}")


def _fmt(x) -> str:
    return "nan" if x is None else f"{x:.3f}"
