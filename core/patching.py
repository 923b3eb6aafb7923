"""The one patching engine every method and evaluation uses.

A run takes edge masks ``M`` in ``[0, 1]^E`` (a batch of K of them) and runs the model on the clean
input, where every receiver v gets

    x_v  <-  x_v + sum_u (1 - M[u->v]) * (a_u^ablated - a_u^current)

``a_u^current`` is the sender's output *in this patched run* (so removed edges upstream propagate:
the ACDC / EAP-IG / AutoCircuit "tree patch" semantics) and ``a_u^ablated`` its output on the
corrupted input (``ablation="corrupted"``, resample), its per-position mean over the clean data
(``"mean"``), zero (``"zero"``) or a learned per-position constant (``"optimal"``: optimal ablation,
core/optimal_ablation.py). M = 1 everywhere reproduces the clean model exactly; M = 0 everywhere
feeds every receiver the ablated activations (for ``"corrupted"``: the corrupted run).
Receivers sit before any normalisation, so x_v is a sum of sender outputs plus constant biases and
the correction is exact. Many masks run in one pass (the batch is repeated K times) and the whole
run is differentiable with respect to the masks.
"""

from __future__ import annotations

import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from core import metrics, naming
from core.data import CaseData, OutputType
from core.fastpath import FastForward, unsupported
from core.graph import Graph
from core.naming import NodeLoc
from core.optimal_ablation import cached_optimal_ablation
from core.params import frozen_parameters

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer

ABLATIONS = ("corrupted", "mean", "zero", "optimal")
LossFn = Callable[[torch.Tensor], torch.Tensor]  # logits [K, n, seq, vocab] -> [K]
# model -> (the config its fast path was checked on, {graph shape: its FastForward}); FastForward holds the
# model weakly, so these entries do not keep models alive
_VERIFIED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class SenderGroup:
    """Senders written by one hook: ``start..start+size`` in the graph's sender order."""

    hook: str
    start: int
    size: int
    per_head: bool  # hook output is [batch, pos, head, d]


def sender_groups(graph: Graph) -> list[SenderGroup]:
    """The graph's senders grouped by the hook that writes them (a layer's heads share one)."""
    groups: list[SenderGroup] = []
    for i, r in enumerate(graph.sender_records):
        g = groups[-1] if groups else None
        if g is not None and g.hook == r.hook:
            groups[-1] = SenderGroup(g.hook, g.start, g.size + 1, g.per_head)
        else:
            groups.append(SenderGroup(r.hook, i, 1, r.head is not None))
    return groups


@dataclass(frozen=True)
class ReceiverGroup:
    """Receivers fed by one hook: ``start..start+size`` in the graph's receiver order."""

    hook: str
    start: int
    size: int
    n_senders: int
    per_head: bool


def receiver_groups(graph: Graph) -> list[ReceiverGroup]:
    groups: dict[str, ReceiverGroup] = {}
    for i, r in enumerate(graph.receivers):
        g = groups.get(r.hook)
        if g is None:
            groups[r.hook] = ReceiverGroup(r.hook, i, 1, r.n_senders, r.head is not None)
        else:
            groups[r.hook] = ReceiverGroup(g.hook, g.start, g.size + 1, g.n_senders, g.per_head)
    return list(groups.values())


def _as_senders(x: torch.Tensor, per_head: bool) -> torch.Tensor:
    """[batch, pos, (head,) d] -> [batch, pos, size, d]."""
    return x if per_head else x.unsqueeze(-2)


class PatchEngine:
    """Runs a model under batches of edge masks. Built once per (model, graph, data, ablation)."""

    def __init__(self, model: "HookedTransformer", graph: Graph, data: CaseData, output_type: OutputType,
                 ablation: str = "corrupted", memory_budget: float = 2**29, fast: bool = True):
        if ablation not in ABLATIONS:
            raise ValueError(f"unknown ablation {ablation!r}; expected one of {', '.join(ABLATIONS)}")
        self.model, self.graph, self.data = model, graph, data
        self.output_type, self.ablation = output_type, ablation
        self.memory_budget = memory_budget  # bytes of patching buffers per chunk of masks
        self.senders = sender_groups(graph)
        self.receivers = receiver_groups(graph)
        self.device = next(model.parameters()).device
        self.clean = data.clean.to(self.device)
        self.mask = data.mask.to(self.device)
        self.slots = graph.slots.to(self.device)
        self.fast, self.fast_reason = self._build_fast() if fast else (None, "turned off (fast=False)")
        with torch.no_grad():
            self.corrupted_logits = None
            if ablation == "corrupted" and self.fast is not None:  # both plain runs in one pass
                (self.clean_acts, self.clean_logits), (self.ablated, self.corrupted_logits) = \
                    self._fast_plain_pair(data.corrupted.to(self.device))
                return
            clean_acts, self.clean_logits = self.sender_activations(self.clean, return_logits=True)
            self.clean_acts = clean_acts
            if ablation == "corrupted":
                self.ablated, self.corrupted_logits = self.sender_activations(
                    data.corrupted.to(self.device), return_logits=True, corrupted_pos=True)
            elif ablation == "mean":
                self.ablated = [a.mean(0, keepdim=True) for a in clean_acts]
            elif ablation == "optimal":  # learned per-sender constants (core/optimal_ablation.py), held like means
                self.ablated, self._abl_z, self.ablation_info = cached_optimal_ablation(self)
            else:
                self.ablated = [torch.zeros_like(a[:1]) for a in clean_acts]

    # ---- plain runs ---------------------------------------------------------------------------------
    def corrupted_run_patches(self) -> list[Patch]:
        """Site patches of the corrupted run: position scrambling when the data asks for it."""
        pos = self.data.corrupted_pos
        if pos is None:
            return []
        return [(NodeLoc(naming.act_name("pos_embed")), slice(None), self.model.W_pos[pos.to(self.device)])]

    def corrupted_run_hooks(self) -> list:
        """:meth:`corrupted_run_patches` as TransformerLens forward hooks."""
        return _patch_hooks(self.corrupted_run_patches())

    def sender_activations(self, tokens: torch.Tensor, return_logits: bool = False, patches: Sequence[Patch] = (),
                           corrupted_pos: bool = False):
        """Each sender group's output ``[n, pos, size, d]`` on ``tokens`` (no edge patching; ``patches``
        applied first). ``corrupted_pos``: with the data's position scrambling (:meth:`corrupted_run_patches`)."""
        if self.fast is not None and not patches:
            pos = self.data.corrupted_pos if corrupted_pos else None
            out, logits = self._fast_plain(tokens, None if pos is None else self.model.W_pos[pos.to(self.device)])
            return (out, logits) if return_logits else out
        patches = list(patches) + (self.corrupted_run_patches() if corrupted_pos else [])
        # patches first, so the saved senders see them (hook_pos_embed is a sender)
        logits, acts = capture(self.model, tokens, [g.hook for g in self.senders], patches=patches)
        out = [_as_senders(acts[g.hook], g.per_head) for g in self.senders]
        return (out, logits) if return_logits else out

    # ---- the fast path (core/fastpath.py) -------------------------------------------------------------
    def _build_fast(self):
        """The engine's own forward when the config allows it and it reproduces the model's logits."""
        why = unsupported(self.model.cfg)
        if why is not None:
            return None, why
        key = repr(sorted(self.model.cfg.to_dict().items(), key=lambda kv: kv[0]))
        g = self.graph
        shape = (g.n_layers, g.n_heads, g.has_mlp, g.split_qkv, g.separate_pos)
        verified_key, kept = _VERIFIED.get(self.model, (None, {}))
        if verified_key == key and shape in kept:  # this model object, this config: checked before; the
            fast = kept[shape]  # same object, so its weight caches (folded weights, compactions) carry over
            fast._cols_cache.clear()  # keyed by the previous engine's ablated tensors: do not keep them alive
            return fast, None
        fast = FastForward(self.model, self.graph)
        if verified_key == key:
            kept[shape] = fast
            return fast, None
        probe = self.clean[:2]
        with torch.no_grad():
            ref = self.model(probe)
            got = fast.run(1, [x.unsqueeze(0) for x in fast.embed(probe)])[0]
        tol = (1e-9 if ref.dtype == torch.float64 else 1e-4) * (1 + float(ref.abs().max()))
        err = float((got - ref).abs().max())
        if not err <= tol:
            return None, f"own forward differs from the model by {err:.3g} (> {tol:.3g})"
        _VERIFIED[self.model] = (key, {shape: fast})
        return fast, None

    def _fast_plain(self, tokens: torch.Tensor, pos_override: torch.Tensor | None):
        collect: list[torch.Tensor] = []
        logits = self.fast.run(1, [x.unsqueeze(0) for x in self.fast.embed(tokens, pos_override)], collect=collect)
        return [c[0].permute(1, 2, 0, 3) for c in collect], logits[0]

    def _fast_plain_pair(self, corrupted: torch.Tensor):
        """The clean and the corrupted plain runs as two rows of one fast pass (the same values as two
        runs: rows never mix): ``((clean acts, clean logits), (corrupted acts, corrupted logits))``."""
        pos = self.data.corrupted_pos
        pos = None if pos is None else self.model.W_pos[pos.to(self.device)]
        pair = [torch.stack([c, x]) for c, x in zip(self.fast.embed(self.clean), self.fast.embed(corrupted, pos))]
        collect: list[torch.Tensor] = []
        logits = self.fast.run(2, pair, collect=collect)
        # a group that does not depend on the input (a layer that writes nothing) is collected once
        return tuple(([c[min(k, c.shape[0] - 1)].permute(1, 2, 0, 3) for c in collect], logits[k]) for k in range(2))

    def _layout(self, acts: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per group ``[n or 1, pos, size, d]`` -> the fast path's ``[1, size, n, pos, d]``."""
        n = self.clean.shape[0]
        return [a.expand(n, *a.shape[1:]).permute(2, 0, 1, 3).unsqueeze(0).contiguous() for a in acts]

    def _ablated_layout(self) -> list[torch.Tensor]:
        """:attr:`ablated` in the fast layout (cached while ``ablated`` holds the same tensors)."""
        key = tuple((id(a), a.data_ptr(), a._version, tuple(a.shape)) for a in self.ablated)
        if self.__dict__.get("_abl_key") != key:
            self._abl_key, self._abl_fast = key, self._layout(self.ablated)
            self.__dict__.pop("_below_fast_cache", None)
        return self._abl_fast

    def default_loss(self, reference: torch.Tensor | None = None) -> LossFn:
        """KL (categorical) / MSE (numerical) to the clean model's output on the masked positions."""
        ref = self.clean_logits if reference is None else reference
        return lambda logits: metrics.faithfulness_loss(logits, ref, self.mask, self.output_type)

    # ---- patched runs -------------------------------------------------------------------------------
    def dense_weights(self, masks: torch.Tensor) -> torch.Tensor:
        """[K, E] edge masks -> [K, S, R] weights (1 - mask) on the (sender, receiver) slots."""
        K = masks.shape[0]
        S, R = len(self.graph.senders), len(self.graph.receivers)
        e, s, r = self.slots.unbind(1)
        src = 1.0 - masks[:, e]
        flat = torch.zeros(K, S * R, dtype=src.dtype, device=src.device)
        flat = flat.scatter(1, (s * R + r).expand(K, -1), src)
        return flat.view(K, S, R)

    def _hooks(self, W: torch.Tensor, n: int, ablated: list[torch.Tensor], probes: dict | None,
               input_override: torch.Tensor | None, sender_override: dict[int, Callable] | None):
        """Forward hooks implementing the patch for weights ``W [K, S, R]`` on a batch of K*n rows."""
        K = W.shape[0]
        diffs: list[tuple[SenderGroup, torch.Tensor]] = []
        hooks = []
        needs_grad = W.requires_grad

        for gi, g in enumerate(self.senders):
            def sender_hook(x, hook, g=g, gi=gi):
                if gi == 0 and input_override is not None:
                    x = input_override
                if sender_override and gi in sender_override:
                    x = sender_override[gi](x)
                cur = _as_senders(x, g.per_head).view(K, n, *x.shape[1:2], g.size, x.shape[-1])
                diffs.append((g, ablated[gi].unsqueeze(0) - cur))
                return x
            hooks.append((g.hook, sender_hook))

        for rg in self.receivers:
            def receiver_hook(x, hook, rg=rg):
                delta = None
                for g, d in diffs:
                    if g.start + g.size > rg.n_senders:
                        break
                    w = W[:, g.start:g.start + g.size, rg.start:rg.start + rg.size]
                    if not needs_grad and not bool(w.any()):
                        continue
                    term = torch.einsum("knpsd,ksr->knprd", d, w)
                    delta = term if delta is None else delta + term
                if probes is not None:
                    p = torch.zeros(K, n, x.shape[1], rg.size, x.shape[-1], device=x.device, dtype=x.dtype, requires_grad=True)
                    probes[rg.hook] = p
                    delta = p if delta is None else delta + p
                if delta is None:
                    return x
                delta = delta.reshape(K * n, x.shape[1], rg.size, x.shape[-1])
                return x + (delta if rg.per_head else delta[:, :, 0])
            hooks.append((rg.hook, receiver_hook))
        return hooks

    def run(self, masks: torch.Tensor, *, tokens: torch.Tensor | None = None, probes: dict | None = None,
            input_override: torch.Tensor | None = None,
            sender_override: dict[int, Callable] | None = None) -> torch.Tensor:
        """Logits ``[K, n, pos, vocab]`` of the clean input under each of the K edge masks ``[K, E]``
        (a single ``[E]`` mask gives K = 1). Differentiable with respect to ``masks``.

        ``probes``: a dict to fill with zero tensors added at every receiver hook (their ``.grad``
        after a backward pass is dLoss/d(receiver input), shape [K, n, pos, size, d]).
        ``input_override``: replaces the ``input`` sender's output (e.g. interpolated embeddings).
        ``sender_override``: {sender group index: fn(x) -> x} to change a group's output.
        """
        if masks.dim() == 1:
            masks = masks.unsqueeze(0)
        if masks.shape[-1] != self.graph.n_edges:
            raise ValueError(f"mask has {masks.shape[-1]} edges, the graph has {self.graph.n_edges}")
        masks = masks.to(self.device, self.model.cfg.dtype)
        tokens = self.clean if tokens is None else tokens.to(self.device)
        if tokens.shape != self.clean.shape:
            raise ValueError(f"tokens must have the clean data's shape {tuple(self.clean.shape)}, got {tuple(tokens.shape)}")
        K, n = masks.shape[0], tokens.shape[0]
        W = self.dense_weights(masks)
        if self.fast is not None:
            inputs = [x.unsqueeze(0) for x in self.fast.embed(tokens)]
            if input_override is not None:
                inputs[0] = input_override.unsqueeze(0)
            return self.fast.run(K, inputs, W=W, ablated=self._ablated_layout(), probes=probes,
                                 sender_override=sender_override)
        if input_override is not None:
            input_override = input_override.repeat(K, *([1] * (input_override.dim() - 1)))
        hooks = self._hooks(W, n, self.ablated, probes, input_override, sender_override)
        logits = self.model.run_with_hooks(tokens.repeat(K, 1), fwd_hooks=hooks)
        return logits.view(K, n, *logits.shape[1:])

    def run_nodes(self, gates: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[K, n, pos, vocab]`` with each sender's output set to
        ``ablated + gate * (own - ablated)``, for gates ``[K, S]`` over ``graph.senders`` (1 keeps).

        The same as :meth:`run` with every edge of sender s masked by ``gates[:, s]`` (all receivers
        read the residual stream, so scaling a node's outgoing edges alike is scaling its output), at
        a fraction of the cost: no receiver hooks, and heads are gated at ``hook_z`` (their output is
        linear in z: ``result_h = z_h W_O[h]``, and the ablated z gives the ablated result), so the
        model runs without per-head results or split q/k/v inputs, which TransformerLens computes with
        ``[batch, pos, head, d_head, d_model]`` products. Used by node-level methods (SP).
        Differentiable with respect to ``gates``. ``keep`` (``[S]`` bool, optional): senders that are
        never gated (their gate columns are ignored and get no gradient), e.g. SP's ``input``.
        """
        if gates.dim() == 1:
            gates = gates.unsqueeze(0)
        if gates.shape[-1] != len(self.graph.senders):
            raise ValueError(f"gates have {gates.shape[-1]} senders, the graph has {len(self.graph.senders)}")
        gates = gates.to(self.device, self.model.cfg.dtype)
        K, n = gates.shape[0], self.clean.shape[0]
        if keep is not None:
            keep = keep.to(self.device, torch.bool)
            gates = torch.where(keep, torch.ones_like(gates).detach(), gates)
        if self.fast is not None:  # heads gated at z as below, the ablated outputs added after W_O
            inputs = [x.unsqueeze(0) for x in self.fast.embed(self.clean)]
            return self.fast.run(K, inputs, gates=gates, ablated=self._ablated_layout(),
                                 keep=None if keep is None else keep.tolist())
        ablated_z = self._ablated_z()
        hooks = []
        for gi, g in enumerate(self.senders):
            hook = naming.act_name("z", naming.hook_layer(g.hook)) if g.per_head else g.hook
            ablated = ablated_z[hook] if g.per_head else self.ablated[gi]

            def sender_hook(x, hook, g=g, ablated=ablated):
                cur = _as_senders(x, g.per_head).view(K, n, *x.shape[1:2], g.size, x.shape[-1])
                z = gates[:, g.start:g.start + g.size].view(K, 1, 1, g.size, 1)
                out = (cur + (1 - z) * (ablated.unsqueeze(0) - cur)).reshape(K * n, x.shape[1], g.size, -1)
                return out if g.per_head else out[:, :, 0]
            hooks.append((hook, sender_hook))
        cfg = self.model.cfg
        saved = cfg.use_attn_result, cfg.use_split_qkv_input
        try:
            cfg.use_attn_result = cfg.use_split_qkv_input = False
            logits = self.model.run_with_hooks(self.clean.repeat(K, 1), fwd_hooks=hooks)
        finally:
            cfg.use_attn_result, cfg.use_split_qkv_input = saved
        return logits.view(K, n, *logits.shape[1:])

    @torch.no_grad()
    def _ablated_z(self) -> dict[str, torch.Tensor]:
        """The ablated value of every ``blocks.l.attn.hook_z`` ``[n or 1, pos, head, d_head]`` (cached)."""
        if "_abl_z" not in self.__dict__:
            names = [naming.act_name("z", layer) for layer in range(self.graph.n_layers)]
            if self.ablation == "corrupted":
                _, saved = capture(self.model, self.data.corrupted.to(self.device), names,
                                   patches=self.corrupted_run_patches())
            else:
                _, saved = capture(self.model, self.clean, names)
                keep = (lambda z: z.mean(0, keepdim=True)) if self.ablation == "mean" else (lambda z: torch.zeros_like(z[:1]))
                saved = {h: keep(z) for h, z in saved.items()}
            self._abl_z = saved
        return self._abl_z

    def chunk_size(self, n_rows: int | None = None) -> int:
        """How many masks fit in one pass under the memory budget."""
        n = self.clean.shape[0] if n_rows is None else n_rows
        cfg = self.model.cfg
        per_mask = 4 * n * self.clean.shape[1] * (len(self.graph.senders) + cfg.n_heads * 4 + cfg.d_vocab_out) * cfg.d_model
        return max(1, int(self.memory_budget // max(per_mask, 1)))

    @torch.no_grad()
    def evaluate(self, masks: torch.Tensor, loss_fn: LossFn | None = None, chunk: int | None = None) -> torch.Tensor:
        """``loss_fn`` (default: :meth:`default_loss`) of each of the K masks ``[K, E]``, chunked: ``[K]``."""
        if masks.dim() == 1:
            masks = masks.unsqueeze(0)
        loss_fn = loss_fn or self.default_loss()
        chunk = chunk or self.chunk_size()
        out = [loss_fn(self.run(masks[i:i + chunk])) for i in range(0, masks.shape[0], chunk)]
        return torch.cat([o.reshape(-1) for o in out])

    # ---- restarting from cached clean activations (ACDC's start-at-layer trick) ---------------------
    def run_from(self, layer: int, masks: torch.Tensor) -> torch.Tensor:
        """:meth:`run` started at block ``layer`` from the cached clean residual stream.

        Valid (and then equal to ``run(masks)`` up to float rounding) only when every edge into a
        receiver below ``layer`` is kept in all K masks: the residual stream entering block ``layer``
        and every sender output below it are then the clean ones, so the senders that do not run
        contribute their cached ``ablated - clean`` differences. Raises ``ValueError`` otherwise.
        """
        if masks.dim() == 1:
            masks = masks.unsqueeze(0)
        if masks.shape[-1] != self.graph.n_edges:
            raise ValueError(f"mask has {masks.shape[-1]} edges, the graph has {self.graph.n_edges}")
        if not 0 <= layer < self.graph.n_layers:
            raise ValueError(f"layer must be in [0, {self.graph.n_layers}), got {layer}")
        masks = masks.to(self.device, self.model.cfg.dtype)
        below = self._edges_into_layers_below(layer)
        if below.any() and bool((masks[:, below] != 1).any()):
            raise ValueError(f"run_from({layer}) needs every edge into a receiver below layer {layer} kept")
        K, n = masks.shape[0], self.clean.shape[0]
        if self.fast is not None and layer == 0:
            return self.run(masks)
        if self.fast is not None:
            resid = self._clean_resid_pre(layer).unsqueeze(0)
            return self.fast.run(K, None, W=self.dense_weights(masks), ablated=self._ablated_layout(), start=layer,
                                 resid=resid, below=self._below_fast(layer))
        hooks = self._hooks(self.dense_weights(masks), n, self.ablated, None, None, None)
        # Sender groups whose hook sits before block `layer` never fire: feed their clean outputs to
        # their sender hooks by hand (in sender order, as the receivers expect).
        for (_, sender_hook), g, clean in zip(hooks, self.senders, self.clean_acts):
            if naming.hook_layer(g.hook) >= layer:
                break
            x = clean if g.per_head else clean[..., 0, :]
            sender_hook(x.repeat(K, *([1] * (x.dim() - 1))), None)
        resid = self._clean_resid_pre(layer)
        logits = self.model.run_with_hooks(resid.repeat(K, 1, 1), start_at_layer=layer, fwd_hooks=hooks)
        return logits.view(K, n, *logits.shape[1:])

    @torch.no_grad()
    def _below_fast(self, layer: int) -> list[torch.Tensor]:
        """``ablated - clean`` (fast layout) of the sender groups below block ``layer`` (cached)."""
        abl = self._ablated_layout()
        cache = self.__dict__.setdefault("_below_fast_cache", {})
        if layer not in cache:
            if "_clean_fast" not in self.__dict__:
                self._clean_fast = self._layout(self.clean_acts)
            cache[layer] = [a - c for a, c, g in zip(abl, self._clean_fast, self.senders) if naming.hook_layer(g.hook) < layer]
        return cache[layer]

    @torch.no_grad()
    def evaluate_from(self, layer: int, masks: torch.Tensor, loss_fn: LossFn | None = None,
                      chunk: int | None = None) -> torch.Tensor:
        """:meth:`evaluate` through :meth:`run_from` (same precondition): ``[K]`` losses."""
        if masks.dim() == 1:
            masks = masks.unsqueeze(0)
        loss_fn = loss_fn or self.default_loss()
        chunk = chunk or self.chunk_size()
        out = [loss_fn(self.run_from(layer, masks[i:i + chunk])) for i in range(0, masks.shape[0], chunk)]
        return torch.cat([o.reshape(-1) for o in out])

    def edge_layers(self) -> torch.Tensor:
        """``[E]`` long: the block of each edge's (earliest) receiver. Ablating only edges whose layer
        is >= l leaves everything below block l clean, so :meth:`run_from` ``(l, ...)`` applies."""
        cache = self.__dict__
        if "_edge_layers" not in cache:
            e, _, r = self.slots.unbind(1)
            r_layer = torch.tensor([naming.hook_layer(rc.hook) for rc in self.graph.receivers], device=self.device)
            out = torch.full((self.graph.n_edges,), self.graph.n_layers, dtype=torch.long, device=self.device)
            cache["_edge_layers"] = out.scatter_reduce(0, e, r_layer[r], reduce="amin")
        return cache["_edge_layers"]

    def _edges_into_layers_below(self, layer: int) -> torch.Tensor:
        cache = self.__dict__.setdefault("_below_cache", {})
        if layer not in cache:
            e, _, r = self.slots.unbind(1)
            r_layer = torch.tensor([naming.hook_layer(rc.hook) for rc in self.graph.receivers], device=self.device)
            below = torch.zeros(self.graph.n_edges, dtype=torch.bool, device=self.device)
            below[e[r_layer[r] < layer]] = True
            cache[layer] = below
        return cache[layer]

    @torch.no_grad()
    def _clean_resid_pre(self, layer: int) -> torch.Tensor:
        """``blocks.{layer}.hook_resid_pre`` on the clean input (cached)."""
        cache = self.__dict__.setdefault("_resid_cache", {})
        if layer not in cache and self.fast is not None:  # the fast path's own values, bit for bit
            resids: list[torch.Tensor] = []
            self.fast.run(1, [x.unsqueeze(0) for x in self.fast.embed(self.clean)], resids=resids,
                          stop_after_senders=True)
            cache.update((i, r[0].detach()) for i, r in enumerate(resids))
        if layer not in cache:
            _, saved = capture(self.model, self.clean, [naming.act_name("resid_pre", layer)], stop_at_layer=layer + 1)
            cache[layer] = saved[naming.act_name("resid_pre", layer)]
        return cache[layer]

    # ---- attribution primitives ------------------------------------------------------------------------
    def full_mask(self) -> torch.Tensor:
        return torch.ones(self.graph.n_edges, device=self.device, dtype=self.model.cfg.dtype)

    def receiver_gradients(self, loss_fn: LossFn | None = None, *, input_override: torch.Tensor | None = None,
                           sender_override: dict[int, Callable] | None = None) -> dict[str, torch.Tensor]:
        """d loss / d (receiver input) at the full mask, per receiver hook: {hook: [n, pos, size, d]}.
        The loss is summed over the batch rows' mean as given by ``loss_fn`` (a scalar per mask)."""
        probes: dict[str, torch.Tensor] = {}
        loss_fn = loss_fn or self.default_loss()
        with torch.enable_grad(), frozen_parameters(self.model):
            logits = self.run(self.full_mask(), probes=probes, input_override=input_override,
                              sender_override=sender_override)
            loss = loss_fn(logits).sum()
            grads = torch.autograd.grad(loss, list(probes.values()), allow_unused=True)
        return {h: (g[0] if g is not None else torch.zeros_like(p[0])) for (h, p), g in zip(probes.items(), grads)}

    def edge_scores(self, sender_diffs: list[torch.Tensor], grads: dict[str, torch.Tensor]) -> torch.Tensor:
        """score[u->v] = sum_{batch, pos, d} sender_diffs[u] * grads[v]  (the EAP product), ``[E]``.

        ``sender_diffs``: per sender group ``[n, pos, size, d]`` (e.g. ablated - clean).
        """
        # one product [S, n*pos*d] @ [n*pos*d, R]; slots pick the (sender, receiver) pairs of edges
        # (concatenated sender/receiver-major: one copy each, and none for differences already laid out so)
        n, P = grads[self.receivers[0].hook].shape[:2]
        d = torch.cat([x.expand(n, P, *x.shape[2:]).permute(2, 0, 1, 3) for x in sender_diffs])
        g = torch.cat([grads[rg.hook].permute(2, 0, 1, 3) for rg in self.receivers])
        dense = d.reshape(d.shape[0], -1) @ g.reshape(g.shape[0], -1).T
        e, s, r = self.slots.unbind(1)
        return torch.zeros(self.graph.n_edges, device=self.device, dtype=dense.dtype).index_add(0, e, dense[s, r])

    def ablated_minus_clean(self) -> list[torch.Tensor]:
        """Per sender group, ``a^ablated - a^clean`` ``[n, pos, size, d]``."""
        return [a.expand_as(c) - c for a, c in zip(self.ablated, self.clean_acts)]

    @contextmanager
    def eval_mode(self):
        if not any(m.training for m in self.model.modules()):  # already in eval mode: nothing to switch
            yield
            return
        was = self.model.training
        self.model.eval()
        try:
            yield
        finally:
            self.model.train(was)




# ---------------------------------------------------------------------------------------------------
# Site patches: interchange interventions on named node locations (SIIT training, IOI, directions)
# ---------------------------------------------------------------------------------------------------
# Interchange interventions on any ``HookedRootModule`` through named node locations.
# 
# ``capture(model, tokens, locs)`` runs the source input and returns each location's value;
# ``patched_forward(model, tokens, patches)`` runs the base input with some rows of some locations
# overwritten by those values. One patch is ``(loc, rows, value)``: ``rows`` is a slice of the batch
# (so several interventions share one forward pass on a concatenated batch) and ``value`` the source
# activation for those rows (the full hook tensor; the head index of ``loc`` picks dim 2).

Value = torch.Tensor | Callable[[torch.Tensor], torch.Tensor]
Patch = tuple[NodeLoc, slice, Value]


def _patch_hooks(patches: Sequence[Patch]) -> list:
    """TransformerLens forward hooks applying the patches (rows and head as in each patch)."""
    by_hook: dict[str, list[tuple[int | None, slice, Value]]] = {}
    for loc, rows, value in patches:
        by_hook.setdefault(loc.hook, []).append((loc.head, rows, value))

    def make_hook(items):
        def hook_fn(x, hook):
            x = x.clone()
            for head, rows, value in items:
                if callable(value) and head is None:
                    x[rows] = value(x[rows]).to(x.dtype)
                elif callable(value):
                    x[rows, :, head] = value(x[rows, :, head]).to(x.dtype)
                elif head is None:
                    x[rows] = value.to(x.dtype)
                else:
                    x[rows, :, head] = value[:, :, head].to(x.dtype)
            return x
        return hook_fn

    return [(h, make_hook(items)) for h, items in by_hook.items()]


def capture(model, tokens: torch.Tensor, hooks: Iterable[str], grad: bool = False,
            patches: Sequence[Patch] = (), **run_kwargs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(output, {hook name: activation}) of one forward pass; activations are detached unless ``grad``.
    ``patches`` are applied first (a captured hook that is also patched gives its patched value);
    ``run_kwargs`` go to the model's forward (e.g. ``stop_at_layer``)."""
    store: dict[str, torch.Tensor] = {}

    def save(x, hook):
        store[hook.name] = x if grad else x.detach()

    names = sorted(set(hooks))
    with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        out = model.run_with_hooks(tokens, fwd_hooks=_patch_hooks(patches) + [(n, save) for n in names], **run_kwargs)
    return out, store


def patched_forward(model, tokens: torch.Tensor, patches: Sequence[Patch], **run_kwargs) -> torch.Tensor:
    """The model's output on ``tokens`` with every patch applied (rows and head as in the patch).

    A patch's value is the source activation (the full hook tensor of those rows) or a function of the
    current activation of those rows that returns their new value (e.g. a change at one position only).
    ``run_kwargs`` go to the model's forward (e.g. ``start_at_layer``)."""
    if not patches:
        return model(tokens, **run_kwargs)
    return model.run_with_hooks(tokens, fwd_hooks=_patch_hooks(patches), **run_kwargs)


def interchange(model, base: torch.Tensor, source: torch.Tensor, locs: Sequence[NodeLoc]) -> torch.Tensor:
    """Output on ``base`` with every location in ``locs`` taken from the run on ``source``."""
    _, cache = capture(model, source, [loc.hook for loc in locs])
    rows = slice(0, base.shape[0])
    return patched_forward(model, base, [(loc, rows, cache[loc.hook]) for loc in locs])


# ---------------------------------------------------------------------------------------------------
# Strict accuracy: the one definition (SIIT training metrics, ``eval iit``)
# ---------------------------------------------------------------------------------------------------
Agree = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (outputs [n, seq, d], targets [n, seq]) -> bool


@dataclass(frozen=True)
class StrictAccuracy:
    """Per non-circuit node, the fraction of scored outputs that still agree with the base target when
    that node's output alone is interchanged from the source input; ``joint``: every one at once
    (per-node strictness does not imply it). With no node every value is 1.0."""

    per_node: dict[str, float]
    joint: float

    @property
    def mean(self) -> float:
        return float(np.mean(list(self.per_node.values()))) if self.per_node else 1.0

    @property
    def min(self) -> float:
        return min(self.per_node.values(), default=1.0)


@torch.no_grad()
def strict_accuracy(model, base: torch.Tensor, source: torch.Tensor | Mapping[str, torch.Tensor],
                    locs: Mapping[str, NodeLoc], agree: Agree, target: torch.Tensor, scored: torch.Tensor,
                    chunk: int = 1024) -> StrictAccuracy:
    """:class:`StrictAccuracy` of ``model`` on the pairs ``(base[i], source[i])``, for the nodes ``locs``
    (name -> location; the non-circuit nodes). ``target`` ``[n, seq]``: the base run's expected outputs,
    ``scored`` ``[n, seq]``: the positions that count, ``agree(outputs, target)``: where an output counts
    as the target's. ``source``: the source tokens, or their activations already captured
    ``{hook: [n, ...]}`` (e.g. under a patch of the source run). Pairs run ``chunk`` at a time."""
    per_node = {n: [0.0, 0.0] for n in locs}
    joint = [0.0, 0.0]
    hooks = sorted({loc.hook for loc in locs.values()})
    for i in range(0, base.shape[0], chunk):
        b, t, m = base[i:i + chunk], target[i:i + chunk], scored[i:i + chunk]
        if isinstance(source, Mapping):
            cache = {h: source[h][i:i + chunk] for h in hooks}
        else:
            cache = capture(model, source[i:i + chunk], hooks)[1] if hooks else {}
        rows = slice(0, b.shape[0])
        for n, loc in locs.items():
            o = patched_forward(model, b, [(loc, rows, cache[loc.hook])])
            per_node[n][0] += float((agree(o, t) & m).sum())
            per_node[n][1] += float(m.sum())
        if locs:
            o = patched_forward(model, b, [(loc, rows, cache[loc.hook]) for loc in locs.values()])
            joint[0] += float((agree(o, t) & m).sum())
            joint[1] += float(m.sum())
    frac = lambda a: a[0] / a[1] if a[1] else 1.0  # noqa: E731
    return StrictAccuracy({n: frac(v) for n, v in per_node.items()}, frac(joint))
