"""The evaluation, benchmark and leaderboard commands of the CLI."""

from __future__ import annotations

import sys
from pathlib import Path

from benchmark.cli import EXIT_FAILED, UsageError, emit, json_stdout, log
from core import results


def cmd_leaderboard(args) -> int:
    from benchmark import leaderboard as lb

    if not Path(args.out).is_dir():
        raise UsageError(f"no results directory {args.out!r} (run `benchmark` or `run` first, or pass --out)")
    summary, detail = lb.collect(args.out)
    if not summary:
        raise UsageError(f"no result.json files under {args.out!r}")
    text = {"md": lambda: lb.to_markdown(summary), "csv": lambda: lb.to_csv(summary),
            "html": lambda: lb.to_html(summary, detail, _embedded_plots(args.out))}[args.format]()
    path = results.write_atomic(Path(args.out) / f"leaderboard.{args.format}", text)
    with json_stdout(args.json) as out:
        if args.json:
            emit({"summary": summary, "runs": detail, "path": str(path)}, out)
        else:
            out.write(text if args.format != "html" else f"wrote {path}\n")
    return 0


def _embedded_plots(out: str) -> dict[str, str]:
    import base64

    imgs = {}
    for png in sorted(Path(out).rglob("*.png")):
        imgs[str(png.relative_to(out))] = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
    return imgs


def default_cases() -> list[str]:
    from cases import case_ids, get_case

    return [cid for cid in case_ids("tracr") if "trivial" not in get_case(cid).flags]


def cmd_benchmark(args) -> int:
    from benchmark.cli import _progress, _setup_torch, summary_line
    from benchmark.runner import DEFAULT_N, Job, run_job
    from cases import get_case
    from methods import method_class

    cases = args.cases or default_cases()
    for cid in cases:
        get_case(cid)
    for m in args.methods:
        method_class(m)
    _setup_torch()
    jobs = [Job(case=cid, method=m, model=args.model, seed=args.seed, n=args.n or DEFAULT_N,
                ablation=args.ablation, device=args.device, out=args.out) for cid in cases for m in args.methods]
    with json_stdout(args.json) as out:
        if args.executor == "ray":
            docs = _run_ray(jobs, args.resume)
        elif args.workers > 1:
            docs = _run_pool(jobs, args.resume, args.workers)
        else:
            docs = [run_job(j, resume=args.resume, log=log) for j in _progress(jobs, "benchmark")]
        failed = [d for d in docs if d.get("status") != "ok"]
        for d in docs:
            log(summary_line(d))
        if args.json:
            emit({"jobs": len(docs), "failed": len(failed), "results": [
                {k: d.get(k) for k in ("case", "model", "method", "status", "error", "path", "skipped")} for d in docs]},
                out)
        else:
            print(f"{len(docs) - len(failed)}/{len(docs)} jobs ok; results in {args.out}", file=out)
    return EXIT_FAILED if failed else 0


def _run_one(job, resume):
    from benchmark.cli import _setup_torch
    from benchmark.runner import run_job

    _setup_torch()
    return run_job(job, resume=resume)


def _run_pool(jobs, resume: bool, workers: int):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(_run_one, j, resume) for j in jobs]
        return [f.result() for f in futures]


def _run_ray(jobs, resume: bool):
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs Ray: pip install 'circuit-bench[ray]'") from None
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    remote = ray.remote(_run_one)
    return ray.get([remote.remote(j, resume) for j in jobs])


def cmd_eval(args) -> int:
    raise UsageError(f"eval {args.what} is not wired yet")


del sys
