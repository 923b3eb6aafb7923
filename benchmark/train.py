"""``python main.py train iit``: SIIT training for Tracr cases (flags compatible with InterpBench's).

Writes one model directory per case, ``OUT/<case>/<kind>/`` (default OUT: ``$CIRCUIT_BENCH_MODELS``, else
the user data directory's ``models/``; never read in place of a shipped model: run it with
``--model-dir OUT/<case>/<kind>``), checkpoints there every epoch (``checkpoint.pt``, removed when the run finishes
unless ``--keep-checkpoint``), and continues an interrupted run with ``--resume``.

``--model-kind`` picks the defaults of the loss weights: ``siit`` (-iit 1 -s 0.4 -b 1), ``iit``
(strict weight 0) and ``natural`` (behaviour only); an explicit weight that contradicts the kind is
an error.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from core.results import versions

KIND_WEIGHTS = {"siit": (1.0, 0.4, 1.0), "iit": (1.0, 0.0, 1.0), "natural": (0.0, 0.0, 1.0)}


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
    from benchmark.train_queue import add_queue_arguments
    add_queue_arguments(p)
    return p


def _usage(msg: str):
    from benchmark.console import UsageError

    return UsageError(msg)


def resolve_weights(args) -> tuple[float, float, float]:
    defaults = KIND_WEIGHTS[args.model_kind]
    got = tuple(d if v is None else v for v, d in zip((args.iit_weight, args.strict_weight, args.behavior_weight), defaults))
    for name, v in zip(("--iit-weight", "--strict-weight", "--behavior-weight"), got):
        if not v >= 0:
            raise _usage(f"{name} must be >= 0, got {v}")
    iit, strict, beh = got
    if args.model_kind == "natural" and (iit or strict):
        raise _usage(f"--model-kind natural trains on behaviour only; got -iit {iit} -s {strict}")
    if args.model_kind == "iit" and strict:
        raise _usage(f"--model-kind iit has no strict loss; got -s {strict}")
    if args.model_kind == "siit" and not strict:
        raise _usage("--model-kind siit needs a strict weight > 0 (use --model-kind iit for -s 0)")
    if iit == strict == beh == 0:
        raise _usage("all loss weights are 0: nothing to train")
    return got


def _check(args) -> None:
    for name in ("epochs", "batch_size", "num_samples", "eval_every", "eval_pairs", "min_steps_per_epoch"):
        if getattr(args, name) < 1:
            raise _usage(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not args.lr > 0:
        raise _usage(f"--lr must be > 0, got {args.lr}")
    if not 0 <= args.early_stop_accuracy_threshold <= 100:
        raise _usage(f"--early-stop-accuracy-threshold is a percentage in [0, 100], got {args.early_stop_accuracy_threshold}")
    if not (0 < args.test_fraction < 1 and 0 < args.val_fraction < 1 and args.val_fraction + args.test_fraction < 1):
        raise _usage("--val-fraction and --test-fraction must be in (0, 1) and sum to less than 1")
    if args.max_seconds is not None and not args.max_seconds > 0:
        raise _usage(f"--max-seconds must be > 0, got {args.max_seconds}")
    if args.compression_ratio is not None and not args.compression_ratio > 0:
        raise _usage(f"--compression-ratio must be > 0, got {args.compression_ratio}")


def train_case(case_id: str, args, log) -> dict:
    import torch

    from cases import get_case
    from training import model_files, registry
    from cases.tracr.siit import build_ll, tracr_data, tracr_setup
    from training.trainer import SIITTrainer, TrainConfig

    case = get_case(case_id)
    if getattr(case, "kind", None) != "tracr":
        raise _usage(f"case {case_id} is not a Tracr case; train iit trains Tracr cases")
    iit, strict, beh = resolve_weights(args)
    out_root = Path(args.out) if args.out else registry.local_dir()
    out_dir = Path(getattr(args, "out_dir", None) or out_root / str(case.id) / args.model_kind)
    ckpt = out_dir / "checkpoint.pt"
    if args.resume and model_files.is_model_dir(out_dir):
        meta = model_files.read_metadata(out_dir)
        capped = meta.get("time_capped") and ckpt.exists() and (args.max_seconds is None or (
            meta.get("max_seconds") is not None and args.max_seconds > meta["max_seconds"]))
        if meta.get("status") == "finished" and (not ckpt.exists() or (meta.get("time_capped") and not capped)):
            log(f"case {case.id}: {out_dir} is already trained; nothing to resume")
            return meta
    if args.resume and ckpt.exists():  # a bad or planted checkpoint is bad input: before any work
        from training.trainer import load_checkpoint_file
        try:
            load_checkpoint_file(ckpt)
        except ValueError as err:
            raise _usage(str(err)) from None
    torch.manual_seed(args.seed)
    setup = tracr_setup(case, seed=args.seed, same_size=args.same_size, ratio=args.compression_ratio)
    data = tracr_data(case, args.num_samples, seed=args.seed, val_fraction=args.val_fraction,
                      test_fraction=args.test_fraction, scored=args.scored_positions)
    ll = build_ll(setup.ll_config, device=args.device)
    cfg = TrainConfig(iit_weight=iit, strict_weight=strict, behavior_weight=beh, single_loss=args.single_loss,
                      siit_sampling=args.siit_sampling, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      lr_scheduler=args.lr_scheduler, final_lr=args.final_lr, clip_grad_norm=args.clip_grad_norm,
                      early_stop=args.early_stop, early_stop_threshold=args.early_stop_accuracy_threshold / 100,
                      early_stop_criterion=args.early_stop_criterion,
                      atol=args.atol, seed=args.seed, eval_every=args.eval_every, eval_pairs=args.eval_pairs,
                      min_steps_per_epoch=args.min_steps_per_epoch, restore_best=args.restore_best,
                      strict_source_grad=args.strict_source_grad)
    trainer = SIITTrainer(setup.hl, ll, setup.corr, data, setup.output_type, cfg, device=args.device, log=log)
    if args.resume and ckpt.exists():
        trainer.load_checkpoint(ckpt)
        log(f"case {case.id}: resumed from {ckpt} at epoch {trainer.epoch}")
    elif ckpt.exists():
        raise _usage(f"{ckpt} exists: pass --resume to continue it, or remove it to start again")
    log(f"case {case.id}: training {args.model_kind} (iit {iit}, strict {strict}, behaviour {beh}) "
        f"LL {setup.ll_config['n_layers']}L/{setup.ll_config['n_heads']}H/d{setup.ll_config['d_model']}; "
        f"data {data.meta['n_train']}/{data.meta['n_val']}/{data.meta['n_test']} -> {out_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    summary = trainer.fit(checkpoint=ckpt, progress=not args.no_progress, max_seconds=args.max_seconds)
    test = trainer.evaluate("test", per_node=True)
    val = trainer.history[-1] if trainer.history else {}
    meta = {
        **({"recipe": args.recipe} if getattr(args, "recipe", None) else {}),
        "schema": 1, "status": "finished", "case": str(case.id), "model_kind": args.model_kind,
        "seed": args.seed, "command": getattr(args, "command_line", None) or _command(args, case.id),
        "train_config": cfg.to_json(), "ll_config": setup.ll_config,
        "data": data.meta, "output_type": setup.output_type,
        "metrics": {"test": test, "val": {k[4:]: v for k, v in val.items() if k.startswith("val_")}},
        "epochs_run": summary["epochs"], "stopped_early": summary["stopped_early"], "best_epoch": summary["best_epoch"],
        "time_capped": summary["time_capped"], "max_seconds": args.max_seconds,
        "timing": {"train_seconds": summary["train_seconds"], "train_cpu_seconds": summary["cpu_seconds"],
                   "this_session_seconds": time.perf_counter() - t0},
        "history": trim_history(trainer.history), "history_kept": HISTORY_KEPT,
        "hl_ground_truth": setup.hl_truth.to_json(), "versions": versions(),
    }
    save_ll = build_ll(setup.ll_config, device="cpu", graph_flags=True)
    save_ll.load_state_dict({k: v.cpu() for k, v in trainer.ll.state_dict().items()})
    model_files.save_model_dir(out_dir, save_ll, ground_truth=setup.ll_truth, metadata=meta,
                               correspondence=setup.corr)
    if not args.keep_checkpoint and not summary["time_capped"]:  # a capped run can go on with a larger cap
        ckpt.unlink(missing_ok=True)
    log(f"case {case.id}: test IIA {test['iia']:.4f}, accuracy {test['accuracy']:.4f}, strict accuracy "
        f"{test['strict_accuracy']:.4f} (all non-circuit nodes at once {test['strict_accuracy_joint']:.4f}) after {summary['epochs']} epochs ({summary['train_seconds']:.0f}s) -> {out_dir}")
    log(f"case {case.id}: use it with --model-dir {out_dir} (--model {args.model_kind} is the shipped model)")
    return meta


HISTORY_KEPT = "the evaluated epochs (every --eval-every) and the last one; values to 6 significant digits"


def trim_history(history: list[dict]) -> list[dict]:
    """What audits a run, small enough to ship: the rows of the epochs that were evaluated on validation
    data (and the last row), each value rounded to 6 significant digits."""
    keep = [r for i, r in enumerate(history) if i == len(history) - 1 or any(k.startswith("val_") for k in r)]
    return [{k: float(f"{v:.6g}") if isinstance(v, float) else v for k, v in r.items()} for r in keep]


def _command(args, case_id) -> str:
    return "python main.py train iit " + " ".join(shlex.quote(a) for a in sys.argv[3:]) if len(sys.argv) > 3 else ""


def run_train_iit(args) -> int:
    """Train every case in ``args.indices``; returns the exit status (1 if any case failed)."""
    import torch

    torch.set_num_threads(1)
    if getattr(args, "cases", None) is not None:
        from benchmark.train_queue import run_queue
        return run_queue(args)
    if getattr(args, "kinds", None):
        raise _usage("--kinds is for the queue (--cases); with -i use --model-kind")
    args.model_kind = args.model_kind or "siit"
    _check(args)
    resolve_weights(args)
    if args.indices is None:
        raise _usage("give the cases: -i ID[,ID...] (one recipe, the flags given) or --cases all|ID... (the queue)")
    ids = [i.strip() for i in str(args.indices).split(",") if i.strip()]
    if not ids:
        raise _usage("-i/--indices needs at least one case id")
    from cases import get_case
    for cid in ids:
        try:
            get_case(cid)
        except Exception as err:  # unknown id -> one line
            raise _usage(str(err)) from None

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    docs, failed = [], 0
    for cid in ids:
        try:
            docs.append(train_case(cid, args, log))
        except Exception as err:  # noqa: BLE001 - one failing case does not stop the others
            if type(err).__name__ == "UsageError":
                raise
            failed += 1
            log(f"case {cid}: ERROR {type(err).__name__}: {err}")
            docs.append({"case": cid, "status": "error", "error": f"{type(err).__name__}: {err}"})
    if args.json:
        slim = [{k: v for k, v in d.items() if k not in ("history",)} for d in docs]
        print(json.dumps(slim if len(slim) > 1 else slim[0], indent=1, default=str))
    return 1 if failed else 0


def main(argv=None) -> int:  # pragma: no cover - convenience entry point
    p = argparse.ArgumentParser(prog="train iit", allow_abbrev=False)
    add_train_iit_arguments(p)
    args = p.parse_args(argv)
    args.command_line = "python main.py train iit " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    try:
        return run_train_iit(args)
    except Exception as err:
        if type(err).__name__ != "UsageError":
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
