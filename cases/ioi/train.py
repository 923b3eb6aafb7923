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

import time
from pathlib import Path
from typing import Any

import torch

from cases.ioi import circuit as ioi_circuit
from cases.ioi.case import IOICase, evaluate_model
from cases.ioi.data import SEQ_LEN, build_tokenizer, corrupt, encode, sample_prompts
from cases.ioi.hl_model import build_hl_model
from core.results import versions
from training.model_files import save_model_dir
from training.trainer import SIITData, SIITTrainer, Split, TrainConfig, load_checkpoint_file

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


def check_options(params: dict, opts: dict, checkpoint: str | Path | None = None) -> None:
    """What :func:`train_ioi` would refuse, checked before any work (ValueError): ``params`` its model and
    data arguments (with ``kind``), ``opts`` the trainer's (:class:`training.trainer.TrainConfig`), and a
    ``checkpoint`` to resume from that is not a trainer checkpoint."""
    _validate(params["kind"], params)
    TrainConfig(epochs=params["epochs"], lr=params["lr"], batch_size=params["batch_size"], seed=params["seed"], **opts)
    ll_config(params["n_layers"], params["n_heads"], params["d_model"], params["d_mlp"], params["seed"],
              params["normalization"])
    ioi_circuit.correspondence(params["n_layers"], params["n_heads"])
    if checkpoint is not None and Path(checkpoint).is_file():  # refused before any work
        load_checkpoint_file(checkpoint)


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
