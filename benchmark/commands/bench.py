"""``benchmark``: methods over cases (each method's default sweep, data seeds), on an executor, resumable."""

from __future__ import annotations

from benchmark import direction, executors
from benchmark.commands.run import summary_line
from benchmark.console import EXIT_FAILED, UsageError, check_out_dir, emit, json_stdout, log, progress, setup_torch, \
    user_input
from benchmark.defaults import default_cases
from benchmark.methodflags import case_metric, check_jobs, parse_method
from benchmark.runner import DEFAULT_N, Job, run_jobs
from benchmark.tracking import WandbTracker
from cases import get_case
from methods import method_class
from methods import direction_method_class, is_direction_method


def cmd_benchmark(args) -> int:
    with user_input():
        cases = [str(get_case(cid).id) for cid in args.cases or default_cases()]  # plug-ins and case files by id
    direction_cases = [c for c in cases if direction.is_direction_case(c)]
    if direction_cases:  # direction methods on known-direction cases (issue 11)
        return _benchmark_directions(args, cases, direction_cases)
    with user_input():
        jobs, tracker = _benchmark_jobs(args, cases)
    with json_stdout(args.json) as out:
        try:
            docs = _execute(jobs, args, tracker)
        finally:
            if tracker is not None:
                tracker.close()
        return _report_jobs(docs, args, summary_line, out)


def _benchmark_jobs(args, cases: list[str]) -> tuple[list[Job], WandbTracker | None]:
    """The validation phase of ``benchmark``: the flags, every job's model and parameters, ``--out``,
    torch and the tracker, checked before any job runs (a bad value leaves nothing behind)."""
    methods = _check_flags(args, cases)
    tracker = WandbTracker(args.wandb_project, out=args.out) if args.wandb_project else None  # imports wandb
    metrics = {cid: case_metric(get_case(cid), args.metric) for cid in cases}
    seeds = list(dict.fromkeys(args.seeds)) if args.seeds else [args.seed]
    if min(seeds) < 0:
        raise UsageError(f"seeds must be >= 0 (got {min(seeds)})")
    model_seeds = list(dict.fromkeys(args.model_seeds)) if args.model_seeds else [None]
    jobs = [Job(case=cid, method=m, model=args.model, params=params, seed=seed, n=args.n or DEFAULT_N,
                ablation=args.ablation, metric=metrics[cid], device=args.device, out=args.out,
                model_dir=args.model_dir, model_seed=model_seed)
            for cid in cases for model_seed in model_seeds for seed in seeds for m, params in methods]
    check_jobs(jobs)  # every job's model and parameters, before any job runs (build_problem logs the model)
    check_out_dir(args.out)  # then --out (created and probed): a bad value above leaves nothing behind
    setup_torch(args.device)
    return jobs, tracker


def method_spec(spec: str) -> tuple[str, dict]:
    """``NAME`` (the method's defaults and default sweep, as in ``run``) or ``NAME[key=value,...]``, a
    variant (``eap-ig[ig_variant=activations]``; a single sweep value such as ``sp[lambda_reg=0.1]``
    replaces the sweep): (name, parameters), or a one-line usage error."""
    name = spec.split("[", 1)[0].strip()
    if is_direction_method(name):
        raise UsageError(f"{name} is a direction method; it runs on direction cases only (e.g. --cases sentiment)")
    try:
        name, params = parse_method(spec)
    except ValueError as err:
        raise UsageError(f"--methods: {err}") from None
    return name, method_class(name).with_default_sweep(params)


def _check_flags(args, cases: list[str]) -> list[tuple[str, dict]]:
    """The flags checked; the methods' (name, parameters), each spec parsed once (:func:`method_spec`)."""
    methods = [method_spec(spec) for spec in args.methods]
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1 (got {args.workers})")
    if args.ray_retries < 0:
        raise UsageError(f"--ray-retries must be at least 0 (got {args.ray_retries})")
    ray_flags = [f for f, on in (("--ray-address", args.ray_address), ("--ray-split", args.ray_split),
                                 ("--ray-pip", args.ray_pip)) if on]
    if ray_flags and args.executor != "ray":
        raise UsageError(f"{' '.join(ray_flags)} needs --executor ray")
    if args.executor == "ray":
        executors.import_ray()  # a missing optional extra fails before any work
    if args.model_seeds and args.model_dir:
        raise UsageError("--model-seeds picks shipped models by training seed; --model-dir names one model: use one")
    if args.model_dir and len(cases) != 1:
        raise UsageError(f"--model-dir is one trained model, of one case; got --cases {' '.join(cases)}")
    return methods


def _execute(jobs: list[Job], args, tracker: WandbTracker | None) -> list[dict]:
    """The jobs on the executor ``--executor`` / ``--workers`` name; each finished job goes to the tracker
    in this process as it finishes (any executor)."""
    def done(doc):
        if tracker is not None:
            tracker.log_result(doc)

    if args.executor == "ray":
        return executors.run_ray(jobs, resume=args.resume, workers=args.workers, address=args.ray_address,
                                 split=args.ray_split, retries=args.ray_retries, pip=args.ray_pip,
                                 gpus=1.0 if args.device.startswith("cuda") else 0.0, plugins=sorted({j.method for j in jobs}),
                                 out=args.out, log=log, on_done=done)
    if args.workers > 1:
        return executors.run_pool(jobs, args.resume, args.workers, on_done=done)
    return run_jobs(progress(jobs, "benchmark"), resume=args.resume, log=log, on_done=done)


def _report_jobs(docs: list[dict], args, summary_line, out) -> int:
    """One summary line per job on stderr, the totals (or JSON) on ``out``; exit 1 if any job failed."""
    failed = [d for d in docs if d.get("status") not in ("ok", "claimed")]
    claimed = [d for d in docs if d.get("status") == "claimed"]
    skipped = sum(1 for d in docs if d.get("skipped") and d.get("status") != "claimed")
    for d in docs:
        log(summary_line(d))
    if args.resume:
        log(f"--resume: {skipped} of {len(docs)} jobs skipped (finished results kept), {len(docs) - skipped} run")
    if args.json:
        emit({"jobs": len(docs), "failed": len(failed), "skipped": skipped, "claimed": len(claimed), "results": [
            {k: d.get(k) for k in ("case", "model", "method", "status", "error", "path", "skipped")} for d in docs]},
            out)
    else:
        extra = f" ({skipped} skipped: finished before)" if skipped else ""
        left = f" ({len(claimed)} claimed by another run on this --out)" if claimed else ""
        print(f"{len(docs) - len(failed) - len(claimed)}/{len(docs)} jobs ok{extra}{left}; results in {args.out}",
              file=out)
    return EXIT_FAILED if failed else 0


def _benchmark_directions(args, cases: list[str], direction_cases: list[str]) -> int:
    with user_input():
        if len(direction_cases) != len(cases):
            other = [c for c in cases if c not in direction_cases]
            raise UsageError(f"direction cases ({', '.join(direction_cases)}) and circuit cases ({', '.join(other)}) "
                             "take different methods: benchmark them separately")
        for m in args.methods:
            direction_method_class(m)  # unknown: exit 2 naming the direction methods
        if args.device != "cpu":
            raise UsageError("direction runs are CPU-only (tiny models): drop --device")
        if args.model_seeds:
            raise UsageError("direction cases ship one model each: drop --model-seeds")
        setup_torch()
    jobs = [direction.DirectionJob(case=c, method=m, model=args.model, seed=args.seed,
                                   n_fit=args.n or direction.DEFAULT_N_FIT, out=args.out)
            for c in cases for m in args.methods]
    with user_input():  # benchmark.direction resolves each job's case and model as it runs
        docs = direction.run_direction_jobs(jobs, resume=args.resume, log=log)
    with json_stdout(args.json) as out:
        return _report_jobs(docs, args, direction.summary_line, out)
