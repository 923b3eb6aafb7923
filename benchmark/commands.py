"""The evaluation, benchmark and leaderboard commands of the CLI."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

from benchmark.console import EXIT_FAILED, UsageError, check_out_dir, emit, json_stdout, log
from core import results
from core.registry import UnknownNameError


def cmd_leaderboard(args) -> int:
    if not Path(args.out).is_dir():
        raise UsageError(f"no results directory {args.out!r} (run `benchmark` or `run` first, or pass --out)")
    check_out_dir(args.out)  # the leaderboard is written there
    from benchmark.direction import collect_direction_rows
    from evaluations import direction as dlb

    from benchmark import report

    if args.score_floor is not None and not 0 <= args.score_floor < 1:
        raise UsageError(f"--score-floor must be in [0, 1), got {args.score_floor}")
    with results.skip_report() as skipped:  # bad files: one warning each, a count at the end
        if args.write_reference:
            try:
                return report.cmd_write_reference(args)
            finally:
                report_skips(skipped, "leaderboard")
        summary, detail, extra = report.collect(args)
        drows = collect_direction_rows(args.out)
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
    import base64

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


def default_cases() -> list[str]:
    from cases import case_ids, get_case

    return [cid for cid in case_ids("tracr") if "trivial" not in get_case(cid).flags]


def sweep_params(method: str) -> dict:
    """The method's own default sweep (``Method.default_sweep``: ACDC's 21 taus, SP's 11 lambdas), the
    same grid ``run METHOD`` uses, so a method name means one thing in every command."""
    from methods import method_class

    return method_class(method).default_sweep()


def cmd_benchmark(args) -> int:
    from benchmark.console import _progress, _setup_torch
    from benchmark.cli import summary_line
    from benchmark.runner import DEFAULT_N, Job, run_jobs
    from cases import get_case
    from methods import method_class

    from benchmark.direction import is_direction_case
    from methods.directions import is_direction_method

    from benchmark.cli import case_metric

    cases = args.cases or default_cases()
    cases = [str(get_case(cid).id) for cid in cases]  # plug-ins and case files by their resolvable id
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
    if getattr(args, "model_dir", None) and len(cases) != 1:
        raise UsageError(f"--model-dir is one trained model, of one case; got --cases {' '.join(cases)}")
    metrics = {cid: case_metric(get_case(cid), getattr(args, "metric", None)) for cid in cases}
    seeds = list(dict.fromkeys(args.seeds)) if args.seeds else [args.seed]
    if min(seeds) < 0:
        raise UsageError(f"seeds must be >= 0 (got {min(seeds)})")
    jobs = [Job(case=cid, method=m, model=args.model, params=sweep_params(m), seed=seed, n=args.n or DEFAULT_N,
                ablation=args.ablation, metric=metrics[cid], device=args.device, out=args.out,
                model_dir=getattr(args, "model_dir", None))
            for cid in cases for seed in seeds for m in args.methods]
    from benchmark.cli import check_jobs

    check_jobs(jobs)  # every job's model and parameters, before any job runs (build_problem logs the model)
    check_out_dir(args.out)  # then --out (created and probed): a bad value above leaves nothing behind
    _setup_torch(args.device)

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
    from benchmark.console import _setup_torch
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
    from benchmark.console import _setup_torch
    from benchmark.runner import run_jobs

    _setup_torch()
    return run_jobs(jobs, resume=resume)


def _run_pool(jobs, resume: bool, workers: int, on_done=None):
    """Jobs on a pool of spawned processes, one task per case (its jobs share the case's activations);
    results in job order, ``on_done`` called for each job as its case finishes."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from benchmark.runner import case_groups

    from benchmark.safety import die_with_parent

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                             initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
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
    """Result documents (files called ``name``) from files and directories (recursively). A file that
    is not a valid result is skipped with one warning line naming it and why (counted by an open
    ``results.skip_report``); none left is a usage error."""
    if not paths:
        raise UsageError(f"eval needs result files or directories (e.g. {example})")
    for p in paths:  # a path that does not exist is a typo: fail before reading anything
        if not Path(p).exists():
            raise UsageError(f"no such result file or directory: {p}")
    docs = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            docs += list(results.iter_results(path, name))
        else:
            try:
                docs.append((path, results.load_result(path)))
            except (OSError, ValueError) as err:
                why = str(err).removeprefix(f"{path}: ") if isinstance(err, ValueError) else (err.strerror or str(err))
                results.warn_skip(path, why)
    if not docs:
        raise UsageError(f"no valid {name} files under {' '.join(paths)}")
    return docs


def report_skips(skipped, what: str) -> None:
    """The closing line of a reader: how many files it skipped (nothing when none)."""
    if skipped:
        log(f"{what}: skipped {len(skipped)} invalid result file(s) (see the warnings above)")


def _by_case(docs):
    from benchmark.runner import model_label

    groups: dict[tuple[str, str], list[tuple[Path, dict]]] = {}
    for path, doc in docs:
        if doc.get("status") == "ok":
            groups.setdefault((str(doc["case"]), model_label(doc)), []).append((path, doc))
    return groups


def _plot_dir(args, path: Path, doc: dict) -> Path:
    """Plots go to ``--out``/<case>/<model>/ (names made safe, no link followed), else next to the
    results: OUT/<case>/<model>/ when the result lies at OUT/<case>/<model>/<method>/<run>/result.json,
    otherwise the result's own directory (never above it)."""
    from benchmark.runner import model_label

    case, model = results.safe_component(doc["case"]), results.safe_component(model_label(doc))
    if args.out:
        return results.check_no_links(args.out, Path(args.out) / case / model)
    up = path.parent.parent.parent
    if (up.name, up.parent.name) == (model, case) and path.parent.parent.name == results.safe_component(doc["method"]):
        return up
    return path.parent


def _labels(docs) -> dict[str, str]:
    """Curve and row labels: one per method variant (``benchmark.variants``, named as the leaderboard
    over the same results names it), e.g. ``sp (node)``."""
    from benchmark.variants import run_labels

    return run_labels(docs)


def recompute_roc(path: Path, doc: dict) -> dict:
    """Recompute a result's ROC against the case's current ground truth and rewrite it atomically
    (ground truths can be revised; the method's scores and sweeps stay as they were)."""
    from benchmark.runner import job_from_result, job_ground_truth, load_model_and_truth, method_roc
    from cases import get_case
    from core.circuit import Circuit
    from core.graph import Graph
    from core.protocols import MethodOutput

    case = get_case(doc["case"])
    job = job_from_result(doc)
    truth = job_ground_truth(job, case, doc["model"])
    if truth is None:
        log(f"skip {path}: case {case.id} has no ground truth (ROC skipped)")
        return doc
    graph = Graph.from_model(load_model_and_truth(job, case, doc["model"])[0])
    sweep = [(s["param"], Circuit(frozenset(s["nodes"]), frozenset(s["edges"]))) for s in doc.get("sweep") or []]
    scores = doc.get("scores") or {}
    output = MethodOutput(edge_scores=scores.get("edges"), node_scores=scores.get("nodes"), sweep=sweep or None,
                          info=doc.get("method_info") or {})
    doc = dict(doc, roc=method_roc(output, truth, graph), ground_truth=truth.to_json())
    results.write_json_atomic(path, doc)
    return doc


def _recompute_or_skip(path: Path, doc: dict) -> dict | None:
    """``recompute_roc`` for a finished result; None (with a warning) for one that names a case or
    model that is not here, or edges its graph does not have."""
    if doc.get("status") != "ok":
        return doc
    try:
        return recompute_roc(path, doc)
    except (UnknownNameError, FileNotFoundError, ValueError) as err:
        results.warn_skip(path, f"cannot recompute its ROC: {err}")
        return None


def cmd_eval_roc(args) -> int:
    from evaluations.plots import plot_roc

    docs = result_docs(args.paths)
    if args.recompute:
        from benchmark.console import _setup_torch

        _setup_torch()
        docs = [(p, d) for p, d in ((p, _recompute_or_skip(p, d)) for p, d in docs) if d is not None]
    out_doc = {"cases": []}
    labels = _labels(docs)
    for (case, model), items in sorted(_by_case(docs).items()):
        curves, rows = {}, []
        skipped = [(p, d) for p, d in items if (d.get("roc") or {}).get("skipped")]
        for path, doc in skipped:
            log(f"skip {path}: {doc['roc']['skipped']}")
        items = [it for it in items if it not in skipped]
        if not items:
            continue
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
    from benchmark.runner import build_problem, job_from_result, job_ground_truth
    from cases import get_case

    job = job_from_result(doc)
    if ablation:
        job.ablation = ablation
    if n:
        job.n = n
    case = get_case(job.case)
    problem = build_problem(job, case, doc["model"])
    problem.truth = job_ground_truth(job, case, doc["model"])
    return case, problem, problem.engine()


def cmd_eval_faithfulness(args) -> int:
    from benchmark.console import _setup_torch
    from evaluations.faithfulness import circuit_faithfulness, faithfulness_curve
    from evaluations.plots import plot_faithfulness

    _setup_torch()
    if args.policy == "mib":
        return _eval_faithfulness_mib(args)
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
            try:  # a result naming a case or model that is not here is skipped, not fatal
                from cases import get_case
                get_case(doc["case"]).resolve_model(doc["model"])
                case, problem, engine = _engine_for(doc, args.ablation, args.n)
            except (UnknownNameError, FileNotFoundError, ValueError) as err:
                from cases.files import CaseFileError

                if isinstance(err, ValueError) and not isinstance(err, CaseFileError) and "has no model" not in str(err):
                    raise
                results.warn_skip(path, f"cannot rebuild its case: {err}")
                continue
            curve = faithfulness_curve(engine, problem.graph, scores, policy=args.policy or "topk-abs",
                                       prune=not args.no_prune)
            gt = problem.truth
            gt_f = None if gt is None else circuit_faithfulness(engine, problem.graph.mask_for(gt))
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


def _eval_faithfulness_mib(args) -> int:
    """``eval faithfulness --policy mib``: MIB's CPR / CMD (benchmark/mib.py), written to faithfulness_mib.json."""
    from benchmark.mib import mib_faithfulness

    out_doc = {"cases": []}
    for (case_id, model), items in sorted(_by_case(result_docs(args.paths)).items()):
        rows = []
        for path, doc in items:
            if not (doc.get("scores") or {}).get("edges"):
                log(f"skip {path}: no edge scores")
                continue
            _, problem, engine = _engine_for(doc, args.ablation, args.n)
            res = mib_faithfulness(engine, problem.graph, doc)
            dest = results.write_json_atomic(path.parent / "faithfulness_mib.json",
                                             {"schema": results.SCHEMA, "result": str(path), "case": case_id,
                                              "model": model, "method": doc["method"], **res})
            rows.append({"method": _label(doc), "cpr": res["cpr"], "cmd": res["cmd"], "metric": res["metric"],
                         "selection": res["selection"], "path": str(dest)})
        if rows:
            out_doc["cases"].append({"case": case_id, "model": model, "methods": rows, "plot": None})
    return _report_cases(args, out_doc, lambda r: f"MIB CPR {_f(r['cpr'])}  CMD {_f(r['cmd'])}  "
                         f"({r['metric']}, {r['selection']})")


def cmd_export(args) -> int:
    """``export mib RESULT --out FILE``: a result as a MIB/EAP-IG graph JSON (benchmark/mib.py)."""
    from benchmark.mib import export_path

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
    path = export_path(src, args.out, signed=args.signed, top_n=args.top_n)
    with json_stdout(args.json) as out:
        if args.json:
            emit({"path": str(path), "result": str(src)}, out)
        else:
            print(f"wrote {path}", file=out)
    return 0


def cmd_import(args) -> int:
    """``import mib FILE -i CASE [--model KIND] --out DIR``: a MIB graph JSON as a circuit-bench result."""
    from benchmark.mib import MIBFormatError, import_path, read_file
    from cases import get_case

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
            print(f"case {doc['case']} / {doc['model']} / {doc['method']}: edge AUROC {_f(e.get('auroc'))} -> {path}",
                  file=out)
    return 0


def _case_engine(args, ablation: str):
    from benchmark.console import _setup_torch
    from benchmark.runner import DEFAULT_N, Job, build_problem, job_ground_truth
    from cases import get_case

    if not args.case:
        raise UsageError(f"eval {args.what} needs a case: -i ID")
    case = get_case(args.case)
    model_dir = getattr(args, "model_dir", None)
    model = case.model_ref(args.model, model_dir).kind
    _setup_torch()
    job = Job(case=str(case.id), method="none", model=model, seed=args.seed, n=args.n or DEFAULT_N, ablation=ablation,
              model_dir=model_dir)
    problem = build_problem(job, case, model)
    problem.truth = job_ground_truth(job, case, model)
    return case, model, problem


def cmd_eval_realism(args) -> int:
    from evaluations.realism import gt_node_realism, node_realism

    ablation = args.ablation or "zero"
    case, model, problem = _case_engine(args, ablation)
    engine = problem.engine()
    if args.what == "gt_node_realism":
        if problem.truth is None:
            raise UsageError(f"case {case.id} has no ground truth: use eval node_realism --nodes ...")
        rows = [gt_node_realism(engine, problem.truth)]
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
    if problem.truth is None:
        raise UsageError(f"case {case.id} has no ground truth: eval iit needs one")
    report = iit_report(problem.model, problem.graph, problem.data, case.output_type, problem.truth,
                        engines={"corrupted": problem.engine()})
    if model != "tracr" and case.kind == "tracr":
        # a trained model has a high-level model: IIA and strict accuracy come from interchange
        # interventions on its held-out test split (the node effects above stay ablation-based)
        from cases.tracr.siit import evaluate_trained

        _, m = evaluate_trained(case, model, directory=getattr(args, "model_dir", None))
        report.summary.update({"iia": m["iia"], "strict_accuracy": m["strict_accuracy"],
                               "strict_accuracy_joint": m["strict_accuracy_joint"],
                               "iit_accuracy": m["accuracy"], "iia_per_node": m.get("iia_per_node"),
                               "strict_accuracy_per_node": m.get("strict_accuracy_per_node")})
        report.reasons.pop("iia", None)
    where = results.check_no_links(args.out or "results", Path(args.out or "results") / results.safe_component(
        str(case.id)) / results.safe_component(model))
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


def check_eval_args(args) -> None:
    """Evaluation arguments checked before any model or data is built (one-line usage errors)."""
    if args.n is not None and args.n < 1:
        raise UsageError(f"-n must be at least 1 (got {args.n})")
    if args.what == "ig-steps" and any(s < 1 for s in args.steps):
        raise UsageError(f"--steps needs positive integers (got {' '.join(map(str, args.steps))})")
    if args.what == "overlap" and args.methods and len(args.methods) != 1:
        raise UsageError(f"eval overlap takes one method, got {len(args.methods)}: {' '.join(args.methods)}")
    if args.nodes:
        from core import naming

        bad = [node for node in args.nodes if not naming.is_node(node)]
        if bad:
            raise UsageError(f"--nodes: not node names: {' '.join(bad)} (heads a0.h1, MLPs m1, input, logits)")
    if getattr(args, "model_dir", None):
        if args.what not in ("node_realism", "gt_node_realism", "iit"):
            raise UsageError(f"eval {args.what} does not take --model-dir (roc and faithfulness read the model "
                             "from each result's provenance)")
        if not args.case:
            raise UsageError(f"eval {args.what} needs a case: -i ID")
        from cases import get_case

        try:
            get_case(args.case).model_ref(args.model, args.model_dir)
        except (ValueError, FileNotFoundError) as err:
            raise UsageError(str(err)) from None
    if args.case and args.what not in ("direction", "roc", "faithfulness"):
        from benchmark.direction import is_direction_case

        if is_direction_case(args.case):
            raise UsageError(f"eval {args.what} is for circuit cases; {args.case} is a direction case "
                             f"(run a direction method on it, then: eval direction RESULTS...)")


def cmd_eval(args) -> int:
    """Every evaluation reads result files through ``results``: bad ones are skipped with a warning
    each and counted at the end."""
    check_eval_args(args)
    if args.what in ("pareto", "agreement") and not args.methods:
        args.methods = ["eap", "eap-ig"]
    if args.out:
        check_out_dir(args.out, "--out")
    with results.skip_report() as skipped:
        try:
            return _cmd_eval(args)
        finally:
            report_skips(skipped, f"eval {args.what}")


def _cmd_eval(args) -> int:
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
