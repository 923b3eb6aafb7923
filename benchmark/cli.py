"""``python main.py ...`` / ``circuit-bench ...``: the command line.

Unknown commands, flags, case ids and method names are one-line errors naming close matches, exit
status 2. ``--json`` prints exactly one JSON document on stdout; everything else goes to stderr.
Heavy imports (torch, transformer_lens, jax) happen inside the commands that need them.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import os
import sys
from typing import Any, Sequence

from benchmark.console import (EXIT_FAILED, EXIT_USAGE, METRIC_CHOICES, POSITIVE_INT, SEED, Parser, UsageError,  # noqa: F401
                               _hint, _progress, _setup_torch, check_out_dir, emit, finite_float, json_stdout, log,
                               quiet_transformer_lens, _REAL_STDOUT, _option_strings)

# ---------------------------------------------------------------------------------------------------
# Method flags, derived from each method's constructor (hyper-parameters as constructor arguments)
# ---------------------------------------------------------------------------------------------------

def _annotation_kind(param: inspect.Parameter) -> tuple[type, bool]:
    """(element type, is_list) from a parameter's default and (string) annotation."""
    ann = str(param.annotation) if param.annotation is not inspect.Parameter.empty else ""
    default = param.default
    is_list = any(k in ann for k in ("list", "tuple", "Sequence")) or isinstance(default, (list, tuple))
    for name, typ in (("bool", bool), ("int", int), ("float", float), ("str", str)):
        if name in ann.replace("list", "").replace("Sequence", ""):
            return typ, is_list
    if default is None or default is inspect.Parameter.empty:
        return str, is_list
    if isinstance(default, (list, tuple)):
        return (type(default[0]) if default else float), True
    return type(default), is_list


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def method_parser(method_name: str, cls) -> Parser:
    p = Parser(prog=f"circuit-bench run {method_name}", add_help=False)
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or name == "truth":
            continue
        typ, is_list = _annotation_kind(param)
        typ = finite_float if typ is float else typ  # thresholds, lambdas, ...: finite at parse time
        flags = [f"--{name.replace('_', '-')}"] + ([f"--{name}"] if "_" in name else [])
        default = argparse.SUPPRESS  # only flags the user gave are passed; the method keeps its defaults
        if typ is bool and not is_list:  # --flag, --flag true|false, --no-flag
            p.add_argument(*flags, dest=name, nargs="?", const=True, type=_parse_bool, default=default)
            p.add_argument(f"--no-{name.replace('_', '-')}", dest=name, action="store_false", default=default)
        elif is_list:
            p.add_argument(*flags, dest=name, type=typ, nargs="+", default=default)
        else:
            p.add_argument(*flags, dest=name, type=typ, default=default)
    return p


def method_help(method_name: str, cls) -> str:
    """``run METHOD --help``: the method's own flags with their defaults, and its default sweep."""
    doc = (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ")
    lines = [f"method {method_name} ({cls.__module__}:{cls.__qualname__}): {doc}".rstrip(), "", "method flags:"]
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or name == "truth":
            continue
        typ, is_list = _annotation_kind(param)
        flag = f"--{name.replace('_', '-')}"
        if typ is bool and not is_list:
            flag += f" / --no-{name.replace('_', '-')}"
        else:
            flag += f" {typ.__name__.upper()}{' ...' if is_list else ''}"
        default = "required" if param.default is inspect.Parameter.empty else f"default {param.default!r}"
        lines.append(f"  {flag:<42} {default}")
    sweep = cls.default_sweep() if hasattr(cls, "default_sweep") else {}
    if sweep:
        lines += ["", "default sweep (used by both `run` and `benchmark` unless you give the parameter or "
                      + ", ".join(f"--{v.replace('_', '-')}" for v in cls.sweep_single.values()) + "):"]
        for k, v in sweep.items():
            vals = ", ".join(f"{x:g}" for x in v) if isinstance(v, list) else repr(v)
            lines.append(f"  {k} ({len(v) if isinstance(v, list) else 1} values): {vals}")
    else:
        lines += ["", "default sweep: none (one run with the defaults above)"]
    return "\n".join(lines) + "\n"


def check_jobs(jobs) -> None:
    """Validate before work: resolve every job's model and method parameters (ValueError / TypeError /
    FileNotFoundError from a constructor or a model directory become one-line usage errors, exit 2)."""
    from benchmark.runner import validate_jobs

    try:
        validate_jobs(jobs)
    except (ValueError, TypeError, FileNotFoundError) as err:
        raise UsageError(str(err).splitlines()[0] if str(err) else type(err).__name__) from None


def parse_method_flags(method_name: str, extra: Sequence[str]) -> tuple[str, dict[str, Any]]:
    from methods import method_class

    # InterpBench spelling: ``run eap --integrated-grad-steps=N`` is EAP-IG.
    if method_name == "eap" and any(a.split("=")[0] in ("--integrated-grad-steps", "--integrated_grad_steps")
                                    for a in extra):
        method_name = "eap-ig"
    cls = method_class(method_name)
    ns, rest = method_parser(method_name, cls).parse_known_args(list(extra))
    if rest:
        p = method_parser(method_name, cls)
        hint = _hint(p, "unrecognized arguments: " + " ".join(rest)) or _other_methods_hint(method_name, rest)
        raise UsageError(f"unrecognized arguments for method {method_name}: {' '.join(rest)}{hint}")
    return method_name, vars(ns)


def _other_methods_hint(method_name: str, rest: Sequence[str]) -> str:
    """A flag that belongs to another built-in method: say which."""
    from methods import method_class, method_names

    words = [w.split("=")[0] for w in rest if w.startswith("--")]
    for other in method_names("circuit"):  # a circuit run: hint circuit methods only
        if other == method_name:
            continue
        try:
            known = [o for o in _option_strings(method_parser(other, method_class(other))) if "_" not in o]
        except Exception:  # noqa: BLE001 -- a broken plug-in must not hide the real error
            continue
        close = [m for w in words for m in difflib.get_close_matches(w, known, n=1, cutoff=0.8)]
        if close:
            return f" ({close[0]} is a flag of {other})"
    return ""


# ---------------------------------------------------------------------------------------------------
# The parser
# ---------------------------------------------------------------------------------------------------

def build_parser() -> tuple[Parser, dict[str, Parser]]:
    top = Parser(prog="circuit-bench", description="A benchmark harness for circuit-discovery methods.")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    subs: dict[str, Parser] = {}

    cases = sub.add_parser("cases", help="list, show and build cases")
    csub = cases.add_subparsers(dest="cases_command", metavar="{list,show,build}", parser_class=Parser)
    p = csub.add_parser("list", help="list the cases")
    p.add_argument("--kind", choices=["tracr", "siit", "ioi", "toy", "direction"],
                   help="siit: the Tracr cases with shipped SIIT models")
    p.add_argument("--json", action="store_true")
    subs["cases list"] = p
    p = csub.add_parser("show", help="show one case")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    subs["cases show"] = p
    p = csub.add_parser("build", help="precompile Tracr cases into the model cache")
    p.add_argument("ids", nargs="*", help="case ids (default: every Tracr case)")
    p.add_argument("--json", action="store_true")
    subs["cases build"] = p
    subs["cases"] = cases

    p = sub.add_parser("run", help="run a discovery method on a case (run METHOD --help: its flags)", add_help=False)
    p.add_argument("-h", "--help", action="store_true", help="show this help (with METHOD: its flags and defaults)")
    p.add_argument("method", nargs="?", help="acdc, sp, eap, eap-ig, exact, random, or pkg.module:Class")
    p.add_argument("--method", dest="method_opt", metavar="METHOD", help="same as the positional METHOD")
    _job_flags(p)
    p.add_argument("--resume", action="store_true", help="skip the run if its result is already finished")
    p.add_argument("--wandb-project", default=None, metavar="NAME",
                   help="log the run to W&B project NAME (optional extra circuit-bench[wandb]; offline unless "
                        "WANDB_MODE=online)")
    subs["run"] = p

    p = sub.add_parser("eval", help="evaluate results: roc, faithfulness, node_realism, gt_node_realism, iit")
    p.add_argument("what", choices=["roc", "faithfulness", "node_realism", "gt_node_realism", "iit",
                                    "pareto", "agreement", "ig-steps", "overlap", "direction"])
    p.add_argument("paths", nargs="*", help="result.json files or result directories (roc, faithfulness)")
    p.add_argument("-i", "--case", dest="case", help="case id (node_realism, gt_node_realism, iit)")
    p.add_argument("--model", help="model kind (tracr, siit, natural, ...): the shipped model of that kind")
    p.add_argument("--model-dir", default=None, metavar="DIR",
                   help="a trained model directory (e.g. from `train iit`) instead of the shipped model")
    p.add_argument("--nodes", nargs="+", help="hypothesis nodes (node_realism)")
    p.add_argument("--ablation", default=None, choices=["corrupted", "mean", "zero", "optimal"])
    p.add_argument("--policy", default=None, choices=["topk-abs", "topk-signed", "greedy", "mib"],
                   help="edge selection: faithfulness defaults to topk-abs, the studies to greedy (EAP-IG paper); "
                        "mib: MIB's CPR (signed scores) and CMD (absolute scores) protocol exactly")
    p.add_argument("--methods", nargs="+", default=None,
                   help="pareto/agreement: methods compared with exact patching (NAME or NAME[k=v,...]; default "
                        "eap eap-ig); overlap: one method (default eap-ig)")
    p.add_argument("--steps", nargs="+", type=POSITIVE_INT, default=[1, 2, 5, 10, 20, 50], help="ig-steps: IG step counts")
    p.add_argument("--ig-variant", default="inputs", choices=["inputs", "activations", "clean-corrupted"])
    p.add_argument("--cases", nargs="+", default=None, help="overlap: settings CASE[:MODEL][@SEED]")
    p.add_argument("--no-prune", action="store_true", help="faithfulness: keep dangling edges")
    p.add_argument("--recompute", action="store_true",
                   help="roc: recompute against the case's current ground truth and update the result files")
    p.add_argument("-n", "--n-examples", dest="n", type=POSITIVE_INT, default=None)
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--out", default=None, help="where to write plots/CSV (default: next to the results)")
    p.add_argument("--json", action="store_true")
    subs["eval"] = p

    p = sub.add_parser("train", help="train SIIT / IOI / direction models (train iit --help, train ioi --help, "
                                     "train direction --help)", add_help=False)
    p.add_argument("what", nargs="?", choices=["iit", "ioi", "direction"])
    subs["train"] = p

    p = sub.add_parser("benchmark", help="run methods over cases (sweeps, resume) and write results")
    p.add_argument("--cases", nargs="+", default=None, help="case ids (default: every non-trivial Tracr case)")
    p.add_argument("--methods", nargs="+", default=["eap", "eap-ig", "acdc", "sp"],
                   help="methods, each with its default sweep (see run METHOD --help)")
    p.add_argument("--model", default=None, help="model kind: the shipped model of that kind")
    p.add_argument("--model-dir", default=None, metavar="DIR",
                   help="a trained model directory instead of the shipped model (one case only)")
    p.add_argument("--out", default="results")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--seeds", type=SEED, nargs="+", default=None, metavar="SEED",
                   help="data seeds: every (case, method) runs once per seed (e.g. --seeds 0 1 2; overrides "
                        "--seed); the leaderboard then reports the spread over seeds and bootstraps over both")
    p.add_argument("-n", "--n-examples", dest="n", type=POSITIVE_INT, default=None)
    p.add_argument("--ablation", default="corrupted", choices=["corrupted", "mean", "zero", "optimal"])
    p.add_argument("--metric", default=None, choices=METRIC_CHOICES,
                   help="loss methods minimise (see run --help); default: each case's own")
    p.add_argument("--workers", type=POSITIVE_INT, default=1,
                   help="parallel jobs: processes (local executor) or CPUs of the local Ray instance (ray)")
    p.add_argument("--executor", default="local", choices=["local", "ray"],
                   help="local (in-process, or a process pool with --workers N) or ray (a local Ray instance, "
                        "or the cluster at --ray-address / RAY_ADDRESS; optional extra circuit-bench[ray])")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="with --executor ray: an existing Ray cluster (e.g. 10.0.0.1:6379 or auto); default: "
                        "$RAY_ADDRESS, else a local instance")
    p.add_argument("--ray-split", action="store_true",
                   help="with --executor ray: one task per job instead of one per case (spreads a large case "
                        "over workers; each task rebuilds the case's activations)")
    p.add_argument("--ray-retries", type=int, default=2, metavar="N",
                   help="with --executor ray: resubmit a task lost with its worker or node at most N times")
    p.add_argument("--ray-pip", action="store_true",
                   help="with --executor ray and a cluster: also install circuit-bench's requirements on the "
                        "workers through Ray's runtime environment (nodes with only Python and Ray)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--wandb-project", default=None, metavar="NAME",
                   help="log each finished job as a W&B run in project NAME (optional extra circuit-bench[wandb]; "
                        "offline unless WANDB_MODE=online)")
    p.add_argument("--json", action="store_true")
    subs["benchmark"] = p

    p = sub.add_parser("export", help="export a result as a MIB/EAP-IG graph JSON (export mib RESULT --out FILE)")
    p.add_argument("format", choices=["mib"])
    p.add_argument("result", help="a result.json (or its run directory)")
    p.add_argument("--out", required=True, help="the JSON file to write")
    p.add_argument("--signed", action="store_true", help="write the signed scores (MIB's CPR runs) instead of |score|")
    p.add_argument("--top-n", dest="top_n", type=int, default=None,
                   help="mark the top N edges by |score| in_graph (default: every edge)")
    p.add_argument("--json", action="store_true")
    subs["export"] = p

    p = sub.add_parser("import", help="import a MIB/EAP-IG graph JSON as a result (import mib FILE -i CASE --out DIR)")
    p.add_argument("format", choices=["mib"])
    p.add_argument("file", help="the MIB graph JSON")
    p.add_argument("-i", "--case", dest="case", required=True, help="the case whose model the file describes")
    p.add_argument("--model", default=None, help="model kind (tracr, siit, natural, ...)")
    p.add_argument("--out", default="results", help="results directory (default: results/)")
    p.add_argument("--name", default="mib", help="method label: the result's method is mib-import:NAME")
    p.add_argument("--json", action="store_true")
    subs["import"] = p

    p = sub.add_parser("leaderboard", help="aggregate results into a leaderboard")
    p.add_argument("--out", default="results", help="results directory")
    p.add_argument("--format", default="md", choices=["md", "csv", "html"],
                   help="html: a self-contained page (tables, per-run detail, the ROC/faithfulness plots embedded)")
    p.add_argument("--score-floor", type=float, default=None, metavar="R",
                   help="floored edge AUROC column: scores with |s| <= R * max|s| tie with 0 (default 1e-6)")
    p.add_argument("--compare", nargs=2, default=None, metavar=("A", "B"),
                   help="paired comparison of two variants (labels as in the table, or MODEL:LABEL)")
    p.add_argument("--with-reference", nargs="?", const="", default=None, metavar="PATH",
                   help="rank these results against the shipped reference (or PATH) without rerunning baselines")
    p.add_argument("--write-reference", default=None, metavar="PATH",
                   help="write the results under --out as a compact reference file (gzip JSON lines)")
    p.add_argument("--json", action="store_true")
    subs["leaderboard"] = p
    return top, subs


def _job_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--case", dest="case", help="case id (see `cases list`; required)")
    p.add_argument("--model", default=None, help="model kind: tracr (compiled), siit, natural, ...: always the "
                                                 "shipped model of that kind")
    p.add_argument("--model-dir", default=None, metavar="DIR",
                   help="a trained model directory (e.g. from `train iit`) instead of the shipped model")
    p.add_argument("--out", default="results", help="results directory (default: results/)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("-n", "--n-examples", dest="n", type=POSITIVE_INT, default=None, help="dataset size (default 200)")
    p.add_argument("--ablation", default="corrupted", choices=["corrupted", "mean", "zero", "optimal"])
    p.add_argument("--metric", default=None, choices=METRIC_CHOICES,
                   help="loss methods minimise: KL/MSE to the model (faithfulness, kl), CE/MSE to labels (task, ce, "
                        "mse) or minus the answer-vs-wrong-answer logit difference (logit-diff); default: the "
                        "case's own (faithfulness for built-in cases)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--json", action="store_true", help="print the result document as JSON on stdout")


# ---------------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------------

def cmd_cases_list(args) -> int:
    from cases import case_ids, get_case

    rows = []
    siit = args.kind == "siit"  # the Tracr cases with a shipped SIIT model
    for cid in case_ids("tracr" if siit else args.kind):
        c = get_case(cid)
        if siit and "siit" not in c.models:
            continue
        rows.append({"id": c.id, "kind": c.kind, "output_type": c.output_type, "models": list(c.models),
                     "flags": dict(c.flags), "description": c.description})
    with json_stdout(args.json) as out:
        if args.json:
            emit(rows, out)
        else:
            print(case_table(rows), file=out)
    return 0


def case_table(rows: list[dict]) -> str:
    """``cases list``: a header and aligned columns (id, kind, output, models, description [flags])."""
    head = ("id", "kind", "output", "models", "description [flags]")
    body = [(str(r["id"]), r["kind"], r["output_type"], ",".join(r["models"]),
             r["description"][:70] + (f" [{', '.join(r['flags'])}]" if r["flags"] else "")) for r in rows]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(4)]
    fmt = lambda x: "  ".join([v.ljust(w) for v, w in zip(x[:4], widths)] + [x[4]])  # noqa: E731
    return "\n".join(fmt(x).rstrip() for x in [head, *body])


def cmd_cases_show(args) -> int:
    from cases import get_case

    case = get_case(args.id)
    with json_stdout(args.json) as out:
        info = case.info()
        info["model_files"] = model_locations(case)
        if args.json:
            emit(info, out)
        else:
            for k, v in info.items():
                if k == "model_files":
                    print("model files:", file=out)
                    for kind, where in v.items():
                        sha = (where.get("weights_sha256") or "")[:12]
                        print(f"  {kind}: {where.get('source', 'error')} {where.get('directory') or where.get('error', '')}"
                              + (f" (sha256 {sha})" if sha else ""), file=out)
                else:
                    print(f"{k}: {v}", file=out)
    return 0


def model_locations(case) -> dict[str, dict]:
    """Which models of a case exist and where: each shipped kind (source, directory, sha256 prefix) and
    the locally trained directories (``train``'s default output), which load only with ``--model-dir``."""
    out: dict[str, dict] = {}
    for kind in case.models:
        try:
            ref = case.model_ref(kind)
        except Exception as err:  # noqa: BLE001 -- show what is wrong instead of failing `cases show`
            out[kind] = {"error": f"{type(err).__name__}: {err}"}
            continue
        out[kind] = {"source": ref.source, "directory": ref.directory, "weights_sha256": ref.sha256}
    if case.kind == "tracr":
        from training.registry import trained_models

        for kind, d in trained_models(case.id).items():
            out[f"{kind} (trained, --model-dir)"] = {"source": "trained", "directory": d}
    elif case.kind == "ioi":
        from cases.ioi.case import _trained

        for kind, d in _trained().items():
            out[f"{kind} (trained, --model-dir)"] = {"source": "trained", "directory": d}
    return out


def cmd_cases_build(args) -> int:
    from cases import case_ids, get_case

    ids = args.ids or case_ids("tracr")
    for cid in ids:
        get_case(cid)  # unknown ids fail before any work
    report, failed = [], 0
    with json_stdout(args.json) as out:
        for cid in _progress(ids, "compiling"):
            case = get_case(cid)
            if not hasattr(case, "compiled_model"):
                raise UsageError(f"case {cid} is not a Tracr case; only Tracr cases are compiled")
            import time
            t = time.perf_counter()
            try:
                case.compiled_model()
                report.append({"id": cid, "status": "ok", "seconds": time.perf_counter() - t})
            except Exception as err:  # noqa: BLE001 -- one failing case does not stop the others
                failed += 1
                report.append({"id": cid, "status": "error", "error": f"{type(err).__name__}: {err}"})
                log(f"case {cid}: {type(err).__name__}: {err}")
        if args.json:
            emit(report, out)
        else:
            print(f"built {len(ids) - failed}/{len(ids)} cases", file=out)
    return EXIT_FAILED if failed else 0


def cmd_run(args, extra: Sequence[str]) -> int:
    from benchmark.runner import DEFAULT_N, Job, run_job
    from cases import get_case

    method = args.method_opt or args.method
    if args.help:
        return _run_help(method)
    if not args.case:
        raise UsageError("run needs a case: -i ID (see `cases list`)")
    if not method:
        raise UsageError("run needs a METHOD (acdc, sp, eap, eap-ig, exact, random, or pkg.module:Class)")
    if args.method and args.method_opt and args.method != args.method_opt:
        raise UsageError(f"two different methods given: {args.method!r} and --method {args.method_opt!r}")
    from benchmark.direction import cmd_run_direction, is_direction_case
    from methods.directions import is_direction_method

    if is_direction_method(method) or is_direction_case(args.case):  # direction methods and cases (issue 11)
        return cmd_run_direction(args, method, extra)
    case = get_case(args.case)
    metric = case_metric(case, args.metric)
    method, params = parse_method_flags(method, extra)
    from methods import method_class

    params = method_class(method).with_default_sweep(params)  # the same defaults as `benchmark`
    job = Job(case=str(case.id), method=method, model=args.model, params=params, seed=args.seed,
              n=args.n or DEFAULT_N, ablation=args.ablation, metric=metric, device=args.device, out=args.out,
              model_dir=args.model_dir)
    check_jobs([job])  # every method value and the model, before anything is built
    check_out_dir(args.out)  # then --out (created and probed): a bad value above leaves nothing behind
    _setup_torch(args.device)
    tracker = None
    if args.wandb_project:
        from benchmark.tracking import WandbTracker
        tracker = WandbTracker(args.wandb_project, out=args.out)  # imports wandb: fails before any work
    with json_stdout(args.json) as out:
        doc = run_job(job, resume=args.resume, log=log)
        if tracker is not None and not doc.get("skipped"):
            tracker.log_result(doc)
        if args.json:
            emit(doc, out)
        else:
            print(summary_line(doc), file=out)
    return 0 if doc.get("status") in ("ok", "claimed") else EXIT_FAILED


def _run_help(method: str | None) -> int:
    _, subs = build_parser()
    text = subs["run"].format_help()
    if method:
        from methods import method_class
        from methods.directions import direction_method_class, is_direction_method

        cls = direction_method_class(method) if is_direction_method(method) else method_class(method)
        text += "\n" + method_help(method, cls)
    else:
        from methods import method_names

        text += "\nmethods: " + ", ".join(method_names()) + " (run METHOD --help: the method's flags)\n"
    sys.stdout.write(text)
    return 0
def case_metric(case, metric: str | None) -> str:
    """The canonical metric of a run (``--metric`` or the case's default), or a usage error before any work."""
    try:
        return case.check_metric(metric)
    except ValueError as err:
        raise UsageError(f"--metric: {err}") from None


def summary_line(doc: dict) -> str:
    where = doc.get("path", "")
    if doc.get("status") == "claimed":
        o = doc.get("claimed_by") or {}
        return (f"case {doc['case']} / {doc.get('model')} / {doc['method']}: claimed by another run (pid "
                f"{o.get('pid', '?')} on {o.get('host', '?')}); left to it -> {where}")
    if doc.get("skipped"):
        return f"case {doc['case']} / {doc.get('model')} / {doc['method']}: skipped (finished) -> {where}"
    if doc.get("status") != "ok":
        return f"case {doc['case']} / {doc.get('model')} / {doc['method']}: ERROR {doc.get('error')} -> {where}"
    roc = doc.get("roc") or {}

    def fmt(x):
        return "nan" if x is None else f"{x:.3f}"
    e, n = roc.get("edges") or {}, roc.get("nodes") or {}
    if roc.get("skipped"):
        return (f"case {doc['case']} / {doc['model']} / {doc['method']}: {roc['skipped']}, "
                f"{doc['timing']['seconds']:.2f}s -> {where}")
    return (f"case {doc['case']} / {doc['model']} / {doc['method']}: edge AUROC {fmt(e.get('auroc'))}, "
            f"node AUROC {fmt(n.get('auroc'))}, {doc['timing']['seconds']:.2f}s -> {where}")


def cmd_train(args, extra: Sequence[str]) -> int:
    """``train iit`` (SIIT on a Tracr case) and ``train ioi``: flags parsed by the trainers' own parsers."""
    if args.what is None:
        if any(a in ("-h", "--help") for a in extra):
            _, subs = build_parser()
            sys.stdout.write(subs["train"].format_help() + "\nwhat:\n  iit        SIIT / IIT / natural models of a "
                             "Tracr case (train iit --help)\n  ioi        the IOI models (train ioi --help)\n"
                             "  direction  the known-direction sentiment model (train direction --help)\n"
                             "Models go to the user data directory unless --out says otherwise; they are used only "
                             "when named with --model-dir.\n")
            return 0
        raise UsageError("train needs what to train: iit, ioi or direction (train --help)")
    p = Parser(prog=f"circuit-bench train {args.what}")
    if args.what == "iit":
        from benchmark.train import add_train_iit_arguments, run_train_iit
        add_train_iit_arguments(p)
        run = run_train_iit
    elif args.what == "direction":
        from cases.direction.train import add_train_direction_arguments, run_train_direction
        add_train_direction_arguments(p)
        run = run_train_direction
    else:
        from cases.ioi.train import add_train_ioi_arguments, run_train_ioi
        add_train_ioi_arguments(p)
        run = run_train_ioi
    ns = p.parse_args(list(extra))
    if getattr(ns, "seed", 0) is not None and getattr(ns, "seed", 0) < 0:
        raise UsageError(f"--seed must be >= 0, got {ns.seed}")
    _setup_torch(getattr(ns, "device", None) or "cpu")  # -d cuda without CUDA: exit 2, like run/benchmark
    if getattr(ns, "out", None):
        check_out_dir(ns.out)
    with json_stdout(getattr(ns, "json", False)) as out:
        if getattr(ns, "json", False):
            real, sys.stdout = sys.stdout, out
            try:
                return run(ns)
            finally:
                sys.stdout = real
        return run(ns)


def dispatch(args, extra: Sequence[str], subs: dict[str, Parser]) -> int:
    cmd = args.command
    if cmd is None:
        raise UsageError("a COMMAND is needed: cases, run, eval, train, benchmark, leaderboard, export or import (see --help)")
    if cmd == "run":
        return cmd_run(args, extra)
    if cmd == "train":
        return cmd_train(args, extra)
    key = f"cases {args.cases_command}" if cmd == "cases" and args.cases_command else cmd
    if cmd == "eval":  # `eval roc --recompute FILE`: paths after a flag are paths too
        args.paths = list(args.paths) + [e for e in extra if not e.startswith("-")]
        extra = [e for e in extra if e.startswith("-")]
    if extra:
        subs[key].error(f"unrecognized arguments: {' '.join(extra)}")
    if cmd == "cases":
        if not args.cases_command:
            raise UsageError("cases needs a subcommand: list, show or build")
        return {"list": cmd_cases_list, "show": cmd_cases_show, "build": cmd_cases_build}[args.cases_command](args)
    from benchmark import commands  # evaluation, benchmark and leaderboard commands

    return getattr(commands, f"cmd_{cmd}")(args)


def main(argv: Sequence[str] | None = None) -> int:
    from core.registry import UnknownNameError

    parser, subs = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    redirect = "--json" in argv  # one JSON document on stdout: everything else (library prints) to stderr
    if redirect:
        _REAL_STDOUT.append(sys.stdout)
        sys.stdout = sys.stderr
    try:
        args, extra = parser.parse_known_args(argv)
        return dispatch(args, extra, subs)
    except UsageError as err:
        print(f"circuit-bench: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except UnknownNameError as err:
        print(f"circuit-bench: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (TypeError, ValueError, ImportError) as err:
        # bad parameter values for a method or evaluation: still one line, still a usage problem
        print(f"circuit-bench: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `circuit-bench cases list | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("circuit-bench: interrupted (finished results are kept; re-run with --resume)", file=sys.stderr)
        return 130
    finally:
        if redirect:
            sys.stdout = _REAL_STDOUT.pop()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
