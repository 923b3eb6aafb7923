"""``python main.py ...`` / ``circuit-bench ...``: the command line, its parser and the dispatch.

Each command lives in a module of :mod:`benchmark.commands`, loaded by name (:data:`COMMANDS`) only when
it runs, so ``--help`` and ``cases list`` stay light. A command checks the user's input first (inside
``console.user_input()``): unknown commands, flags, case ids and method names, and bad values, are
one-line errors naming close matches, exit status 2. A failure after the work started keeps its
traceback (exit status 1); ``--debug`` shows the traceback of a usage error too. ``--json`` prints exactly
one JSON document on stdout; everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from benchmark.console import _REAL_STDOUT, EXIT_USAGE, METRIC_CHOICES, POSITIVE_INT, SEED, Parser, UsageError

# command -> (module, function); the commands in RAW take the arguments their own parsers read
COMMANDS = {
    "cases list": ("benchmark.commands.cases", "cmd_cases_list"),
    "cases show": ("benchmark.commands.cases", "cmd_cases_show"),
    "cases build": ("benchmark.commands.cases", "cmd_cases_build"),
    "run": ("benchmark.commands.run", "cmd_run"),
    "train": ("benchmark.commands.train", "cmd_train"),
    "eval": ("benchmark.commands.evaluate", "cmd_eval"),
    "benchmark": ("benchmark.commands.bench", "cmd_benchmark"),
    "leaderboard": ("benchmark.commands.leaderboard", "cmd_leaderboard"),
    "export": ("benchmark.commands.mib", "cmd_export"),
    "import": ("benchmark.commands.mib", "cmd_import"),
}
RAW = ("run", "train")  # called as fn(args, extra, parser): the method's / trainer's flags are in extra
DEBUG = "--debug"


def build_parser() -> tuple[Parser, dict[str, Parser]]:
    top = Parser(prog="circuit-bench", description="A benchmark harness for circuit-discovery methods.")
    top.add_argument(DEBUG, action="store_true",
                     help="show the traceback of every error, usage errors too (anywhere on the command line)")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    subs: dict[str, Parser] = {}
    for add in (_cases_parsers, _run_parsers, _eval_parsers, _train_parsers, _benchmark_parsers, _mib_parsers,
                _leaderboard_parsers):
        add(sub, subs)
    return top, subs


def _cases_parsers(sub, subs: dict[str, Parser]) -> None:
    """``cases list|show|build``."""
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


def _run_parsers(sub, subs: dict[str, Parser]) -> None:
    """``run METHOD``."""
    p = sub.add_parser("run", help="run a discovery method on a case (run METHOD --help: its flags)", add_help=False)
    p.add_argument("-h", "--help", action="store_true", help="show this help (with METHOD: its flags and defaults)")
    p.add_argument("method", nargs="?", help="a method name (listed below) or pkg.module:Class")
    p.add_argument("--method", dest="method_opt", metavar="METHOD", help="same as the positional METHOD")
    _job_flags(p)
    p.add_argument("--resume", action="store_true", help="skip the run if its result is already finished")
    p.add_argument("--wandb-project", default=None, metavar="NAME",
                   help="log the run to W&B project NAME (optional extra circuit-bench[wandb]; offline unless "
                        "WANDB_MODE=online)")
    subs["run"] = p


def _eval_parsers(sub, subs: dict[str, Parser]) -> None:
    """``eval WHAT``."""
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
    p.add_argument("--score-floor", type=float, default=None, metavar="R",
                   help="agreement: scores with |s| <= R * max|s| (either side) tie with 0 before the statistics "
                        "(exact patching's no-effect edges are float dust, e.g. 1e-15)")
    p.add_argument("--cases", nargs="+", default=None, help="overlap: settings CASE[:MODEL][@SEED]")
    p.add_argument("--no-prune", action="store_true", help="faithfulness: keep dangling edges")
    p.add_argument("--recompute", action="store_true",
                   help="roc: recompute against the case's current ground truth and update the result files")
    p.add_argument("-n", "--n-examples", dest="n", type=POSITIVE_INT, default=None)
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--out", default=None, help="where to write plots/CSV (default: next to the results)")
    p.add_argument("--json", action="store_true")
    subs["eval"] = p


def _train_parsers(sub, subs: dict[str, Parser]) -> None:
    """``train iit|ioi|direction`` (the trainers parse their own flags)."""
    p = sub.add_parser("train", help="train SIIT / IOI / direction models (train iit --help, train ioi --help, "
                                     "train direction --help)", add_help=False)
    p.add_argument("what", nargs="?", choices=["iit", "ioi", "direction"])
    subs["train"] = p


def _benchmark_parsers(sub, subs: dict[str, Parser]) -> None:
    """``benchmark``."""
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
    p.add_argument("--model-seeds", type=SEED, nargs="+", default=None, metavar="SEED",
                   help="training seeds of the shipped trained model (--model siit|iit|natural): every (case, "
                        "method) also runs on each seed's model (cases/siit/models/<case>/<kind>-seed<S>; cases show "
                        "ID lists them); the leaderboard pools them with the data seeds")
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


def _mib_parsers(sub, subs: dict[str, Parser]) -> None:
    """``export mib`` and ``import mib``."""
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


def _leaderboard_parsers(sub, subs: dict[str, Parser]) -> None:
    """``leaderboard``."""
    p = sub.add_parser("leaderboard", help="aggregate results into a leaderboard")
    p.add_argument("--out", default="results", help="results directory")
    p.add_argument("--format", default="md", choices=["md", "csv", "html"],
                   help="html: a self-contained page (tables, per-run detail, the ROC/faithfulness plots embedded)")
    p.add_argument("--score-floor", type=float, default=None, metavar="R",
                   help="floored edge AUROC column: scores with |s| <= R * max|s| tie with 0 (default 1e-6)")
    p.add_argument("--compare", nargs=2, default=None, metavar=("A", "B"),
                   help="paired comparison of two variants (labels as in the table, or MODEL:LABEL)")
    p.add_argument("--compare-metric", default="edge_auroc", choices=("edge_auroc", "node_auroc", "cpr", "cmd"),
                   help="the metric of --compare (default edge_auroc; cpr/cmd need eval faithfulness results)")
    p.add_argument("--with-reference", nargs="?", const="", default=None, metavar="PATH",
                   help="rank these results against the shipped reference (or PATH) without rerunning baselines")
    p.add_argument("--write-reference", default=None, metavar="PATH",
                   help="write the results under --out as a compact reference file (gzip JSON lines)")
    p.add_argument("--extend-reference", action="store_true",
                   help="with --write-reference: keep the runs of the existing file at PATH that --out does not "
                        "redo (same settings and weights), so new cases are added without rerunning the old")
    p.add_argument("--json", action="store_true")
    subs["leaderboard"] = p


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


def dispatch(args, extra: Sequence[str], subs: dict[str, Parser]) -> int:
    cmd = args.command
    if cmd is None:
        raise UsageError("a COMMAND is needed: cases, run, eval, train, benchmark, leaderboard, export or import (see --help)")
    key = f"cases {args.cases_command}" if cmd == "cases" and args.cases_command else cmd
    if cmd in RAW:
        return _command(key)(args, extra, subs[key])
    if cmd == "eval":  # `eval roc --recompute FILE`: paths after a flag are paths too
        args.paths = list(args.paths) + [e for e in extra if not e.startswith("-")]
        extra = [e for e in extra if e.startswith("-")]
    if extra:
        subs[key].error(f"unrecognized arguments: {' '.join(extra)}")
    if cmd == "cases" and not args.cases_command:
        raise UsageError("cases needs a subcommand: list, show or build")
    return _command(key)(args)


def _command(key: str):
    """The function of a command, its module imported now (and only now)."""
    module, name = COMMANDS[key]
    return getattr(importlib.import_module(module), name)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG in argv
    argv = [a for a in argv if a != DEBUG]
    parser, subs = build_parser()
    redirect = "--json" in argv  # one JSON document on stdout: everything else (library prints) to stderr
    if redirect:
        _REAL_STDOUT.append(sys.stdout)
        sys.stdout = sys.stderr
    try:
        args, extra = parser.parse_known_args(argv)
        return dispatch(args, extra, subs)
    except UsageError as err:
        if debug:
            raise
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
