"""The evaluation, benchmark and leaderboard commands of the CLI."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from benchmark.cli import EXIT_FAILED, UsageError, emit, json_stdout, log
from core import results


def cmd_leaderboard(args) -> int:
    if not Path(args.out).is_dir():
        raise UsageError(f"no results directory {args.out!r} (run `benchmark` or `run` first, or pass --out)")
    from benchmark.direction import collect_direction_rows
    from evaluations import direction as dlb

    from benchmark import report

    if args.score_floor is not None and not 0 <= args.score_floor < 1:
        raise UsageError(f"--score-floor must be in [0, 1), got {args.score_floor}")
    if args.write_reference:
        return report.cmd_write_reference(args)
    summary, detail, extra = report.collect(args)
    drows = collect_direction_rows(args.out)
    if not summary and not drows:
        raise UsageError(f"no result.json or direction_result.json files under {args.out!r}")
    if args.compare:
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
    return 0


# the plots that `eval roc` and `eval faithfulness` write to OUT/<case>/<model>/, in page order
PLOT_CAPTIONS = {"roc_edges.png": "edge ROC (eval roc)", "faithfulness.png": "faithfulness curve (eval faithfulness)"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _embedded_plots(out: str) -> dict[str, str]:
    """The per-case plots under ``out`` as ``{caption: data URI}``: ``OUT/<case>/<model>/roc_edges.png``
    and ``faithfulness.png``, captioned with case, model, plot kind and file. Other PNGs (e.g. a
    tracker's media) and files that are not PNGs are left out, so the page stays small and valid."""
    import base64

    root = Path(out)
    found = []
    for name, what in PLOT_CAPTIONS.items():
        for png in root.glob(f"*/*/{name}"):
            data = png.read_bytes()
            if not data.startswith(PNG_MAGIC):
                log(f"leaderboard: skip {png} (not a PNG)")
                continue
            case, model = png.parent.parent.name, png.parent.name
            found.append(((case, model, list(PLOT_CAPTIONS).index(name)),
                          f"case {case} ({model}): {what} \u2014 {png.relative_to(root).as_posix()}",
                          "data:image/png;base64," + base64.b64encode(data).decode()))
    return {caption: uri for _, caption, uri in sorted(found)}


def default_cases() -> list[str]:
    from cases import case_ids, get_case

    return [cid for cid in case_ids("tracr") if "trivial" not in get_case(cid).flags]


def sweep_params(method: str) -> dict:
    """Default hyper-parameter grids for methods that output circuits (so ROC curves have points)."""
    if method == "acdc":
        from methods.acdc import default_thresholds
        return {"thresholds": default_thresholds()}
    if method == "sp":
        return {"lambdas": [round(10 ** (-3 + 3 * i / 10), 6) for i in range(11)]}  # 10^linspace(-3, 0, 11)
    return {}


def cmd_benchmark(args) -> int:
    from benchmark.cli import _progress, _setup_torch, summary_line
    from benchmark.runner import DEFAULT_N, Job, run_jobs
    from cases import get_case
    from methods import method_class

    from benchmark.direction import is_direction_case
    from methods.directions import is_direction_method

    cases = args.cases or default_cases()
    for cid in cases:
        get_case(cid)
    direction_cases = [c for c in cases if is_direction_case(c)]
    if direction_cases:  # direction methods on known-direction cases (issue 11)
        return _benchmark_directions(args, cases, direction_cases)
    for m in args.methods:
        if is_direction_method(m):
            raise UsageError(f"{m} is a direction method; it runs on direction cases only (e.g. --cases sentiment)")
        method_class(m)
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1 (got {args.workers})")
    if args.ray_retries < 0:
        raise UsageError(f"--ray-retries must be at least 0 (got {args.ray_retries})")
    ray_flags = [f for f, on in (("--ray-address", args.ray_address), ("--ray-split", args.ray_split),
                                 ("--ray-pip", args.ray_pip)) if on]
    if ray_flags and args.executor != "ray":
        raise UsageError(f"{' '.join(ray_flags)} needs --executor ray")
    if args.executor == "ray":
        _import_ray()  # a missing optional extra fails before any work
    tracker = None
    if getattr(args, "wandb_project", None):
        from benchmark.tracking import WandbTracker

        tracker = WandbTracker(args.wandb_project, out=args.out)  # imports wandb; fails before any work
    _setup_torch(args.device)
    seeds = list(dict.fromkeys(args.seeds)) if args.seeds else [args.seed]
    if min(seeds) < 0:
        raise UsageError(f"seeds must be >= 0 (got {min(seeds)})")
    jobs = [Job(case=cid, method=m, model=args.model, params=sweep_params(m), seed=seed, n=args.n or DEFAULT_N,
                ablation=args.ablation, device=args.device, out=args.out)
            for cid in cases for seed in seeds for m in args.methods]

    def done(doc):  # called in this process as each job finishes (any executor)
        if tracker is not None:
            tracker.log_result(doc)

    with json_stdout(args.json) as out:
        try:
            if args.executor == "ray":
                docs = _run_ray(jobs, args, on_done=done)
            elif args.workers > 1:
                docs = _run_pool(jobs, args.resume, args.workers, on_done=done)
            else:
                docs = run_jobs(_progress(jobs, "benchmark"), resume=args.resume, log=log, on_done=done)
        finally:
            if tracker is not None:
                tracker.close()
        return _report_jobs(docs, args, summary_line, out)


def _report_jobs(docs: list[dict], args, summary_line, out) -> int:
    """One summary line per job on stderr, the totals (or JSON) on ``out``; exit 1 if any job failed."""
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


def _benchmark_directions(args, cases: list[str], direction_cases: list[str]) -> int:
    from benchmark.cli import _setup_torch
    from benchmark.direction import DEFAULT_N_FIT, DirectionJob, run_direction_jobs, summary_line
    from methods.directions import direction_method_class

    if len(direction_cases) != len(cases):
        other = [c for c in cases if c not in direction_cases]
        raise UsageError(f"direction cases ({', '.join(direction_cases)}) and circuit cases ({', '.join(other)}) "
                         "take different methods: benchmark them separately")
    for m in args.methods:
        direction_method_class(m)  # unknown: exit 2 naming the direction methods
    if args.device != "cpu":
        raise UsageError("direction runs are CPU-only (tiny models): drop --device")
    _setup_torch()
    jobs = [DirectionJob(case=c, method=m, model=args.model, seed=args.seed, n_fit=args.n or DEFAULT_N_FIT,
                         out=args.out) for c in cases for m in args.methods]
    docs = run_direction_jobs(jobs, resume=args.resume, log=log)
    with json_stdout(args.json) as out:
        return _report_jobs(docs, args, summary_line, out)


def _run_group(jobs, resume):
    """One case's jobs in one worker, sharing its activations (runner.ProblemCache)."""
    from benchmark.cli import _setup_torch
    from benchmark.runner import run_jobs

    _setup_torch()
    return run_jobs(jobs, resume=resume)


def _run_pool(jobs, resume: bool, workers: int, on_done=None):
    """Jobs on a pool of spawned processes, one task per case (its jobs share the case's activations);
    results in job order, ``on_done`` called for each job as its case finishes."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from benchmark.runner import case_groups

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(_run_group, g, resume) for g in case_groups(jobs)]
        if on_done is not None:
            for f in as_completed(futures):
                for doc in f.result():
                    on_done(doc)
        return [doc for f in futures for doc in f.result()]


def _import_ray():
    from benchmark.ray_executor import import_ray

    try:
        return import_ray()
    except ImportError as err:
        raise UsageError(str(err)) from None


def _run_ray(jobs, args, on_done=None):
    """The jobs as Ray tasks (benchmark.ray_executor): a local instance, or the cluster at
    ``--ray-address`` / ``RAY_ADDRESS``; the results come back here and are written here."""
    from benchmark.ray_executor import run_ray

    return run_ray(jobs, resume=args.resume, workers=args.workers, address=args.ray_address,
                   split=args.ray_split, retries=args.ray_retries, pip=args.ray_pip,
                   gpus=1.0 if args.device.startswith("cuda") else 0.0, plugins=args.methods, out=args.out,
                   log=log, on_done=on_done)


def result_docs(paths: Sequence[str], name: str = results.RESULT,
                example: str = "results/ or results/3/tracr/eap/<run>/result.json") -> list[tuple[Path, dict]]:
    """Result documents (files called ``name``) from files and directories (recursively)."""
    if not paths:
        raise UsageError(f"eval needs result files or directories (e.g. {example})")
    docs = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            docs += list(results.iter_results(path, name))
        elif path.is_file():
            try:
                docs.append((path, results.load_result(path)))
            except ValueError as err:
                raise UsageError(f"{p} is not a {name}: {err}") from None
        else:
            raise UsageError(f"no such result file or directory: {p}")
    if not docs:
        raise UsageError(f"no {name} files under {' '.join(paths)}")
    return docs


def _by_case(docs):
    groups: dict[tuple[str, str], list[tuple[Path, dict]]] = {}
    for path, doc in docs:
        if doc.get("status") == "ok":
            groups.setdefault((str(doc["case"]), str(doc["model"])), []).append((path, doc))
    return groups


def _plot_dir(args, path: Path, doc: dict) -> Path:
    """Plots go next to the results: OUT/<case>/<model>/ (the directory above the method folders)."""
    if args.out:
        return Path(args.out) / results.safe_component(doc["case"]) / results.safe_component(doc["model"])
    return path.parent.parent.parent


def _labels(docs) -> dict[str, str]:
    """Curve and row labels: one per method variant (``benchmark.variants``, named as the leaderboard
    over the same results names it), e.g. ``sp (node)``."""
    from benchmark.variants import run_labels

    return run_labels(docs)


def recompute_roc(path: Path, doc: dict) -> dict:
    """Recompute a result's ROC against the case's current ground truth and rewrite it atomically
    (ground truths can be revised; the method's scores and sweeps stay as they were)."""
    from benchmark.runner import method_roc
    from cases import get_case
    from core.circuit import Circuit
    from core.graph import Graph
    from core.protocols import MethodOutput

    case = get_case(doc["case"])
    truth = case.ground_truth(doc["model"])
    graph = Graph.from_model(case.load_model(doc["model"]))
    sweep = [(s["param"], Circuit(frozenset(s["nodes"]), frozenset(s["edges"]))) for s in doc.get("sweep") or []]
    scores = doc.get("scores") or {}
    output = MethodOutput(edge_scores=scores.get("edges"), node_scores=scores.get("nodes"), sweep=sweep or None,
                          info=doc.get("method_info") or {})
    doc = dict(doc, roc=method_roc(output, truth, graph), ground_truth=truth.to_json())
    results.write_json_atomic(path, doc)
    return doc


def cmd_eval_roc(args) -> int:
    from evaluations.plots import plot_roc

    docs = result_docs(args.paths)
    if args.recompute:
        docs = [(p, recompute_roc(p, d) if d.get("status") == "ok" else d) for p, d in docs]
    out_doc = {"cases": []}
    labels = _labels(docs)
    for (case, model), items in sorted(_by_case(docs).items()):
        curves, rows = {}, []
        for path, doc in items:
            roc = doc.get("roc") or {}
            curves[labels[str(path)]] = roc.get("edges")
            rows.append({"method": labels[str(path)], "path": str(path),
                         **{f"{level}_{k}": (roc.get(level) or {}).get(k) for level in ("edges", "nodes", "nodes_no_endpoints")
                            for k in ("auroc", "pessimistic_auc")}})
        png = plot_roc({k: v for k, v in curves.items() if v}, _plot_dir(args, *items[0]) / "roc_edges.png",
                       title=f"case {case} ({model}): edge ROC")
        out_doc["cases"].append({"case": case, "model": model, "methods": rows, "plot": str(png)})
    return _report_cases(args, out_doc, lambda r: f"edge AUROC {_f(r['edges_auroc'])} (pessimistic "
                         f"{_f(r['edges_pessimistic_auc'])})  node AUROC {_f(r['nodes_auroc'])}")


def _report_cases(args, out_doc: dict, describe) -> int:
    """Print one line per (case, model, method) and the plot paths, or the whole document as JSON."""
    with json_stdout(args.json) as out:
        if args.json:
            emit(out_doc, out)
        else:
            for c in out_doc["cases"]:
                for r in c["methods"]:
                    print(f"case {c['case']:>4} {c['model']:<7} {r['method']:<28} {describe(r)}", file=out)
                print(f"  plot: {c['plot']}", file=out)
    return 0


def _f(x) -> str:
    return "  nan" if x is None else f"{x:.3f}"


def _engine_for(doc: dict, ablation: str | None, n: int | None):
    from benchmark.runner import build_problem, job_from_result
    from cases import get_case

    job = job_from_result(doc)
    if ablation:
        job.ablation = ablation
    if n:
        job.n = n
    case = get_case(job.case)
    problem = build_problem(job, case, doc["model"])
    return case, problem, problem.engine()


def cmd_eval_faithfulness(args) -> int:
    from benchmark.cli import _setup_torch
    from evaluations.faithfulness import circuit_faithfulness, faithfulness_curve
    from evaluations.plots import plot_faithfulness

    _setup_torch()
    out_doc = {"cases": []}
    docs = result_docs(args.paths)
    labels = _labels(docs)
    for (case_id, model), items in sorted(_by_case(docs).items()):
        curves, rows = {}, []
        for path, doc in items:
            scores = (doc.get("scores") or {}).get("edges")
            if not scores:
                log(f"skip {path}: no edge scores")
                continue
            case, problem, engine = _engine_for(doc, args.ablation, args.n)
            curve = faithfulness_curve(engine, problem.graph, scores, policy=args.policy or "topk-abs",
                                       prune=not args.no_prune)
            gt = case.ground_truth(doc["model"])
            gt_f = circuit_faithfulness(engine, problem.graph.mask_for(gt))
            doc_f = {"schema": results.SCHEMA, "result": str(path), "case": case_id, "model": model,
                     "method": doc["method"], "curve": curve.to_json(), "ground_truth_faithfulness": gt_f}
            results.write_json_atomic(path.parent / "faithfulness.json", doc_f)
            curves[labels[str(path)]] = curve
            rows.append({"method": labels[str(path)], "cpr": curve.cpr, "cmd": curve.cmd, "ground_truth_faithfulness": gt_f,
                         "path": str(path.parent / "faithfulness.json")})
        if rows:
            png = plot_faithfulness(curves, _plot_dir(args, *items[0]) / "faithfulness.png",
                                    title=f"case {case_id} ({model}): faithfulness ({args.policy or 'topk-abs'})")
            out_doc["cases"].append({"case": case_id, "model": model, "methods": rows, "plot": str(png)})
    return _report_cases(args, out_doc, lambda r: f"CPR {_f(r['cpr'])}  CMD {_f(r['cmd'])}  "
                         f"(ground truth f = {_f(r['ground_truth_faithfulness'])})")


def _case_engine(args, ablation: str):
    from benchmark.cli import _setup_torch
    from benchmark.runner import DEFAULT_N, Job, build_problem
    from cases import get_case

    if not args.case:
        raise UsageError(f"eval {args.what} needs a case: -i ID")
    case = get_case(args.case)
    model = case.resolve_model(args.model)
    _setup_torch()
    job = Job(case=str(case.id), method="none", model=model, seed=args.seed, n=args.n or DEFAULT_N, ablation=ablation)
    problem = build_problem(job, case, model)
    return case, model, problem


def cmd_eval_realism(args) -> int:
    from evaluations.realism import gt_node_realism, node_realism

    ablation = args.ablation or "zero"
    case, model, problem = _case_engine(args, ablation)
    engine = problem.engine()
    if args.what == "gt_node_realism":
        rows = [gt_node_realism(engine, case.ground_truth(model))]
    else:
        if not args.nodes:
            raise UsageError("eval node_realism needs --nodes (the hypothesis' heads/MLPs, e.g. a0.h0 m1)")
        unknown = set(args.nodes) - set(problem.graph.nodes)
        if unknown:
            raise UsageError(f"nodes not in the model's graph: {', '.join(sorted(unknown))}")
        rows = node_realism(engine, {"hypothesis": args.nodes})
    doc = {"case": str(case.id), "model": model, "ablation": ablation, "rows": [r.to_json() for r in rows]}
    with json_stdout(args.json) as out:
        if args.json:
            emit(doc, out)
        else:
            for r in rows:
                print(f"case {case.id} ({model}) {r.name}: {r.n_nodes} nodes kept, realism {_f(r.score)} "
                      f"({'relative' if r.relative else 'absolute'} accuracy, {ablation} ablation)", file=out)
    return 0


def cmd_eval_iit(args) -> int:
    from evaluations.iit import iit_report, to_csv, to_json

    case, model, problem = _case_engine(args, "corrupted")
    report = iit_report(problem.model, problem.graph, problem.data, case.output_type, case.ground_truth(model),
                        engines={"corrupted": problem.engine()})
    if model != "tracr" and case.kind == "tracr":
        # a trained model has a high-level model: IIA and strict accuracy come from interchange
        # interventions on its held-out test split (the node effects above stay ablation-based)
        from cases.siit.evaluate import evaluate_trained

        _, m = evaluate_trained(case, model)
        report.summary.update({"iia": m["iia"], "strict_accuracy": m["strict_accuracy"],
                               "strict_accuracy_joint": m["strict_accuracy_joint"],
                               "iit_accuracy": m["accuracy"], "iia_per_node": m.get("iia_per_node"),
                               "strict_accuracy_per_node": m.get("strict_accuracy_per_node")})
        report.reasons.pop("iia", None)
    where = Path(args.out or "results") / results.safe_component(str(case.id)) / results.safe_component(model)
    csv_path = to_csv(report.rows, where / "iit.csv")
    doc = {"case": str(case.id), "model": model, **report.to_json(), "csv": str(csv_path)}
    to_json(doc, where / "iit.json")
    with json_stdout(args.json) as out:
        if args.json:
            emit(doc, out)
        else:
            for r in report.rows:
                print("  ".join(f"{k}={_f(v) if isinstance(v, float) else v}" for k, v in r.items()), file=out)
            print(f"summary: {report.summary}", file=out)
            print(f"wrote {csv_path} and {where / 'iit.json'}", file=out)
    return 0


def cmd_eval(args) -> int:
    if args.what == "direction":  # direction methods against known directions (issue 11)
        from benchmark.direction import cmd_eval_direction
        return cmd_eval_direction(args)
    if args.what == "roc":
        return cmd_eval_roc(args)
    if args.what == "faithfulness":
        return cmd_eval_faithfulness(args)
    if args.what in ("node_realism", "gt_node_realism"):
        return cmd_eval_realism(args)
    if args.what in ("pareto", "agreement", "ig-steps", "overlap"):
        from benchmark import study  # the faithfulness study (EAP vs EAP-IG vs exact patching)

        args.policy = args.policy or "greedy"
        return getattr(study, f"cmd_eval_{args.what.replace('-', '_')}")(args)
    return cmd_eval_iit(args)


del sys
