"""Train a known-direction sentiment model (SIIT-style) and write its model directory.

The model is a small HookedTransformer without LayerNorm. At the site s* = (``blocks.{layer}.hook_resid_pre``,
final position) the training enforces that sentiment lives on a fixed, seeded random unit vector u*:

- task loss: cross-entropy of the answer (``good``/``bad``);
- IIT loss: a <- a + ((a_cf - a).u*) u* from a counterfactual of the opposite sentiment; target = the
  counterfactual's label (u* is *sufficient*);
- strictness loss: replace the orthogonal complement (I - u* u*^T) a by that of a random other input,
  plus Gaussian noise in the complement (``noise_scale`` per coordinate); target = the base label
  (nothing else at s* is read: u* is *necessary*, the distractors are inert). The noise matters: a
  complement direction with no natural variance is never exercised by swapping inputs, so the model
  could read it with any gain, and an interchange search would then find u* tilted towards that
  dormant direction (the 'interpretability illusion' of subspace patching). With noise the model must
  ignore the whole complement in a ball around the data;
- distractor loss (``aux_weight``): the projections of a on u* and on fixed unit vectors v ⟂ u* are pulled
  to scaled feature values (sentiment ±S, intensity ±S_int, template group ±S_tmpl, topic S_topic z_topic).
  This puts the label-correlated distractors at s* with a known size, and the topic with the largest
  variance, so that correlational methods have something to be fooled by;
- graded behaviour matching (``match_weight``): patch a *fraction* t ~ U[0, 1] of the counterfactual's u*
  coordinate, a <- a + t((a_cf - a).u*) u*, and require the answer logit difference to move the same
  fraction of the way, LD = (1 - t) LD_base + t LD_cf; the strict-patched run must keep LD_base (squared
  errors, relative to the mean squared LD). Label-level IIT only makes u* decide the *label*, and a
  saturating read-out would let any direction with enough u* in it flip every label just as well. A read-out
  linear in the u* coordinate makes "patch u*" reproduce the counterfactual exactly and "patch û" fall
  short by (1 - cos²(û, u*)): u* becomes the unique best direction for a behaviour-matching interchange
  search (DAS);
- label smoothing (``label_smoothing``) on the cross-entropies keeps the logits at a sane scale
  (|LD| about log((1 - ε/2)/(ε/2))) instead of growing without bound;
- cleanliness loss (``clean_weight``): outside span(u*, distractor directions) the class-conditional
  means of a must agree. Without it the model keeps unread *copies* of sentiment in the complement
  (strictness only stops them being read), and a 1-d interchange search cannot tell u* from u* tilted
  towards a copy: u* would not be identifiable.

``python main.py train direction --out cases/direction/models/sentiment/siit`` reproduces the shipped model of
case ``sentiment``; each shipped model's ``training_args.json`` holds its command.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cases.direction.case import DirectionSite, logits_from_site, save_direction_model
from cases.direction.data import (ANSWERS, FINAL_POS, POSITIVE_TEMPLATES, SEQ_LEN, TOPICS, SentimentData,
                                  build_tokenizer, opposite_pairs, sentiment_dataset)
from core.results import versions
from core.naming import act_name


@dataclass
class DirectionTrainConfig:
    """Architecture, losses and optimisation of a direction model. Every random choice follows ``seed``."""

    n_layers: int = 2
    d_model: int = 48
    n_heads: int = 4
    d_mlp: int = 96
    layer: int = 1  # s* = blocks.{layer}.hook_resid_pre at the final position
    steps: int = 600
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 0.0
    iit_weight: float = 1.0
    strict_weight: float = 1.0
    aux_weight: float = 1.0
    clean_weight: float = 1.0
    match_weight: float = 1.0
    label_smoothing: float = 0.01
    noise_scale: float = 1.0
    sentiment_scale: float = 4.0
    intensity_scale: float = 4.0
    template_scale: float = 3.0
    topic_scale: float = 8.0
    n_train: int = 20000
    n_eval: int = 1000
    eval_every: int = 250
    seed: int = 0

    def validate(self) -> None:
        if not 1 <= self.layer <= self.n_layers - 1:
            raise ValueError(f"--layer must be in 1..{self.n_layers - 1} (s* is the input of a later block)")
        if self.d_model % self.n_heads:
            raise ValueError(f"--d-model {self.d_model} is not divisible by --n-heads {self.n_heads}")
        if self.d_model < 8:
            raise ValueError("--d-model must be at least 8")
        for k in ("steps", "batch_size", "n_train", "n_eval"):
            if getattr(self, k) <= 0:
                raise ValueError(f"--{k.replace('_', '-')} must be positive")

    @property
    def hook_name(self) -> str:
        return act_name("resid_pre", self.layer)


def ll_config(cfg: DirectionTrainConfig, d_vocab: int) -> dict[str, Any]:
    return dict(n_layers=cfg.n_layers, d_model=cfg.d_model, n_heads=cfg.n_heads, d_head=cfg.d_model // cfg.n_heads,
                d_mlp=cfg.d_mlp, d_vocab=d_vocab, n_ctx=SEQ_LEN, act_fn="gelu", normalization_type=None,
                attention_dir="causal", positional_embedding_type="standard", default_prepend_bos=False,
                seed=cfg.seed)


def true_directions(d_model: int, seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """u* (a seeded Gaussian direction, not a basis vector) and three unit distractor directions ⟂ u*."""
    g = torch.Generator().manual_seed(10_007 + seed)
    q, r = torch.linalg.qr(torch.randn(d_model, 4, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))  # unique QR: column 0 is the normalised first Gaussian draw
    q = q.float()
    return q[:, 0].contiguous(), {"intensity": q[:, 1].contiguous(), "template": q[:, 2].contiguous(),
                                  "topic": q[:, 3].contiguous()}


def topic_values(seed: int) -> torch.Tensor:
    """A fixed value in [-1.5, 1.5] per topic: the topic's coordinate along its distractor direction."""
    g = torch.Generator().manual_seed(20_011 + seed)
    return torch.rand(len(TOPICS), generator=g) * 3.0 - 1.5


def feature_targets(data: SentimentData, cfg: DirectionTrainConfig, topic_z: torch.Tensor) -> dict[str, torch.Tensor]:
    pos_tmpl = torch.isin(data.template, torch.tensor(POSITIVE_TEMPLATES))
    return {"sentiment": cfg.sentiment_scale * (2.0 * data.labels.float() - 1.0),
            "intensity": cfg.intensity_scale * (2.0 * data.strong.float() - 1.0),
            "template": cfg.template_scale * (2.0 * pos_tmpl.float() - 1.0),
            "topic": cfg.topic_scale * topic_z[data.topic]}


def patch_along(a: torch.Tensor, a_src: torch.Tensor, u: torch.Tensor, t: torch.Tensor | float = 1.0) -> torch.Tensor:
    """a + t ((a_src - a).u) u for a unit vector u (rows of a, a_src), with a per-row fraction t."""
    return a + (t * ((a_src - a) @ u))[:, None] * u[None, :]


def swap_complement(a: torch.Tensor, a_src: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """a's component on u, everything orthogonal to u from a_src."""
    return (a @ u)[:, None] * u[None, :] + a_src - (a_src @ u)[:, None] * u[None, :]


def _logits_from(model, resid: torch.Tensor, layer: int, a_new: torch.Tensor | None = None) -> torch.Tensor:
    return logits_from_site(model, resid, layer, FINAL_POS, a_new)


@torch.no_grad()
def evaluate_direction_model(model, data: SentimentData, u: torch.Tensor, layer: int, answer_ids: tuple[int, int],
                             seed: int = 0) -> dict[str, float]:
    """Accuracy (answer argmax over good/bad), IIA of the u*-patch, strict accuracy of the complement patch."""
    ids = list(answer_ids)
    resid = model(data.tokens, stop_at_layer=layer)
    a = resid[:, FINAL_POS]
    y = data.labels

    def acc(logits, target):
        return float((logits[:, ids].argmax(-1) == target).float().mean())
    pair = opposite_pairs(y, seed)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed + 1))
    strict_a = swap_complement(a, a[perm], u)
    return {"accuracy": acc(_logits_from(model, resid, layer), y),
            "iia": acc(_logits_from(model, resid, layer, patch_along(a, a[pair], u)), y[pair]),
            "strict_accuracy": acc(_logits_from(model, resid, layer, strict_a), y)}


def train_direction_model(cfg: DirectionTrainConfig, out: str | Path | None = None, command: str | None = None,
                          log=None) -> tuple[Any, dict[str, Any]]:
    """Train; write the model directory to ``out`` if given. Returns (model, training metadata)."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg.validate()
    torch.manual_seed(cfg.seed)
    tok = build_tokenizer()
    good, bad = tok.token_id(ANSWERS[0]), tok.token_id(ANSWERS[1])
    answer_ids = (bad, good)  # indexed by label
    answer_of = torch.tensor(answer_ids)
    llc = ll_config(cfg, len(tok))
    model = HookedTransformer(HookedTransformerConfig(**llc))
    u, distractors = true_directions(cfg.d_model, cfg.seed)
    topic_z = topic_values(cfg.seed)
    dirs = {"sentiment": u, **distractors}
    basis = torch.stack(list(dirs.values()))  # (4, d_model), orthonormal rows
    scales = {"sentiment": cfg.sentiment_scale, "intensity": cfg.intensity_scale, "template": cfg.template_scale,
              "topic": cfg.topic_scale}

    train = sentiment_dataset("train", cfg.n_train, cfg.seed, tokenizer=tok)
    val = sentiment_dataset("fit", cfg.n_eval, cfg.seed + 1, tokenizer=tok)
    test = sentiment_dataset("test", cfg.n_eval, cfg.seed, tokenizer=tok)
    targets = feature_targets(train, cfg, topic_z)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.05, 1.0 - s / cfg.steps))
    g = torch.Generator().manual_seed(cfg.seed + 7)
    history: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    L = cfg.layer
    for step in range(1, cfg.steps + 1):
        idx = torch.randint(len(train), (cfg.batch_size,), generator=g)
        tokens, y = train.tokens[idx], train.labels[idx]
        resid = model(tokens, stop_at_layer=L)
        a = resid[:, FINAL_POS]
        pair = opposite_pairs(y, int(torch.randint(1 << 30, (1,), generator=g)))
        base_logits = _logits_from(model, resid, L)
        ld = base_logits[:, good] - base_logits[:, bad]
        iit_logits = _logits_from(model, resid, L, patch_along(a, a[pair], u))
        iit = F.cross_entropy(iit_logits, answer_of[y[pair]], label_smoothing=cfg.label_smoothing)
        t = torch.rand(len(y), generator=g)
        graded_logits = _logits_from(model, resid, L, patch_along(a, a[pair], u, t))
        perm = torch.randperm(len(y), generator=g)
        # swap_complement(a, a[perm], u) + noise, spelled out: the shipped weights depend on this op order
        keep = (a @ u)[:, None] * u[None, :]
        noise = torch.randn(a.shape, generator=g) * cfg.noise_scale
        noise = noise - (noise @ u)[:, None] * u[None, :]
        strict_a = keep + a[perm] - (a[perm] @ u)[:, None] * u[None, :] + noise
        strict_logits = _logits_from(model, resid, L, strict_a)
        strict = F.cross_entropy(strict_logits, answer_of[y], label_smoothing=cfg.label_smoothing)
        task = F.cross_entropy(base_logits, answer_of[y], label_smoothing=cfg.label_smoothing)
        target = ld.detach()
        scale = (target ** 2).mean() + 1e-6
        graded_target = (1 - t) * target + t * target[pair]
        match = (((graded_logits[:, good] - graded_logits[:, bad] - graded_target) ** 2).mean()
                 + ((strict_logits[:, good] - strict_logits[:, bad] - target) ** 2).mean()) / scale
        aux = sum(F.mse_loss(a @ v, targets[k][idx]) / scales[k] ** 2 for k, v in dirs.items())
        gap = a[y == 1].mean(0) - a[y == 0].mean(0)
        gap_rest = gap - basis.T @ (basis @ gap)
        clean = (gap_rest ** 2).sum() / cfg.sentiment_scale ** 2
        loss = task + cfg.iit_weight * iit + cfg.strict_weight * strict + cfg.aux_weight * aux \
            + cfg.clean_weight * clean + cfg.match_weight * match
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            model.eval()
            m = evaluate_direction_model(model, val, u, L, answer_ids, seed=cfg.seed)
            model.train()
            row = {"step": step, **{k: round(float(v.detach()), 6) for k, v in
                                    (("loss", loss), ("task", task), ("iit", iit), ("strict", strict), ("aux", aux),
                                     ("clean", clean), ("match", match))}, **{f"val_{k}": v for k, v in m.items()},
                   "seconds": round(time.perf_counter() - t0, 2)}
            history.append(row)
            if log:
                log(json.dumps(row))
    seconds = time.perf_counter() - t0
    model.eval()
    test_metrics = evaluate_direction_model(model, test, u, L, answer_ids, seed=cfg.seed)
    test_metrics.update(feature_geometry(model, test, cfg, dirs, topic_z))
    site = DirectionSite(cfg.hook_name, L, FINAL_POS, u, distractors, scales)
    meta = {"task": "sentiment", "model_kind": "siit", "seed": cfg.seed, "command": command,
            "ll_config": llc, "train_config": asdict(cfg), "site": {"hook_name": cfg.hook_name, "layer": L,
                                                                      "position": FINAL_POS},
            "data": {"n_train": cfg.n_train, "n_eval": cfg.n_eval, "test_split": "hash bucket (1 text in 5)"},
            "train_seconds": seconds, "history": history, "test": test_metrics,
            "versions": versions()}
    if out is not None:
        save_direction_model(out, model, tok, site, meta)
    return model, meta


@torch.no_grad()
def feature_geometry(model, data: SentimentData, cfg: DirectionTrainConfig, dirs: dict[str, torch.Tensor],
                     topic_z: torch.Tensor) -> dict[str, Any]:
    """How the features actually sit at s*: per direction the projection's std, and its correlation with
    the feature's target value; the share of the total variance at s* on u*."""
    a = model(data.tokens, stop_at_layer=cfg.layer)[:, FINAL_POS]
    t = feature_targets(data, cfg, topic_z)
    ac = a - a.mean(0)
    total = float((ac ** 2).sum(1).mean())
    out: dict[str, Any] = {"total_variance": total}
    for k, v in dirs.items():
        p = a @ v
        out[f"{k}_std"] = float(p.std())
        out[f"{k}_corr"] = float(torch.corrcoef(torch.stack([p, t[k]]))[0, 1])
    out["sentiment_variance_share"] = out["sentiment_std"] ** 2 / total
    return out
