"""SIIT training for Tracr cases, the library of ``python main.py train iit`` (its flags, compatible with
InterpBench's, are in :mod:`benchmark.commands.train`).

Writes one model directory per case, ``OUT/<case>/<kind>/`` (default OUT: ``$CIRCUIT_BENCH_MODELS``, else
the user data directory's ``models/``; never read in place of a shipped model: run it with
``--model-dir OUT/<case>/<kind>``), checkpoints there every epoch (``checkpoint.pt``, removed when the run finishes
unless ``--keep-checkpoint``), and continues an interrupted run with ``--resume``.

``--model-kind`` picks the defaults of the loss weights: ``siit`` (-iit 1 -s 0.4 -b 1), ``iit``
(strict weight 0) and ``natural`` (behaviour only); an explicit weight that contradicts the kind is
an error.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import torch

from cases import get_case
from cases.tracr.siit import build_ll, tracr_data, tracr_setup
from core.results import versions
from training import model_files, registry
from training.trainer import SIITTrainer, TrainConfig, load_checkpoint_file

KIND_WEIGHTS = {"siit": (1.0, 0.4, 1.0), "iit": (1.0, 0.0, 1.0), "natural": (0.0, 0.0, 1.0)}


class TrainingInputError(ValueError):
    """Bad input to a training run (a flag value, a case that cannot be trained, a checkpoint in the way
    or unreadable): found before the run trains, reported by the CLI as a usage error (exit status 2)."""


def _usage(msg: str) -> TrainingInputError:
    return TrainingInputError(msg)


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


def check_args(args) -> None:
    """The ``train iit`` values a run needs in range (TrainingInputError naming the flag otherwise)."""
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
    """Train one Tracr case as ``args`` says (``train iit -i``'s namespace) and write its model directory;
    returns the model's metadata. Bad input raises TrainingInputError before anything is trained."""
    case = get_case(case_id)
    out_dir, finished = _check_case(case, args, log)
    return finished if finished is not None else _fit_case(case, args, out_dir, log)


def _check_case(case, args, log) -> tuple[Path, dict | None]:
    """The model directory of a run, and its metadata if ``--resume`` finds it already trained; bad input
    (not a Tracr case, weights, a checkpoint that is unreadable or in the way) raises TrainingInputError."""
    if getattr(case, "kind", None) != "tracr":
        raise _usage(f"case {case.id} is not a Tracr case; train iit trains Tracr cases")
    resolve_weights(args)
    out_root = Path(args.out) if args.out else registry.local_dir()
    out_dir = Path(getattr(args, "out_dir", None) or out_root / str(case.id) / args.model_kind)
    ckpt = out_dir / "checkpoint.pt"
    if args.resume and model_files.is_model_dir(out_dir):
        meta = model_files.read_metadata(out_dir)
        capped = meta.get("time_capped") and ckpt.exists() and (args.max_seconds is None or (
            meta.get("max_seconds") is not None and args.max_seconds > meta["max_seconds"]))
        if meta.get("status") == "finished" and (not ckpt.exists() or (meta.get("time_capped") and not capped)):
            log(f"case {case.id}: {out_dir} is already trained; nothing to resume")
            return out_dir, meta
    if args.resume and ckpt.exists():  # a bad or planted checkpoint is bad input: before any work
        try:
            load_checkpoint_file(ckpt)
        except ValueError as err:
            raise _usage(str(err)) from None
    elif ckpt.exists():
        raise _usage(f"{ckpt} exists: pass --resume to continue it, or remove it to start again")
    return out_dir, None


def train_config(args) -> TrainConfig:
    """The trainer's configuration from ``train iit``'s flags (loss weights resolved for the model kind)."""
    iit, strict, beh = resolve_weights(args)
    return TrainConfig(iit_weight=iit, strict_weight=strict, behavior_weight=beh, single_loss=args.single_loss,
                       siit_sampling=args.siit_sampling, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       lr_scheduler=args.lr_scheduler, final_lr=args.final_lr, clip_grad_norm=args.clip_grad_norm,
                       early_stop=args.early_stop, early_stop_threshold=args.early_stop_accuracy_threshold / 100,
                       early_stop_criterion=args.early_stop_criterion,
                       atol=args.atol, seed=args.seed, eval_every=args.eval_every, eval_pairs=args.eval_pairs,
                       min_steps_per_epoch=args.min_steps_per_epoch, restore_best=args.restore_best,
                       strict_source_grad=args.strict_source_grad)


def _fit_case(case, args, out_dir: Path, log) -> dict:
    ckpt = out_dir / "checkpoint.pt"
    torch.manual_seed(args.seed)
    setup = tracr_setup(case, seed=args.seed, same_size=args.same_size, ratio=args.compression_ratio)
    data = tracr_data(case, args.num_samples, seed=args.seed, val_fraction=args.val_fraction,
                      test_fraction=args.test_fraction, scored=args.scored_positions)
    ll = build_ll(setup.ll_config, device=args.device)
    cfg = train_config(args)
    trainer = SIITTrainer(setup.hl, ll, setup.corr, data, setup.output_type, cfg, device=args.device, log=log)
    if args.resume and ckpt.exists():
        trainer.load_checkpoint(ckpt)
        log(f"case {case.id}: resumed from {ckpt} at epoch {trainer.epoch}")
    log(f"case {case.id}: training {args.model_kind} (iit {cfg.iit_weight}, strict {cfg.strict_weight}, behaviour "
        f"{cfg.behavior_weight}) LL {setup.ll_config['n_layers']}L/{setup.ll_config['n_heads']}H/"
        f"d{setup.ll_config['d_model']}; data {data.meta['n_train']}/{data.meta['n_val']}/{data.meta['n_test']} "
        f"-> {out_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    summary = trainer.fit(checkpoint=ckpt, progress=not args.no_progress, max_seconds=args.max_seconds)
    test = trainer.evaluate("test", per_node=True)
    meta = _metadata(case, args, cfg, setup, data, trainer, summary, test, time.perf_counter() - t0)
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


def _metadata(case, args, cfg, setup, data, trainer, summary: dict, test: dict, session_seconds: float) -> dict:
    """The model directory's ``training_args.json``."""
    val = trainer.history[-1] if trainer.history else {}
    return {
        **({"recipe": args.recipe} if getattr(args, "recipe", None) else {}),
        "schema": 1, "status": "finished", "case": str(case.id), "model_kind": args.model_kind,
        "seed": args.seed, "command": getattr(args, "command_line", None) or _command(args, case.id),
        "train_config": cfg.to_json(), "ll_config": setup.ll_config,
        "data": data.meta, "output_type": setup.output_type,
        "metrics": {"test": test, "val": {k[4:]: v for k, v in val.items() if k.startswith("val_")}},
        "epochs_run": summary["epochs"], "stopped_early": summary["stopped_early"], "best_epoch": summary["best_epoch"],
        "time_capped": summary["time_capped"], "max_seconds": args.max_seconds,
        "timing": {"train_seconds": summary["train_seconds"], "train_cpu_seconds": summary["cpu_seconds"],
                   "this_session_seconds": session_seconds},
        "history": trim_history(trainer.history), "history_kept": HISTORY_KEPT,
        "hl_ground_truth": setup.hl_truth.to_json(), "versions": versions(),
    }


HISTORY_KEPT = "the evaluated epochs (every --eval-every) and the last one; values to 6 significant digits"


def trim_history(history: list[dict]) -> list[dict]:
    """What audits a run, small enough to ship: the rows of the epochs that were evaluated on validation
    data (and the last row), each value rounded to 6 significant digits."""
    keep = [r for i, r in enumerate(history) if i == len(history) - 1 or any(k.startswith("val_") for k in r)]
    return [{k: float(f"{v:.6g}") if isinstance(v, float) else v for k, v in r.items()} for r in keep]


def _command(args, case_id) -> str:
    return "python main.py train iit " + " ".join(shlex.quote(a) for a in sys.argv[3:]) if len(sys.argv) > 3 else ""
