"""Train the IOI models: ``siit`` (SIIT against the HL model of :mod:`cases.ioi.hl_model`) and
``natural`` (the same LL, behaviour loss only).

LL model: a HookedTransformer over the IOI word vocabulary (97 tokens, context 16), 6 layers x 4
heads, d_model 64, d_head 16, d_mlp 256, GELU, **no LayerNorm** (so every edge's contribution is
linear up to the attention softmax and MLP nonlinearities: patching, EAP and the ground-truth check
see the same additive residual stream the trainer shaped), standard learned positional embedding.

Training uses the shared SIIT trainer (:class:`training.trainer.SIITTrainer`): per batch, one HL
node is interchanged (IIT loss, cross-entropy to the HL answer at the last position), a random half
of the non-circuit heads/MLPs is resampled from the source (strict loss, the base answer must stay)
and the behaviour loss; one optimizer step on the weighted sum (``--sequential``: three steps); fresh
(base, source) pairs every epoch. ``--strict-source-grad`` lets the strict loss backpropagate through
the source run as well (see :class:`training.trainer.TrainConfig`); ``--normalization LN`` gives
the LL model LayerNorm (default: none). Train prompts come from the generator's ``train`` split, validation and test prompts from its
``test`` split (disjoint by construction).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from cases.ioi import circuit as ioi_circuit
from cases.ioi.data import SEQ_LEN, build_tokenizer, encode, sample_prompts
from cases.ioi.hl_model import build_hl_model
from core.results import versions

KINDS = ("siit", "natural")
TOKENIZER_FILE = "tokenizer.json"
DEFAULTS: dict[str, Any] = dict(n_layers=6, n_heads=4, d_model=64, d_mlp=256, epochs=10, lr=2e-3, batch_size=128,
                                seed=0, n_train=12800, n_eval=1000, iit_weight=1.0, strict_weight=0.4,
                                behavior_weight=1.0, siit_sampling="sample_all", clip_grad_norm=1.0,
                                lr_scheduler="linear", final_lr=1e-4, early_stop_threshold=0.995, eval_every=1,
                                eval_pairs=512, single_loss=True, normalization=None, strict_source_grad=False)
NORMALIZATIONS = ("none", "LN", "LNPre")


def ll_config(n_layers: int = 6, n_heads: int = 4, d_model: int = 64, d_mlp: int = 256, seed: int = 0,
              normalization: str | None = None) -> dict:
    """HookedTransformerConfig arguments of the IOI LL model (see the module doc). ``normalization``:
    None / "none" (the default, no LayerNorm) or a TransformerLens ``normalization_type`` ("LN", "LNPre")."""
    if normalization in (None, "none"):
        normalization = None
    elif normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}")
    if d_model % n_heads:
        raise ValueError(f"d_model ({d_model}) must be a multiple of n_heads ({n_heads})")
    tok = build_tokenizer()
    return dict(n_layers=n_layers, n_heads=n_heads, d_model=d_model, d_head=d_model // n_heads, d_mlp=d_mlp,
                d_vocab=len(tok), d_vocab_out=len(tok), n_ctx=SEQ_LEN, act_fn="gelu", normalization_type=normalization,
                attention_dir="causal", positional_embedding_type="standard", default_prepend_bos=False,
                seed=seed)


def ioi_siit_data(n_train: int, n_eval: int, seed: int, abc_sources: bool = False):
    """Train prompts from the ``train`` split; val and test (``n_eval`` each) from the ``test`` split.
    The mask scores the last position only.

    ``abc_sources``: the ABC twins of the train prompts join the train split with an empty mask: they
    are never bases with a loss, but half of the sources are ABC prompts, so the IIT loss sees
    S-inhibition interchanged from prompts without a duplicate and the strict loss teaches the
    non-circuit nodes to carry nothing that differs between a prompt and its ABC twin (the
    corruption every IOI evaluation patches from)."""
    from cases.ioi.data import corrupt
    from training.trainer import SIITData, Split

    prompts = sample_prompts(n_train, seed, "train")
    train = encode(prompts).tokens
    held = encode(sample_prompts(2 * n_eval, seed, "test")).tokens
    mask = lambda t: torch.zeros_like(t, dtype=torch.bool).index_fill_(1, torch.tensor([SEQ_LEN - 1]), True)  # noqa: E731
    train_mask = mask(train)
    if abc_sources:
        abc = encode(corrupt(prompts, "abc", seed)).tokens
        train, train_mask = torch.cat([train, abc]), torch.cat([train_mask, torch.zeros_like(abc, dtype=torch.bool)])
    data = SIITData(Split(train, train_mask), Split(held[:n_eval], mask(held[:n_eval])),
                    Split(held[n_eval:], mask(held[n_eval:])),
                    meta={"n_train": n_train, "n_val": n_eval, "n_test": n_eval, "seed": seed,
                          "abc_sources": abc_sources})
    data.check_disjoint()
    return data


def _validate(kind: str, params: dict) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    for k in ("n_layers", "n_heads", "d_model", "d_mlp", "epochs", "batch_size", "n_train", "n_eval"):
        if int(params[k]) < 1:
            raise ValueError(f"{k} must be >= 1, got {params[k]}")
    if not params["lr"] > 0:
        raise ValueError(f"lr must be > 0, got {params['lr']}")


def train_ioi(out_dir: str | Path, kind: str = "siit", n_layers: int = 6, n_heads: int = 4, d_model: int = 64,
              d_mlp: int = 256, epochs: int = DEFAULTS["epochs"], lr: float = DEFAULTS["lr"],
              batch_size: int = DEFAULTS["batch_size"],
              seed: int = 0, n_train: int = DEFAULTS["n_train"], n_eval: int = DEFAULTS["n_eval"],
              device: str = "cpu", progress: bool = True, command: str | None = None,
              checkpoint: str | Path | None = None, normalization: str | None = DEFAULTS["normalization"],
              abc_sources: bool = False, **train_kwargs) -> dict[str, Any]:
    """Train an IOI model and write its model directory to ``out_dir``; returns the test metrics.

    ``checkpoint``: a file the trainer state is written to after every epoch (and resumed from when it
    exists). ``abc_sources``: see :func:`ioi_siit_data`. ``train_kwargs`` go to :class:`training.trainer.TrainConfig` (loss weights, sampling, scheduler,
    early stopping). ``natural`` sets the IIT and strict weights to 0.
    """
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from cases.ioi.case import IOICase, evaluate_model
    from training.model_files import save_model_dir
    from training.trainer import SIITTrainer, TrainConfig

    params = dict(n_layers=n_layers, n_heads=n_heads, d_model=d_model, d_mlp=d_mlp, epochs=epochs, lr=lr,
                  batch_size=batch_size, seed=seed, n_train=n_train, n_eval=n_eval, abc_sources=abc_sources)
    _validate(kind, params)
    opts = {k: DEFAULTS[k] for k in ("iit_weight", "strict_weight", "behavior_weight", "siit_sampling",
                                     "clip_grad_norm", "lr_scheduler", "final_lr", "early_stop_threshold",
                                     "eval_every", "eval_pairs", "single_loss", "strict_source_grad")}
    opts.update(train_kwargs)
    if kind == "natural":
        opts.update(iit_weight=0.0, strict_weight=0.0)
    config = TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                         early_stop=opts.pop("early_stop", True), **opts)

    torch.manual_seed(seed)
    tok = build_tokenizer()
    ll = HookedTransformer(HookedTransformerConfig(**ll_config(n_layers, n_heads, d_model, d_mlp, seed, normalization), device=device))
    hl = build_hl_model(tok)
    corr = ioi_circuit.correspondence(n_layers, n_heads)
    data = ioi_siit_data(n_train, n_eval, seed, abc_sources)
    trainer = SIITTrainer(hl, ll, corr, data, "categorical", config, device=device)
    t0 = time.perf_counter()
    if checkpoint is not None and Path(checkpoint).is_file():
        trainer.load_checkpoint(checkpoint)
    fit = trainer.fit(checkpoint=checkpoint, progress=progress)
    seconds = time.perf_counter() - t0
    test = trainer.evaluate("test", per_node=True)

    out = Path(out_dir)
    truth = ioi_circuit.ground_truth()
    metadata = {
        "case": "ioi", "model_kind": kind, "seed": seed,
        "command": command or f"python main.py train ioi --kind {kind} --out {out} --seed {seed} --epochs {epochs}",
        "ll_config": ll_config(n_layers, n_heads, d_model, d_mlp, seed, normalization), "train_config": config.to_json(),
        "data": data.meta, "fit": fit, "train_seconds": seconds, "history": trainer.history, "test": test,
        "versions": versions(),
    }
    save_model_dir(out, trainer.ll, ground_truth=truth, metadata=metadata, correspondence=corr)
    tok.save(out / TOKENIZER_FILE)
    # Case-level checks on the saved model: accuracy / logit difference on held-out prompts and
    # faithfulness of the ground-truth circuit under ABC patching.
    model = IOICase.load_dir(out, device=device)[0]
    case_metrics = evaluate_model(model, IOICase().dataset(n=500, seed=seed + 1000))
    metadata["case_metrics"] = case_metrics
    save_model_dir(out, trainer.ll, ground_truth=truth, metadata=metadata, correspondence=corr)
    return {"kind": kind, "train_seconds": seconds, "epochs": fit["epochs"], "stopped_early": fit["stopped_early"],
            "test": test, **case_metrics, "size_bytes": sum(p.stat().st_size for p in out.iterdir())}


# ---------------------------------------------------------------------------------------------------
# CLI: python main.py train ioi [...]
# ---------------------------------------------------------------------------------------------------

def add_train_ioi_arguments(parser: argparse.ArgumentParser) -> None:
    d = DEFAULTS
    parser.add_argument("--kind", "--model-kind", dest="kind", default="siit", choices=KINDS,
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
    parser.add_argument("--normalization", default="none", choices=NORMALIZATIONS, help="LayerNorm of the LL model")
    parser.add_argument("--eval-pairs", type=int, default=d["eval_pairs"], help="validation pairs per epoch")
    parser.add_argument("--checkpoint", default=None, help="trainer state file, written every epoch and resumed from")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON document")


def run_train_ioi(args: argparse.Namespace) -> int:
    try:
        from benchmark.console import UsageError
    except ImportError:  # pragma: no cover - the CLI package is always there in the repo
        UsageError = ValueError  # noqa: N806
    from training.registry import local_dir

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
    try:  # bad values are usage errors; failures during training are not
        _validate(args.kind, kwargs)
        from training.trainer import TrainConfig
        TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed, **opts)
        ll_config(args.n_layers, args.n_heads, args.d_model, args.d_mlp, args.seed, args.normalization)
        ioi_circuit.correspondence(args.n_layers, args.n_heads)
        if args.checkpoint is not None and Path(args.checkpoint).is_file():  # refused before any work
            from training.trainer import load_checkpoint_file
            load_checkpoint_file(args.checkpoint)
    except ValueError as err:
        raise UsageError(str(err)) from None
    metrics = train_ioi(out, device=args.device, command=cmd, progress=True, checkpoint=args.checkpoint, **kwargs, **opts)
    text = json.dumps(metrics, indent=None if args.json else 1, default=str)
    print(text)
    return 0


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, kind: str = "siit", command: str | None = None,
                      seed: int = 0, device: str = "cpu", normalization: str | None = None) -> dict[str, Any]:
    """Write the model directory of a trainer checkpoint (e.g. of an interrupted run); returns the
    case metrics it records."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from cases.ioi.case import IOICase, evaluate_model, interchange_accuracy
    from training.model_files import save_model_dir

    from training.trainer import load_checkpoint_file

    st = load_checkpoint_file(checkpoint, device)
    cfg = ll_config(seed=seed, normalization=normalization)
    ll = HookedTransformer(HookedTransformerConfig(**cfg, device=device))
    ll.load_state_dict(st["model"])
    corr = ioi_circuit.correspondence(cfg["n_layers"], cfg["n_heads"])
    out = Path(out_dir)
    meta = {"case": "ioi", "model_kind": kind, "seed": seed, "command": command, "ll_config": cfg,
            "train_config": st["config"], "fit": {"epochs": st["epoch"], "stopped_early": st["stopped_early"]},
            "train_seconds": st["train_seconds"], "history": st["history"], "exported_from_checkpoint": True,
            "versions": versions()}
    save_model_dir(out, ll, ground_truth=ioi_circuit.ground_truth(), metadata=meta, correspondence=corr)
    build_tokenizer().save(out / TOKENIZER_FILE)
    model = IOICase.load_dir(out, device=device)[0]
    case = IOICase()
    meta["case_metrics"] = evaluate_model(model, case.dataset(n=500, seed=seed + 1000))
    meta["iia"] = interchange_accuracy(model, case.dataset(n=500, seed=seed + 1001).clean,
                                       case.dataset(n=500, seed=seed + 1002).clean)
    save_model_dir(out, ll, ground_truth=ioi_circuit.ground_truth(), metadata=meta, correspondence=corr)
    return {**meta["case_metrics"], "iia": meta["iia"]}
