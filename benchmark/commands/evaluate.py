"""``eval roc|faithfulness|node_realism|gt_node_realism|iit`` (and the study's ``pareto``, ``agreement``,
``ig-steps``, ``overlap``, and ``direction``): evaluations of result files or of a case's model."""

from __future__ import annotations

from pathlib import Path

from benchmark import direction, direction_cli, study_cli
from benchmark.console import UsageError, check_out_dir, emit, json_stdout, log, setup_torch, user_input
from benchmark.mib import mib_faithfulness
from benchmark.resultdocs import report_skips, result_docs
from benchmark.runner import (DEFAULT_N, Job, build_problem, job_from_result, job_ground_truth, load_model_and_truth,
                              method_roc)
from benchmark.variants import run_labels
from cases import get_case
from cases.files import CaseFileError
from cases.tracr.siit import evaluate_trained
from core import naming, results
from core.circuit import Circuit
from core.graph import Graph
from core.protocols import MethodOutput
from core.results import RunResult
from core.registry import UnknownNameError
from evaluations.faithfulness import circuit_faithfulness, faithfulness_curve
from evaluations.iit import iit_report, to_csv, to_json
from evaluations.plots import plot_faithfulness, plot_roc
from evaluations.realism import gt_node_realism, node_realism


def _by_case(docs):
    groups: dict[tuple[str, str], list[tuple[Path, dict]]] = {}
    for path, doc in docs:
        if doc.get("status") == "ok":
            groups.setdefault((str(doc["case"]), RunResult.from_json(doc).model_label), []).append((path, doc))
    return groups


def _plot_dir(args, path: Path, doc: dict) -> Path:
    """Plots go to ``--out``/<case>/<model>/ (names made safe, no link followed), else next to the
    results: OUT/<case>/<model>/ when the result lies at OUT/<case>/<model>/<method>/<run>/result.json,
    otherwise the result's own directory (never above it)."""
    case, model = results.safe_component(doc["case"]), results.safe_component(RunResult.from_json(doc).model_label)
    if args.out:
        with user_input():  # a link inside the user's --out is refused (ValueError)
            return results.check_no_links(args.out, Path(args.out) / case / model)
    up = path.parent.parent.parent
    if (up.name, up.parent.name) == (model, case) and path.parent.parent.name == results.safe_component(doc["method"]):
        return up
    return path.parent


def _labels(docs) -> dict[str, str]:
    """Curve and row labels: one per method variant (``benchmark.variants``, named as the leaderboard
    over the same results names it), e.g. ``sp (node)``."""
    return run_labels(docs)


def recompute_roc(path: Path, doc: dict) -> dict:
    """Recompute a result's ROC against the case's current ground truth and rewrite it atomically
    (ground truths can be revised; the method's scores and sweeps stay as they were)."""
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
    docs = result_docs(args.paths)
    if args.recompute:
        setup_torch()
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
    setup_torch()
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
                get_case(doc["case"]).resolve_model(doc["model"])
                case, problem, engine = _engine_for(doc, args.ablation, args.n)
            except (UnknownNameError, FileNotFoundError, ValueError) as err:
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
    out_doc = {"cases": []}
    docs = result_docs(args.paths)
    labels = _labels(docs)  # one label per method variant, as the other evaluations name them
    for (case_id, model), items in sorted(_by_case(docs).items()):
        rows = []
        for path, doc in items:
            if not (doc.get("scores") or {}).get("edges"):
                log(f"skip {path}: no edge scores")
                continue
            with user_input():  # the case and model the result names
                get_case(doc["case"]).resolve_model(doc["model"])
            _, problem, engine = _engine_for(doc, args.ablation, args.n)
            res = mib_faithfulness(engine, problem.graph, doc)
            dest = results.write_json_atomic(path.parent / "faithfulness_mib.json",
                                             {"schema": results.SCHEMA, "result": str(path), "case": case_id,
                                              "model": model, "method": doc["method"], **res})
            rows.append({"method": labels[str(path)], "cpr": res["cpr"], "cmd": res["cmd"], "metric": res["metric"],
                         "selection": res["selection"], "path": str(dest)})
        if rows:
            out_doc["cases"].append({"case": case_id, "model": model, "methods": rows, "plot": None})
    return _report_cases(args, out_doc, lambda r: f"MIB CPR {_f(r['cpr'])}  CMD {_f(r['cmd'])}  "
                         f"({r['metric']}, {r['selection']})")


def _case_engine(args, ablation: str):
    if not args.case:
        raise UsageError(f"eval {args.what} needs a case: -i ID")
    model_dir = getattr(args, "model_dir", None)
    with user_input():  # the case and its model
        case = get_case(args.case)
        model = case.model_ref(args.model, model_dir).kind
    setup_torch()
    job = Job(case=str(case.id), method="none", model=model, seed=args.seed, n=args.n or DEFAULT_N, ablation=ablation,
              model_dir=model_dir)
    problem = build_problem(job, case, model)
    problem.truth = job_ground_truth(job, case, model)
    return case, model, problem


def cmd_eval_realism(args) -> int:
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
    case, model, problem = _case_engine(args, "corrupted")
    if problem.truth is None:
        raise UsageError(f"case {case.id} has no ground truth: eval iit needs one")
    report = iit_report(problem.model, problem.graph, problem.data, case.output_type, problem.truth,
                        engines={"corrupted": problem.engine()})
    if model != "tracr" and case.kind == "tracr":
        # a trained model has a high-level model: IIA and strict accuracy come from interchange
        # interventions on its held-out test split (the node effects above stay ablation-based)
        _, m = evaluate_trained(case, model, directory=getattr(args, "model_dir", None))
        report.summary.update({"iia": m["iia"], "strict_accuracy": m["strict_accuracy"],
                               "strict_accuracy_joint": m["strict_accuracy_joint"],
                               "iit_accuracy": m["accuracy"], "iia_per_node": m.get("iia_per_node"),
                               "strict_accuracy_per_node": m.get("strict_accuracy_per_node")})
        report.reasons.pop("iia", None)
    with user_input():  # a link inside the user's --out is refused (ValueError)
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
        bad = [node for node in args.nodes if not naming.is_node(node)]
        if bad:
            raise UsageError(f"--nodes: not node names: {' '.join(bad)} (heads a0.h1, MLPs m1, input, logits)")
    if getattr(args, "model_dir", None):
        if args.what not in ("node_realism", "gt_node_realism", "iit"):
            raise UsageError(f"eval {args.what} does not take --model-dir (roc and faithfulness read the model "
                             "from each result's provenance)")
        if not args.case:
            raise UsageError(f"eval {args.what} needs a case: -i ID")
        try:
            get_case(args.case).model_ref(args.model, args.model_dir)
        except (ValueError, FileNotFoundError) as err:
            raise UsageError(str(err)) from None
    if args.case and args.what not in ("direction", "roc", "faithfulness"):
        if direction.is_direction_case(args.case):
            raise UsageError(f"eval {args.what} is for circuit cases; {args.case} is a direction case "
                             f"(run a direction method on it, then: eval direction RESULTS...)")


def cmd_eval(args) -> int:
    """Every evaluation reads result files through ``results``: bad ones are skipped with a warning
    each and counted at the end."""
    with user_input():
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
        return direction_cli.cmd_eval_direction(args)  # checks its own input, then evaluates
    if args.what in STUDIES:  # the faithfulness study (EAP vs EAP-IG vs exact patching)
        args.policy = args.policy or "greedy"
        return getattr(study_cli, f"cmd_eval_{args.what.replace('-', '_')}")(args)
    return EVALUATIONS[args.what](args)


EVALUATIONS = {"roc": cmd_eval_roc, "faithfulness": cmd_eval_faithfulness, "node_realism": cmd_eval_realism,
               "gt_node_realism": cmd_eval_realism, "iit": cmd_eval_iit}
STUDIES = ("pareto", "agreement", "ig-steps", "overlap")
