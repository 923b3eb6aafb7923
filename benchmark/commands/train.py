"""``train iit`` (SIIT on Tracr cases, one recipe or the queue), ``train ioi`` and ``train direction``: the
flags of each trainer and its command (the training itself is library code: :mod:`benchmark.train`,
:mod:`benchmark.train_queue`, :mod:`cases.ioi.train`, :mod:`cases.direction.train`)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Sequence

import torch

from benchmark import train_queue
from benchmark.console import Parser, UsageError, check_out_dir, json_stdout, log, setup_torch, user_input
from benchmark.train import KIND_WEIGHTS, TrainingInputError, check_args, resolve_weights, train_case
from cases import get_case
from cases.direction.train import DirectionTrainConfig, train_direction_model
from cases.ioi import train as ioi_train
from training.registry import local_dir

WHAT = """what:
  iit        SIIT / IIT / natural models of a Tracr case (train iit --help)
  ioi        the IOI models (train ioi --help)
  direction  the known-direction sentiment model (train direction --help)
Models go to the user data directory unless --out says otherwise; they are used only when named with --model-dir.
"""


def cmd_train(args, extra: Sequence[str], parser) -> int:
    """``train iit|ioi|direction [FLAGS]``: the flags parsed by the trainer's own parser."""
    if args.what is None:
        if any(a in ("-h", "--help") for a in extra):
            sys.stdout.write(parser.format_help() + "\n" + WHAT)
            return 0
        raise UsageError("train needs what to train: iit, ioi or direction (train --help)")
    add_arguments, run = TRAINERS[args.what]
    p = Parser(prog=f"circuit-bench train {args.what}")
    add_arguments(p)
    ns = p.parse_args(list(extra))
    if getattr(ns, "seed", 0) is not None and getattr(ns, "seed", 0) < 0:
        raise UsageError(f"--seed must be >= 0, got {ns.seed}")
    setup_torch(getattr(ns, "device", None) or "cpu")  # -d cuda without CUDA: exit 2, like run/benchmark
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


# ---------------------------------------------------------------------------------------------------
# train iit: one recipe (-i ID[,ID...]) or the queue (--cases all|ID...)
# ---------------------------------------------------------------------------------------------------

def add_train_iit_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``train iit`` flags (InterpBench spellings kept as aliases)."""
    p.add_argument("-i", "--indices", "--case", dest="indices", default=None,
                   help="case id(s), comma-separated (e.g. 3 or 3,4,11), trained with exactly the flags given")
    p.add_argument("--model-kind", choices=sorted(KIND_WEIGHTS), default=None,
                   help="siit (default), iit (no strict loss) or natural (behaviour only)")
    p.add_argument("-iit", "--iit-weight", "--iit_weight", dest="iit_weight", type=float, default=None)
    p.add_argument("-s", "--strict-weight", "--strict_weight", dest="strict_weight", type=float, default=None)
    p.add_argument("-b", "--behavior-weight", "--behavior_weight", dest="behavior_weight", type=float, default=None)
    p.add_argument("-single-loss", "--use-single-loss", dest="single_loss", action="store_true",
                   help="one optimizer step on the weighted sum (default: sequential IIT, strict, behaviour steps)")
    p.add_argument("--siit-sampling", choices=["individual", "sample_all", "all", "any_size"], default="individual",
                   help="non-circuit nodes resampled per strict step: one, each with p=0.5 (InterpBench), all, or "
                        "any_size (a subset of uniform size 1..n: trains single nodes and all together)")
    p.add_argument("--strict-source-grad", action="store_true",
                   help="the strict loss also backpropagates through the source run (TrainConfig.strict_source_grad)")
    p.add_argument("--val-iia-sampling", choices=["random", "all"], default="all",
                   help="accepted for compatibility; validation IIA always averages over every HL node")
    p.add_argument("--model-pair", choices=["strict"], default="strict", help="accepted for compatibility")
    p.add_argument("--epochs", type=int, default=2000)
    p.add_argument("--early-stop", action="store_true",
                   help="stop when every trained metric reaches --early-stop-accuracy-threshold on validation data")
    p.add_argument("--early-stop-accuracy-threshold", type=float, default=99.5, help="percent (default 99.5)")
    p.add_argument("--early-stop-criterion", choices=["mean", "min", "min_joint"], default="mean",
                   help="mean over nodes (InterpBench); min: every HL node's IIA and every non-circuit node's "
                        "strict accuracy must reach the threshold; min_joint: also the strict accuracy with "
                        "every non-circuit node resampled at once")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-scheduler", choices=["", "none", "linear", "cosine"], default="")
    p.add_argument("--final-lr", type=float, default=2e-4)
    p.add_argument("--clip-grad-norm", type=float, default=0.1)
    p.add_argument("--atol", type=float, default=0.05, help="numerical outputs agree when |LL - HL| < atol")
    p.add_argument("--num-samples", type=int, default=12000, help="distinct inputs drawn (all of them if fewer exist)")
    p.add_argument("--scored-positions", choices=["real", "defined"], default="real",
                   help="real: every non-BOS non-PAD position; defined: only where the RASP program's output "
                        "is not None (and, for an interchange, where the source's is not None either)")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--min-steps-per-epoch", type=int, default=1,
                   help="repeat passes (with fresh pairs) until an epoch has this many steps (small datasets)")
    p.add_argument("--eval-every", type=int, default=1)
    p.add_argument("--eval-pairs", type=int, default=2048)
    p.add_argument("--same-size", action="store_true", help="keep the HL's layers and heads")
    p.add_argument("--compression-ratio", type=float, default=None, help="override the LL width ratio")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--out", "--output-dir", dest="out", default=None,
                   help="root of the model directories (default: $CIRCUIT_BENCH_MODELS, else circuit-bench's user "
                        "data directory, e.g. ~/.local/share/circuit-bench/models); load one with --model-dir")
    p.add_argument("--resume", action="store_true", help="continue from OUT/<case>/<kind>/checkpoint.pt")
    p.add_argument("--keep-checkpoint", action="store_true")
    p.add_argument("--no-restore-best", dest="restore_best", action="store_false",
                   help="keep the last epoch's weights (default: the best validation epoch's)")
    p.add_argument("-d", "--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--json", action="store_true", help="print one JSON document (the metadata of each model)")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="stop a run after this much training CPU time (seconds of this process, so the same "
                        "budget on a loaded machine; over resumed sessions too)")
    add_queue_arguments(p)
    return p


def add_queue_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("queue (--cases): train what is missing with the recipe ladder")
    g.add_argument("--cases", nargs="+", default=None, metavar="ID",
                   help="'all' (every non-trivial Tracr case) or case ids, trained in this order")
    g.add_argument("--kinds", nargs="+", choices=train_queue.KIND_ORDER, default=None,
                   help="model kinds (default: --model-kind if given, else siit iit natural)")
    g.add_argument("--recipes", nargs="+", choices=train_queue.RECIPE_NAMES, default=None,
                   help=f"rungs of the ladder to use, in ladder order (default: all; {', '.join(train_queue.RECIPE_NAMES)})")
    g.add_argument("--workers", type=int, default=1, help="cases trained in parallel (processes; default 1)")
    g.add_argument("--exclude", nargs="+", default=(), metavar="ID", help="case ids to skip")
    g.add_argument("--exclude-file", default=None, metavar="PATH",
                   help="a file of case ids to skip (whitespace/comma separated, # comments), re-read before each case")
    g.add_argument("--include-shipped", action="store_true",
                   help="also train the (case, kind)s that ship a model (into OUT)")
    g.add_argument("--bar", type=float, default=99.0,
                   help="percent each trained metric must reach on the test split (default 99)")


def parse_train_iit(argv: Sequence[str]) -> argparse.Namespace:
    """A ``train iit`` command line as its namespace (the queue's recipes are command lines)."""
    return add_train_iit_arguments(argparse.ArgumentParser(allow_abbrev=False)).parse_args(list(argv))


def run_train_iit(args) -> int:
    """Train every case in ``args.indices`` (or the queue, ``args.cases``); returns the exit status (1 if any
    case failed). Bad input is a UsageError, before any case is trained."""
    torch.set_num_threads(1)
    if getattr(args, "cases", None) is not None:
        return _run_queue(args)
    with user_input():
        ids = _train_iit_ids(args)
    docs, failed = [], 0
    for cid in ids:
        try:
            docs.append(train_case(cid, args, log))
        except TrainingInputError as err:  # found before this case trained (a checkpoint in the way, ...)
            raise UsageError(str(err)) from err
        except Exception as err:  # noqa: BLE001 - one failing case does not stop the others
            failed += 1
            log(f"case {cid}: ERROR {type(err).__name__}: {err}")
            docs.append({"case": cid, "status": "error", "error": f"{type(err).__name__}: {err}"})
    if args.json:
        slim = [{k: v for k, v in d.items() if k not in ("history",)} for d in docs]
        print(json.dumps(slim if len(slim) > 1 else slim[0], indent=1, default=str))
    return 1 if failed else 0


def _train_iit_ids(args) -> list[str]:
    """The validation phase of ``train iit -i``: the flags and the case ids (ValueError, UnknownNameError)."""
    if getattr(args, "kinds", None):
        raise UsageError("--kinds is for the queue (--cases); with -i use --model-kind")
    args.model_kind = args.model_kind or "siit"
    check_args(args)
    resolve_weights(args)
    if args.indices is None:
        raise UsageError("give the cases: -i ID[,ID...] (one recipe, the flags given) or --cases all|ID... (the queue)")
    ids = [i.strip() for i in str(args.indices).split(",") if i.strip()]
    if not ids:
        raise UsageError("-i/--indices needs at least one case id")
    for cid in ids:
        get_case(cid)  # an unknown id: one line
    return ids


def _run_queue(args) -> int:
    with user_input():
        queue = train_queue.plan_queue(args, parse_train_iit)
    try:
        return train_queue.run_queue(queue)
    except TrainingInputError as err:  # an attempt's checkpoint that cannot be read: refused before it trains
        raise UsageError(str(err)) from err


# ---------------------------------------------------------------------------------------------------
# train ioi
# ---------------------------------------------------------------------------------------------------

def add_train_ioi_arguments(parser: argparse.ArgumentParser) -> None:
    d = ioi_train.DEFAULTS
    parser.add_argument("--kind", "--model-kind", dest="kind", default="siit", choices=ioi_train.KINDS,
                        help="siit (SIIT against the HL model) or natural (behaviour only)")
    parser.add_argument("--out", default=None, help="model directory (default: the user data directory's "
                                                     "models/ioi/KIND; load it with --model-dir)")
    parser.add_argument("--n-layers", type=int, default=d["n_layers"])
    parser.add_argument("--n-heads", type=int, default=d["n_heads"])
    parser.add_argument("--d-model", type=int, default=d["d_model"])
    parser.add_argument("--d-mlp", type=int, default=d["d_mlp"])
    parser.add_argument("--epochs", type=int, default=d["epochs"])
    parser.add_argument("--lr", type=float, default=d["lr"])
    parser.add_argument("-b", "--batch-size", type=int, default=d["batch_size"])
    parser.add_argument("--seed", type=int, default=d["seed"])
    parser.add_argument("--n-train", type=int, default=d["n_train"], help="train prompts")
    parser.add_argument("--n-eval", type=int, default=d["n_eval"], help="validation and test prompts (each)")
    parser.add_argument("-iit", "--iit-weight", type=float, default=d["iit_weight"])
    parser.add_argument("-s", "--strict-weight", type=float, default=d["strict_weight"])
    parser.add_argument("--behavior-weight", type=float, default=d["behavior_weight"])
    parser.add_argument("--siit-sampling", default=d["siit_sampling"], choices=("individual", "sample_all", "all"))
    parser.add_argument("--lr-scheduler", default=d["lr_scheduler"], choices=("none", "linear", "cosine"))
    parser.add_argument("--early-stop-threshold", type=float, default=d["early_stop_threshold"],
                        help="stop when val accuracy, IIA and strict accuracy all reach it (fraction)")
    parser.add_argument("--no-early-stop", action="store_true")
    parser.add_argument("--clip-grad-norm", type=float, default=d["clip_grad_norm"], help="0 = no clipping")
    parser.add_argument("--final-lr", type=float, default=d["final_lr"], help="last lr of the linear/cosine schedule")
    parser.add_argument("--sequential", action="store_true",
                        help="three optimizer steps per batch (IIT, strict, behaviour) instead of one on the weighted sum")
    parser.add_argument("--strict-source-grad", action="store_true",
                        help="the strict loss also backpropagates through the source run (TrainConfig.strict_source_grad)")
    parser.add_argument("--abc-sources", action="store_true",
                        help="add the ABC twins of the train prompts as interchange sources (never scored as bases)")
    parser.add_argument("--normalization", default="none", choices=ioi_train.NORMALIZATIONS, help="LayerNorm of the LL model")
    parser.add_argument("--eval-pairs", type=int, default=d["eval_pairs"], help="validation pairs per epoch")
    parser.add_argument("--checkpoint", default=None, help="trainer state file, written every epoch and resumed from")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON document")


def run_train_ioi(args: argparse.Namespace) -> int:
    out = args.out or str(local_dir() / "ioi" / args.kind)
    cmd = "python main.py train ioi " + " ".join(shlex.quote(a) for a in sys.argv[3:]) if sys.argv[1:3] == ["train", "ioi"] else None
    kwargs = dict(kind=args.kind, n_layers=args.n_layers, n_heads=args.n_heads, d_model=args.d_model,
                  d_mlp=args.d_mlp, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
                  n_train=args.n_train, n_eval=args.n_eval, normalization=args.normalization,
                  abc_sources=args.abc_sources)
    opts = dict(clip_grad_norm=args.clip_grad_norm, final_lr=args.final_lr, single_loss=not args.sequential,
                eval_pairs=args.eval_pairs, strict_source_grad=args.strict_source_grad, iit_weight=args.iit_weight, strict_weight=args.strict_weight, behavior_weight=args.behavior_weight,
                siit_sampling=args.siit_sampling, lr_scheduler=args.lr_scheduler,
                early_stop_threshold=args.early_stop_threshold, early_stop=not args.no_early_stop)
    with user_input():  # bad values are usage errors; failures during training are not
        ioi_train.check_options(kwargs, opts, args.checkpoint)
    metrics = ioi_train.train_ioi(out, device=args.device, command=cmd, progress=True, checkpoint=args.checkpoint,
                                  **kwargs, **opts)
    text = json.dumps(metrics, indent=None if args.json else 1, default=str)
    print(text)
    return 0


# ---------------------------------------------------------------------------------------------------
# train direction
# ---------------------------------------------------------------------------------------------------

def add_train_direction_arguments(parser: argparse.ArgumentParser) -> None:
    d = DirectionTrainConfig()
    parser.add_argument("--out", default=None, help="model directory (default: the user data directory's "
                                                     "models/direction/siit)")
    for name in ("n_layers", "d_model", "n_heads", "d_mlp", "layer", "steps", "batch_size", "n_train", "n_eval",
                 "eval_every", "seed"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    for name in ("lr", "weight_decay", "iit_weight", "strict_weight", "aux_weight", "clean_weight", "match_weight",
                 "label_smoothing", "noise_scale", "sentiment_scale", "intensity_scale", "template_scale", "topic_scale"):
        parser.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(d, name))
    parser.add_argument("--json", action="store_true", help="print the training metadata as one JSON document")


def run_train_direction(args: argparse.Namespace) -> int:
    """Bad flag values are usage errors (one line, exit 2)."""
    fields = DirectionTrainConfig.__dataclass_fields__
    with user_input():
        cfg = DirectionTrainConfig(**{k: getattr(args, k) for k in fields})
        cfg.validate()
    out = args.out or str(local_dir() / "direction" / "siit")
    argv = sys.argv[1:]
    cmd = ("python main.py train direction " + " ".join(shlex.quote(a) for a in argv[2:])).strip() \
        if argv[:2] == ["train", "direction"] else None
    _, meta = train_direction_model(cfg, out, command=cmd, log=lambda m: print(m, file=sys.stderr, flush=True))
    summary = {"out": out, "train_seconds": meta["train_seconds"], "test": meta["test"], "command": cmd}
    print(json.dumps(summary, indent=None if args.json else 1))
    return 0


TRAINERS = {"iit": (add_train_iit_arguments, run_train_iit), "ioi": (add_train_ioi_arguments, run_train_ioi),
            "direction": (add_train_direction_arguments, run_train_direction)}
