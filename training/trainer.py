"""SIIT: Strict Interchange Intervention Training (interpbench.md §4), with InterpBench's bugs fixed.

Per batch, with base inputs ``b`` and source inputs ``s`` (a fresh random pairing every epoch, drawn
from a generator seeded with ``(seed, epoch)``):

- **IIT loss**: one HL node ``h`` is drawn; the HL runs ``b`` with ``h`` taken from ``s`` and the LL runs
  ``b`` with every LL node of ``h`` taken from ``s``; loss(LL output, HL output).
- **Strict loss**: LL nodes outside the circuit (``individual``: one; ``sample_all``: each with p=0.5;
  ``all``: every one; ``any_size``: a subset whose size is uniform in 1..n, so that single nodes and all
  of them together are both trained) are taken from ``s``; the LL output must stay the HL output on ``b``.
- **Behaviour loss**: loss(LL(b), HL(b)).

Categorical outputs: cross-entropy to the HL argmax; numerical: MSE. Each weight is applied exactly
once (:func:`combine_losses`). ``single_loss=True`` takes one optimizer step on the weighted sum
(and runs the three base passes as one batched forward); otherwise three sequential steps
(IIT, strict, behaviour), as InterpBench's default. Source activations are detached (with
``strict_source_grad=True`` the strict loss also backpropagates through the source run, so it trains
the non-circuit nodes to carry nothing the output depends on; off by default).

Metrics (all in [0, 1], on fixed held-out pairs): ``iia`` (mean over HL nodes of the fraction of
scored positions where the LL under the intervention agrees with the HL under it), ``accuracy``
(LL vs HL on the base), ``strict_accuracy`` (mean over non-circuit LL nodes, each patched alone),
``strict_accuracy_joint`` (every non-circuit LL node patched at once: per-node strictness does not
imply it; ``sample_all`` models can pass each node alone and fail all of them together).
Numerical agreement is ``|LL - HL| < atol``.
"""

from __future__ import annotations

import io
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from core.patching import capture, patched_forward, strict_accuracy
from core.results import write_atomic
from training.correspondence import Correspondence, NodeLoc

SAMPLING_MODES = ("individual", "sample_all", "all", "any_size")
EARLY_STOP_CRITERIA = ("mean", "min", "min_joint")
SCHEDULERS = ("", "none", "linear", "cosine")
LOSS_NAMES = ("iit", "strict", "behavior")
NO_ANSWER = -100  # categorical target of a position where the HL model gives no answer (not scored)


@dataclass
class TrainConfig:
    iit_weight: float = 1.0
    strict_weight: float = 0.4
    behavior_weight: float = 1.0
    single_loss: bool = False
    siit_sampling: str = "individual"
    epochs: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    lr_scheduler: str = ""          # "" / none, linear (to final_lr), cosine (to final_lr)
    final_lr: float = 2e-4
    clip_grad_norm: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    early_stop: bool = False
    early_stop_threshold: float = 0.995   # fraction; every relevant val metric must reach it
    early_stop_criterion: str = "mean"    # "mean" over nodes (InterpBench), "min": the worst HL/non-circuit node,
    #                                       "min_joint": "min" and strict accuracy with all non-circuit nodes at once
    atol: float = 0.05
    seed: int = 0
    eval_every: int = 1
    eval_pairs: int = 2048
    min_steps_per_epoch: int = 1
    restore_best: bool = True             # end with the weights of the best validation epoch
    strict_source_grad: bool = False      # let the strict loss backpropagate into the source run too

    def __post_init__(self) -> None:
        for name in ("iit_weight", "strict_weight", "behavior_weight"):
            v = getattr(self, name)
            if not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be a finite number >= 0, got {v}")
        if self.iit_weight == self.strict_weight == self.behavior_weight == 0:
            raise ValueError("all loss weights are 0: nothing to train")
        if self.siit_sampling not in SAMPLING_MODES:
            raise ValueError(f"siit_sampling must be one of {SAMPLING_MODES}, got {self.siit_sampling!r}")
        if self.lr_scheduler not in SCHEDULERS:
            raise ValueError(f"lr_scheduler must be one of linear, cosine or none, got {self.lr_scheduler!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.eval_every < 1:
            raise ValueError("epochs, batch_size and eval_every must be >= 1")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.early_stop_criterion not in EARLY_STOP_CRITERIA:
            raise ValueError(f"early_stop_criterion must be mean, min or min_joint, got {self.early_stop_criterion!r}")
        if not 0 <= self.early_stop_threshold <= 1:
            raise ValueError(f"early_stop_threshold is a fraction in [0, 1], got {self.early_stop_threshold}")
        self.betas = tuple(self.betas)

    @property
    def weights(self) -> dict[str, float]:
        return {"iit": self.iit_weight, "strict": self.strict_weight, "behavior": self.behavior_weight}

    def to_json(self) -> dict:
        return asdict(self)


def combine_losses(losses: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """The single training objective: sum of ``weight * loss``, each weight applied exactly once.
    Losses with weight 0 (or missing) do not enter."""
    total = None
    for name, loss in losses.items():
        w = float(weights.get(name, 0.0))
        if w == 0 or loss is None:
            continue
        total = w * loss if total is None else total + w * loss
    if total is None:
        raise ValueError("no loss with a non-zero weight")
    return total


# ---------------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------------

@dataclass
class Split:
    """Inputs of one split and the positions that are scored (``mask``), both ``[n, seq]``."""

    tokens: torch.Tensor
    mask: torch.Tensor

    def __len__(self) -> int:
        return self.tokens.shape[0]


@dataclass
class SIITData:
    train: Split
    val: Split
    test: Split
    meta: dict = field(default_factory=dict)

    @property
    def pair_masked(self) -> bool:
        """Whether an interchange is scored only where the source is scored too (``scored="defined"``
        data: the HL's value at a position where the program's output is None is not the program's)."""
        return self.meta.get("scored") == "defined"

    def iit_mask(self, base_mask: torch.Tensor, source_mask: torch.Tensor | None) -> torch.Tensor:
        """The positions an interchange from sources with ``source_mask`` is scored at."""
        if not self.pair_masked:
            return base_mask
        if source_mask is None:
            raise ValueError("this data scores interchanges where the source is defined: pass the source mask")
        return base_mask & source_mask

    def check_disjoint(self) -> None:
        """Raise if any input appears in two splits (train/val/test must not share an input)."""
        sets = {k: {tuple(r) for r in getattr(self, k).tokens.tolist()} for k in ("train", "val", "test")}
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            both = sets[a] & sets[b]
            if both:
                raise ValueError(f"{len(both)} inputs are in both the {a} and the {b} split")
        for k, s in sets.items():
            if len(s) != len(getattr(self, k)):
                raise ValueError(f"the {k} split has duplicate inputs")


def split_disjoint(tokens: torch.Tensor, mask: torch.Tensor, val_fraction: float, test_fraction: float,
                   seed: int) -> SIITData:
    """De-duplicate the inputs, then split them (seeded) into disjoint train/val/test."""
    if not (0 < test_fraction < 1 and 0 <= val_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"bad split fractions val={val_fraction}, test={test_fraction}")
    seen, keep, n_in = set(), [], tokens.shape[0]
    for i, row in enumerate(tokens.tolist()):
        if tuple(row) not in seen:
            seen.add(tuple(row))
            keep.append(i)
    tokens, mask = tokens[keep], mask[keep]
    n = tokens.shape[0]
    perm = torch.from_numpy(np.random.default_rng([seed, 7]).permutation(n))
    n_test = max(1, int(round(n * test_fraction)))
    n_val = max(1, int(round(n * val_fraction))) if val_fraction > 0 else 0
    if n - n_test - n_val < 1:
        raise ValueError(f"only {n} distinct inputs: too few to split")
    te, va, tr = perm[:n_test], perm[n_test:n_test + n_val], perm[n_test + n_val:]
    data = SIITData(Split(tokens[tr], mask[tr]), Split(tokens[va] if n_val else tokens[te], mask[va] if n_val else mask[te]),
                    Split(tokens[te], mask[te]),
                    meta={"n_distinct": n, "n_duplicates_dropped": n_in - n,
                          "n_train": len(tr), "n_val": n_val, "n_test": n_test})
    if n_val:
        data.check_disjoint()
    return data


def epoch_pairs(n: int, seed: int, epoch: int, rep: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(base order, source index per base) for one pass of one epoch: every base once, a fresh random
    source each; a function of (seed, epoch, rep) only, so resumed runs see the same pairs."""
    rng = np.random.default_rng([seed, 1, epoch, rep])
    base = rng.permutation(n)
    src = rng.integers(n, size=n)
    return torch.from_numpy(base), torch.from_numpy(src)


def eval_pairs(n: int, max_pairs: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed evaluation pairs: all n^2 (base, source) pairs when they fit, else a seeded sample."""
    if n * n <= max_pairs:
        b, s = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        return b.reshape(-1), s.reshape(-1)
    rng = np.random.default_rng([seed, 2])
    return torch.from_numpy(rng.integers(n, size=max_pairs)), torch.from_numpy(rng.integers(n, size=max_pairs))


HL_TABLE_BYTES = 1 << 29  # larger interchange tables are not kept: the HL then runs for every target


def _block_of(hook: str) -> int | None:
    """The block a hook lives in (``blocks.3.attn.hook_z`` -> 3), None outside the blocks."""
    parts = hook.split(".")
    return int(parts[1]) if len(parts) > 2 and parts[0] == "blocks" and parts[1].isdigit() else None


# ---------------------------------------------------------------------------------------------------
# the trainer
# ---------------------------------------------------------------------------------------------------

class SIITTrainer:
    """Trains ``ll`` to implement ``hl`` under ``corr``. ``hl``/``ll``: any HookedRootModule returning
    ``[n, seq, d_out]``; ``output_type``: ``categorical`` or ``numerical``."""

    def __init__(self, hl, ll, corr: Correspondence, data: SIITData, output_type: str, config: TrainConfig,
                 device: str = "cpu", log: Callable[[str], None] | None = None):
        if output_type not in ("categorical", "numerical"):
            raise ValueError(f"output_type must be categorical or numerical, got {output_type!r}")
        self.hl, self.ll, self.corr, self.data = hl.to(device), ll.to(device), corr, data
        self.output_type, self.cfg, self.device = output_type, config, device
        self.log = log or (lambda s: print(s, file=sys.stderr))
        self.hl.eval()  # the HL only ever runs under no_grad; its parameters are left untouched
        self.hl_nodes = corr.hl_nodes
        self.non_circuit = corr.non_circuit
        self.opt = torch.optim.Adam(self.ll.parameters(), lr=config.lr, betas=config.betas)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, self._lr_factor)
        self.epoch = 0                     # epochs completed
        self.history: list[dict] = []
        self.stopped_early = False
        self.train_seconds = 0.0
        self.cpu_seconds = 0.0             # CPU time of this process spent training (what max_seconds caps)
        self.best: tuple[float, int, dict] | None = None   # (score, epoch, state_dict) of the best val epoch
        self._targets = {k: self._hl_targets(getattr(data, k).tokens) for k in ("train", "val", "test")}
        self._hl_tables: dict[str, dict | None] = {}  # per split, built on first use (:meth:`_hl_table`)

    # -- helpers ---------------------------------------------------------------------------------
    def _lr_factor(self, epoch: int) -> float:
        c = self.cfg
        if c.lr_scheduler in ("", "none"):
            return 1.0
        t = min(1.0, epoch / max(1, c.epochs))
        end = c.final_lr / c.lr
        if c.lr_scheduler == "linear":
            return 1.0 - t * (1.0 - end)
        return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * t))

    @torch.no_grad()
    def _hl_targets(self, tokens: torch.Tensor) -> torch.Tensor:
        out = []
        for i in range(0, tokens.shape[0], 4096):
            out.append(self._target_of(self.hl(tokens[i:i + 4096].to(self.device))))
        return torch.cat(out)

    def _target_of(self, hl_out: torch.Tensor) -> torch.Tensor:
        """HL output -> targets. An HL model with a ``labels`` method decides itself (the IOI model
        answers ``NO_ANSWER`` where no name wins, e.g. after an interchange from an ABC prompt);
        such positions are not scored (loss, IIA, accuracy)."""
        if self.output_type == "categorical":
            labels = getattr(self.hl, "labels", None)
            return labels(hl_out) if labels is not None else hl_out.argmax(-1)
        return hl_out[..., 0].float()

    def _scored(self, mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return mask & (target != NO_ANSWER) if self.output_type == "categorical" else mask

    def loss_fn(self, out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = self._scored(mask, target).to(out.dtype)
        if self.output_type == "categorical":
            nll = F.cross_entropy(out.transpose(1, 2), target.clamp_min(0), reduction="none")
        else:
            nll = (out[..., 0] - target) ** 2
        return (nll * m).sum() / m.sum().clamp_min(1)

    def agree(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.output_type == "categorical":
            return out.argmax(-1) == target
        return (out[..., 0] - target).abs() < self.cfg.atol

    def _hl_interchange_target(self, base: torch.Tensor, source: torch.Tensor, node: str,
                               pair: tuple[str, torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The HL's output on ``base`` with ``node`` taken from its run on ``source``, as targets.
        ``pair`` (split, base indices, source indices of these rows in that split): read the split's
        tables (:meth:`_hl_table`) and run the HL from the node's block only; the same targets."""
        loc = self.corr.hl_locs[node]
        table = self._hl_table(pair[0]) if pair is not None else None
        with torch.no_grad():
            if table is not None and node in table["layer"]:
                _, bi, si = pair
                layer, value = table["layer"][node], table["source"][node][si]
                patch = (loc, slice(0, len(bi)), (lambda _x, v=value: v) if loc.head is not None else value)
                out = patched_forward(self.hl, table["resid"][layer][bi], [patch], start_at_layer=layer)
            else:
                _, cache = capture(self.hl, source, [loc.hook])
                out = patched_forward(self.hl, base, [(loc, slice(0, base.shape[0]), cache[loc.hook])])
        return self._target_of(out)

    @torch.no_grad()
    def _hl_table(self, split: str) -> dict | None:
        """What every interchange target of ``split`` reuses, computed once: each HL node's activation on
        every example of the split (the source side; a head's own slice) and the residual stream entering
        that node's block (the base side), so that a target runs the HL from that block on, not twice
        from the embedding. A training epoch thus costs the HL a fraction of one forward pass per batch
        instead of two. Only for an HL that can start at a block (a HookedTransformer: the compiled Tracr
        models) and whose tables fit in ``HL_TABLE_BYTES``; None otherwise (each target runs the HL)."""
        if split in self._hl_tables:
            return self._hl_tables[split]
        table = None
        layer = {n: _block_of(self.corr.hl_locs[n].hook) for n in self.hl_nodes}
        layer = {n: lay for n, lay in layer.items() if lay is not None}
        if hasattr(self.hl, "blocks") and hasattr(self.hl, "cfg") and layer:
            tokens = getattr(self.data, split).tokens
            layers = sorted(set(layer.values()))
            # kept: one residual per layer and one activation per node, each at most [n, n_ctx, d_model] floats
            if tokens.shape[0] * tokens.shape[1] * self.hl.cfg.d_model * 4 * (len(layers) + len(layer)) <= HL_TABLE_BYTES:
                locs = {n: self.corr.hl_locs[n] for n in layer}
                resid = {lay: f"blocks.{lay}.hook_resid_pre" for lay in layers}
                hooks = sorted({loc.hook for loc in locs.values()} | set(resid.values()))
                src_parts: dict[str, list[torch.Tensor]] = {n: [] for n in layer}
                resid_parts: dict[int, list[torch.Tensor]] = {lay: [] for lay in layers}
                for i in range(0, tokens.shape[0], 4096):  # per chunk, only the head's own slice is kept
                    _, cache = capture(self.hl, tokens[i:i + 4096].to(self.device), hooks)
                    for n, loc in locs.items():
                        src_parts[n].append(cache[loc.hook] if loc.head is None else cache[loc.hook][:, :, loc.head].clone())
                    for lay, hook in resid.items():
                        resid_parts[lay].append(cache[hook])
                table = {"layer": layer, "source": {n: torch.cat(v) for n, v in src_parts.items()},
                         "resid": {lay: torch.cat(v) for lay, v in resid_parts.items()}}
        self._hl_tables[split] = table
        return table

    def _ll_locs(self, nodes) -> list[NodeLoc]:
        return [self.corr.ll_locs[n] for n in nodes]

    def _sample_strict(self, rng: np.random.Generator) -> list[str]:
        nc = self.non_circuit
        if not nc:
            return []
        mode = self.cfg.siit_sampling
        if mode == "individual":
            return [nc[int(rng.integers(len(nc)))]]
        if mode == "sample_all":
            return [n for n in nc if rng.random() < 0.5]
        if mode == "any_size":  # a size k uniform in 1..n, then k distinct nodes: singles and "all" each 1/n
            k = int(rng.integers(1, len(nc) + 1))
            return [nc[i] for i in sorted(rng.choice(len(nc), size=k, replace=False).tolist())]
        return list(nc)

    # -- one step ----------------------------------------------------------------------------------
    def losses(self, base, source, mask, base_target, hl_node, strict_nodes,
               which: tuple[str, ...] = LOSS_NAMES, source_mask: torch.Tensor | None = None,
               pair: tuple[str, torch.Tensor, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The (unweighted) losses named in ``which`` for one batch, in one batched LL forward pass.
        ``source_mask``: the sources' scored positions (needed with ``data.pair_masked``); ``pair``: the
        rows' split and indices there (the HL's interchange targets then come from its tables)."""
        want_iit = "iit" in which and hl_node is not None
        want_strict = "strict" in which and bool(strict_nodes)
        B = base.shape[0]
        iit_locs = self._ll_locs(self.corr.mapping[hl_node]) if want_iit else []
        strict_locs = self._ll_locs(strict_nodes) if want_strict else []
        grad = self.cfg.strict_source_grad and want_strict
        cache = capture(self.ll, source, [loc.hook for loc in iit_locs + strict_locs], grad=grad)[1] if iit_locs + strict_locs else {}
        names, patches = [], []
        for name, locs, wanted in (("iit", iit_locs, want_iit), ("strict", strict_locs, want_strict),
                                   ("behavior", [], "behavior" in which)):
            if not wanted:
                continue
            rows = slice(len(names) * B, (len(names) + 1) * B)
            # only the strict patches may carry gradient into the source run (strict_source_grad)
            patches += [(loc, rows, cache[loc.hook] if name == "strict" else cache[loc.hook].detach()) for loc in locs]
            names.append(name)
        if not names:
            return {}
        out = patched_forward(self.ll, base.repeat(len(names), 1), patches)
        result = {}
        for i, name in enumerate(names):
            if name == "iit":
                target = self._hl_interchange_target(base, source, hl_node, pair)
                scored = self.data.iit_mask(mask, source_mask)
            else:
                target, scored = base_target, mask
            result[name] = self.loss_fn(out[i * B:(i + 1) * B], target, scored)
        return result

    def _step(self, loss: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.clip_grad_norm and self.cfg.clip_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.ll.parameters(), self.cfg.clip_grad_norm)
        self.opt.step()

    def train_epoch(self) -> dict[str, float]:
        """One pass over the train split with fresh pairs; returns the mean of each (unweighted) loss."""
        c, d = self.cfg, self.data.train
        self.ll.train()
        n = len(d)
        sums = {k: 0.0 for k in LOSS_NAMES}
        counts = {k: 0 for k in LOSS_NAMES}
        rng = np.random.default_rng([c.seed, 3, self.epoch])
        active = tuple(k for k in LOSS_NAMES if c.weights[k] > 0)
        steps, rep = 0, 0
        while steps < max(1, c.min_steps_per_epoch):
            order, src_idx = epoch_pairs(n, c.seed, self.epoch, rep)
            rep += 1
            for i in range(0, n, c.batch_size):
                bi = order[i:i + c.batch_size]
                si = src_idx[bi]
                base, source = d.tokens[bi].to(self.device), d.tokens[si].to(self.device)
                mask, target = d.mask[bi].to(self.device), self._targets["train"][bi].to(self.device)
                src_mask = d.mask[si].to(self.device)
                hl_node = self.hl_nodes[int(rng.integers(len(self.hl_nodes)))] if self.hl_nodes else None
                strict_nodes = self._sample_strict(rng)
                if c.single_loss:
                    ls = self.losses(base, source, mask, target, hl_node, strict_nodes, active, src_mask, ("train", bi, si))
                    if ls:
                        self._step(combine_losses(ls, c.weights))
                else:  # sequential: one optimizer step per loss, in the order IIT, strict, behaviour
                    ls = {}
                    for name in active:
                        part = self.losses(base, source, mask, target, hl_node, strict_nodes, (name,), src_mask,
                                           ("train", bi, si))
                        if part:
                            self._step(combine_losses(part, c.weights))
                            ls.update(part)
                for k, v in ls.items():
                    sums[k] += float(v.detach())
                    counts[k] += 1
                steps += 1
        return {f"train_{k}_loss": sums[k] / counts[k] for k in LOSS_NAMES if counts[k]}

    # -- evaluation --------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, split: str = "val", max_pairs: int | None = None, per_node: bool = False) -> dict[str, Any]:
        """IIA, accuracy and strict accuracy on fixed pairs of a held-out split."""
        self.ll.eval()
        d = getattr(self.data, split)
        targets = self._targets[split]
        b_idx, s_idx = eval_pairs(len(d), max_pairs or self.cfg.eval_pairs, self.cfg.seed)
        chunk = 1024
        node_iia = {n: [0.0, 0.0] for n in self.hl_nodes}
        acc = [0.0, 0.0]
        for i in range(0, len(b_idx), chunk):
            bi, si = b_idx[i:i + chunk], s_idx[i:i + chunk]
            base, source = d.tokens[bi].to(self.device), d.tokens[si].to(self.device)
            mask, target = d.mask[bi].to(self.device), targets[bi].to(self.device)
            iit_mask = self.data.iit_mask(mask, d.mask[si].to(self.device))
            rows = slice(0, base.shape[0])
            iit_locs = {n: self._ll_locs(self.corr.mapping[n]) for n in self.hl_nodes}
            _, ll_cache = capture(self.ll, source, [loc.hook for locs in iit_locs.values() for loc in locs])
            out = self.ll(base)
            scored = self._scored(mask, target)
            acc[0] += float((self.agree(out, target) & scored).sum())
            acc[1] += float(scored.sum())
            for n in self.hl_nodes:
                hl_t = self._hl_interchange_target(base, source, n, (split, bi, si))
                o = patched_forward(self.ll, base, [(loc, rows, ll_cache[loc.hook]) for loc in iit_locs[n]])
                scored_t = self._scored(iit_mask, hl_t)
                node_iia[n][0] += float((self.agree(o, hl_t) & scored_t).sum())
                node_iia[n][1] += float(scored_t.sum())
        base, source = d.tokens[b_idx].to(self.device), d.tokens[s_idx].to(self.device)
        target = targets[b_idx].to(self.device)
        strict = strict_accuracy(self.ll, base, source, {n: self.corr.ll_locs[n] for n in self.non_circuit},
                                 self.agree, target, self._scored(d.mask[b_idx].to(self.device), target), chunk=chunk)
        frac = lambda a: a[0] / a[1] if a[1] else 1.0  # noqa: E731
        iia = {n: frac(v) for n, v in node_iia.items()}
        res: dict[str, Any] = {"iia": float(np.mean(list(iia.values()))) if iia else 1.0,
                               "accuracy": frac(acc),
                               "strict_accuracy": strict.mean,
                               "iia_min": min(iia.values(), default=1.0),
                               "strict_accuracy_min": strict.min,
                               "strict_accuracy_joint": strict.joint,
                               "n_pairs": int(len(b_idx))}
        if per_node:
            res["iia_per_node"] = iia
            res["strict_accuracy_per_node"] = dict(strict.per_node)
        return res

    def score(self, metrics: dict) -> float:
        """The worst of the trained metrics (what early stopping and best-epoch selection look at)."""
        return min(self._needed(metrics))

    def reached(self, metrics: dict) -> bool:
        thr = self.cfg.early_stop_threshold
        return all(v >= thr - 1e-12 for v in self._needed(metrics))

    def _needed(self, metrics: dict) -> list[float]:
        c = self.cfg
        suffix = "_min" if c.early_stop_criterion in ("min", "min_joint") else ""
        need = []
        if c.iit_weight > 0:
            need.append(metrics["iia" + suffix])
        if c.behavior_weight > 0:
            need.append(metrics["accuracy"])
        if c.strict_weight > 0:
            need.append(metrics["strict_accuracy" + suffix])
            if c.early_stop_criterion == "min_joint":
                need.append(metrics["strict_accuracy_joint"])
        return need

    # -- loop and checkpoints ------------------------------------------------------------------
    def fit(self, checkpoint: str | Path | None = None, progress: bool = True,
            max_seconds: float | None = None) -> dict[str, Any]:
        """Train until ``epochs``, early stopping, or ``max_seconds`` of training CPU time (this process's,
        so a run on a loaded machine gets the same budget; counted over resumed sessions too: it is in the
        checkpoint; checked after each epoch)."""
        from tqdm import tqdm

        c = self.cfg
        out_of_time = lambda: max_seconds is not None and self.cpu_seconds >= max_seconds  # noqa: E731
        bar = tqdm(total=c.epochs, initial=self.epoch, desc="siit", file=sys.stderr, disable=not progress,
                   dynamic_ncols=True)
        try:
            while self.epoch < c.epochs and not self.stopped_early and not out_of_time():
                t0, c0 = time.perf_counter(), time.process_time()
                row: dict[str, Any] = {"epoch": self.epoch + 1, "lr": self.opt.param_groups[0]["lr"]}
                row.update(self.train_epoch())
                self.sched.step()
                self.epoch += 1
                if self.epoch % c.eval_every == 0 or self.epoch == c.epochs:
                    m = self.evaluate("val")
                    row.update({f"val_{k}": v for k, v in m.items() if k != "n_pairs"})
                    sc = self.score(m)
                    if self.best is None or sc > self.best[0]:
                        self.best = (sc, self.epoch, {k: v.detach().clone() for k, v in self.ll.state_dict().items()})
                    if c.early_stop and self.reached(m):
                        self.stopped_early = True
                self.train_seconds += time.perf_counter() - t0
                self.cpu_seconds += time.process_time() - c0
                row["seconds"] = self.train_seconds
                row["cpu_seconds"] = self.cpu_seconds
                self.history.append(row)
                bar.update(1)
                bar.set_postfix({k.replace("val_", ""): f"{v:.3f}" for k, v in row.items()
                                 if k in ("val_iia", "val_accuracy", "val_strict_accuracy")})
                if checkpoint is not None:
                    self.save_checkpoint(checkpoint)
        finally:
            bar.close()
        best_epoch = self.epoch
        if c.restore_best and self.best is not None and self.best[1] != self.epoch:
            self.ll.load_state_dict(self.best[2])
            best_epoch = self.best[1]
            self.log(f"restored the weights of epoch {best_epoch} (best validation score {self.best[0]:.4f})")
        return {"epochs": self.epoch, "stopped_early": self.stopped_early, "train_seconds": self.train_seconds,
                "best_epoch": best_epoch, "cpu_seconds": self.cpu_seconds, "time_capped": not self.stopped_early and self.epoch < c.epochs}

    def state(self) -> dict:
        return {"model": self.ll.state_dict(), "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                "epoch": self.epoch, "history": self.history, "stopped_early": self.stopped_early,
                "train_seconds": self.train_seconds, "config": self.cfg.to_json(), "best": self.best,
                "cpu_seconds": self.cpu_seconds}

    def save_checkpoint(self, path: str | Path) -> None:
        buf = io.BytesIO()
        torch.save(self.state(), buf)
        write_atomic(path, buf.getvalue())

    def load_checkpoint(self, path: str | Path) -> None:
        st = load_checkpoint_file(path, self.device)
        saved = {k: v for k, v in st["config"].items()
                 if k not in ("epochs", "early_stop", "eval_every", "early_stop_threshold", "restore_best")}
        mine = {k: v for k, v in self.cfg.to_json().items() if k in saved}
        diff = {k: (saved[k], mine[k]) for k in saved if json.dumps(saved[k]) != json.dumps(list(mine[k]) if isinstance(mine[k], tuple) else mine[k])}
        if diff:
            raise ValueError(f"checkpoint {path} was trained with other settings: {diff}")
        self.ll.load_state_dict(st["model"])
        self.opt.load_state_dict(st["opt"])
        self.sched.load_state_dict(st["sched"])
        self.epoch, self.history = int(st["epoch"]), list(st["history"])
        self.stopped_early, self.train_seconds = bool(st["stopped_early"]), float(st["train_seconds"])
        self.best = st.get("best")
        self.cpu_seconds = float(st.get("cpu_seconds", 0.0))


CHECKPOINT_KEYS = ("model", "opt", "sched", "epoch", "history", "stopped_early", "train_seconds", "config")


def load_checkpoint_file(path: str | Path, device: str | torch.device = "cpu",
                         keys: tuple[str, ...] = CHECKPOINT_KEYS) -> dict:
    """A trainer checkpoint, read with ``torch.load(weights_only=True)``: tensors and plain containers
    only, so a planted file can never run code. Anything else is a one-line ``ValueError`` naming the file."""
    import pickle

    try:
        st = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, TypeError, ValueError) as err:
        text = str(err)
        why = text.split("WeightsUnpickler error:")[1] if "WeightsUnpickler error:" in text else text
        why = (why.strip().splitlines() or [type(err).__name__])[0].split(". ")[0]
        raise ValueError(f"checkpoint {path}: not a circuit-bench trainer checkpoint, refused by "
                         f"torch.load(weights_only=True): {why[:200]}") from None
    if not isinstance(st, dict):
        raise ValueError(f"checkpoint {path}: not a circuit-bench trainer checkpoint (a {type(st).__name__}, "
                         "not a dict)")
    missing = [k for k in keys if k not in st]
    if missing:
        raise ValueError(f"checkpoint {path}: not a circuit-bench trainer checkpoint (missing {', '.join(missing)})")
    if not isinstance(st["config"], dict):
        raise ValueError(f"checkpoint {path}: field 'config' is not a dict")
    return st
