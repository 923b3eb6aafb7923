"""The patching engine's own forward pass: the model's computation written out in torch, patched.

TransformerLens gives a graph's sender and receiver values only with ``use_attn_result`` (per-head
outputs, computed through a ``[batch, pos, head, d_head, d_model]`` product) and
``use_split_qkv_input`` (a ``[batch, pos, head, d_model]`` copy of the residual for each of q, k, v),
and then every receiver is a Python hook. Here the same run is computed directly from the weights:

* a head's output is ``z_h W_O[h]`` (one batched matmul over the heads of a layer);
* the patched q/k/v input of head h is ``resid + delta_h``, ``delta_h = sum_s w[s, h] d_s`` over the
  senders' differences ``d_s = a_s^ablated - a_s^current``, all 3H receivers of a layer in one
  matmul (``[K, 3H, S] @ [K, S, n*pos*d_model]``); it is normalised per head and projected through
  ``W_Q/W_K/W_V`` per head; receivers whose weights are all zero (and carry no gradient) read the
  plain residual (one unsplit projection);
* MLP and logits receivers likewise, one matmul each.

Tensors are laid out ``[K, size, n, pos, d]`` (mask rows, then senders/receivers/heads), so every
contraction is a plain (batched) matrix product. Semantics are exactly :mod:`core.patching`'s; the
engine checks at build time that the unpatched pass reproduces the model's logits, and falls back to
TransformerLens hooks for configurations outside :func:`unsupported` (tests compare both paths with
the brute-force per-edge reference of ``tests/core/test_patching.py``).
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F

from core import naming

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer

    from core.graph import Graph

NORMS = (None, "LN", "LNPre", "RMS", "RMSPre")


def unsupported(cfg) -> str | None:
    """Why the fast path cannot run this config (None: it can). The engine also checks, when it is
    built, that the unpatched pass reproduces the model's logits (anything this list misses)."""
    g = lambda name, default=None: getattr(cfg, name, default)  # noqa: E731
    checks = [
        (g("positional_embedding_type", "standard") != "standard", f"positional embedding {g('positional_embedding_type')!r}"),
        (g("normalization_type") not in NORMS, f"normalization {g('normalization_type')!r}"),
        (bool(g("gated_mlp", False)), "gated MLP"),
        (g("n_key_value_heads") not in (None, cfg.n_heads), "grouped-query attention"),
        (bool(g("use_qk_norm", False)), "q/k norm"),
        ((g("attn_scores_soft_cap", -1.0) or -1.0) > 0, "attention soft cap"),
        ((g("output_logits_soft_cap", -1.0) or -1.0) > 0, "logit soft cap"),
        (g("attn_types") is not None, "local attention"),
        (bool(g("use_logn_attn", False)), "log-n attention"),
        (bool(g("use_attention_sinks", False)), "attention sinks"),
        (g("clip_qkv") is not None, "clipped q/k/v"),
        (bool(g("parallel_attn_mlp", False)), "parallel attention/MLP"),
        (bool(g("use_normalization_before_and_after", False)), "double normalisation"),
        (bool(g("use_attn_in", False)), "use_attn_in"),
        (str(g("act_fn", "")).endswith("_ln"), f"activation {g('act_fn')!r}"),
        (g("dtype") not in (torch.float32, torch.float64), f"dtype {g('dtype')}"),
        (g("attention_dir", "causal") not in ("causal", "bidirectional"), f"attention {g('attention_dir')!r}"),
        (str(g("original_architecture", "")).startswith("Olmo"), f"architecture {g('original_architecture')!r}"),
    ]
    reasons = [why for bad, why in checks if bad]
    return "; ".join(reasons) or None


class FastForward:
    """The patched forward of one (model, graph); weights are read from the model at every call."""

    def __init__(self, model: "HookedTransformer", graph: "Graph"):
        cfg = model.cfg
        self._model, self.graph = weakref.ref(model), graph  # weak: engines may keep this object per model
        self.L, self.H = cfg.n_layers, cfg.n_heads
        self.has_mlp = not cfg.attn_only
        self.norm = cfg.normalization_type
        self.causal = cfg.attention_dir == "causal"
        # receiver offsets per layer (q, k, v heads are contiguous: 3H receivers), the MLP, logits
        idx = graph.receiver_index
        self.qkv_start = [idx[f"a{layer}.h0<q>"] for layer in range(self.L)]
        self.mlp_start = [idx[f"m{layer}"] for layer in range(self.L)] if self.has_mlp else None
        self.logits_start = idx["logits"]
        self.n_input = 2 if graph.separate_pos else 1
        # per layer: senders before its heads (q/k/v receivers read these) and before its MLP
        self.s_attn = [graph.sender_index[f"a{layer}.h0"] for layer in range(self.L)]
        self.s_mlp = [graph.sender_index[f"m{layer}"] for layer in range(self.L)] if self.has_mlp else None
        self._fold_cache: dict = {}
        self._mlp_cache: dict = {}
        self._head_cache: dict = {}
        self._cols_cache: dict = {}

    @property
    def model(self) -> HookedTransformer:
        return self._model()

    # ---- pieces ---------------------------------------------------------------------------------------
    def _normed(self, x: torch.Tensor, ln) -> torch.Tensor:
        if self.norm is None:
            return x
        if self.norm in ("LN", "LNPre"):
            x = x - x.mean(-1, keepdim=True)
        x = x / (x.pow(2).mean(-1, keepdim=True) + ln.eps).sqrt()
        if self.norm == "LN":
            return x * ln.w + ln.b
        if self.norm == "RMS":
            return x * ln.w
        return x

    def _folded(self, Wp: torch.Tensor, bp: torch.Tensor, ln) -> tuple[torch.Tensor, torch.Tensor]:
        """``W_Q/K/V [H, D, dh]`` and bias ``[H, dh]`` with the normalisation's weight, bias and
        centring folded in: ``norm(x) W + b == (x Wf) / scale(x) + bf``. Cached while the
        parameters are unchanged (same tensors, same version counters) and no gradient is asked."""
        params = (Wp, bp) + ((ln.w,) if self.norm in ("LN", "RMS") else ()) + ((ln.b,) if self.norm == "LN" else ())
        key = tuple((id(p), p._version) for p in params)
        hit = self._fold_cache.get(id(Wp))
        if hit is not None and hit[0] == key and not (torch.is_grad_enabled() and any(p.requires_grad for p in params)):
            return hit[1]
        out = self._fold(Wp, bp, ln)
        if not any(p.requires_grad for p in params) or not torch.is_grad_enabled():
            self._fold_cache[id(Wp)] = (key, tuple(t.detach() for t in out))
        return out

    def _fold(self, Wp: torch.Tensor, bp: torch.Tensor, ln) -> tuple[torch.Tensor, torch.Tensor]:
        if self.norm == "LN":
            bp = bp + torch.einsum("d,hde->he", ln.b, Wp)
        if self.norm in ("LN", "RMS"):
            Wp = ln.w[:, None] * Wp
        if self.norm in ("LN", "LNPre"):
            Wp = Wp - Wp.mean(1, keepdim=True)  # x (I - 11^T / D) W: the centring
        return Wp, bp

    def _attend(self, qkv: list[torch.Tensor], attn, P: int) -> torch.Tensor:
        q, k, v = qkv
        scores = torch.matmul(q, k.transpose(-1, -2)) / attn.attn_scale  # [K, H, n, P, P]
        if self.causal:
            future = torch.ones(P, P, dtype=torch.bool, device=scores.device).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        return torch.matmul(torch.softmax(scores, -1), v)

    def _head_dims(self, attn):
        """Head dimensions that can contribute, over all heads of a layer (zero padding skipped): q/k
        dimensions where both the query and the key weights (or biases) are nonzero, v dimensions
        with nonzero value weights (or bias) and output rows. ``(qk or None, vo or None)`` (None:
        all); cached while the parameters are unchanged."""
        params = (attn.W_Q, attn.b_Q, attn.W_K, attn.b_K, attn.W_V, attn.b_V, attn.W_O)
        key = tuple((id(p), p._version) for p in params)
        hit = self._head_cache.get(id(attn))
        if hit is not None and hit[0] == key:
            return hit[1]
        with torch.no_grad():
            def used(W, b):  # [H, D, d], [H, d] -> [d]
                return (W.abs().sum((0, 1)) > 0) | (b.abs().sum(0) > 0)
            qk = used(attn.W_Q, attn.b_Q) & used(attn.W_K, attn.b_K)
            vo = used(attn.W_V, attn.b_V) & (attn.W_O.abs().sum((0, 2)) > 0)
        out = tuple(None if bool(m.all()) else m.nonzero().flatten() for m in (qk, vo))
        self._head_cache[id(attn)] = (key, out)
        return out

    def _mlp(self, mlp, x: torch.Tensor) -> torch.Tensor:
        """The MLP on ``x [..., D]`` computed on its live part only (see :meth:`_compact`)."""
        c = self._compact(mlp)
        if c is None:
            return F.linear(mlp.act_fn(F.linear(x, mlp.W_in.T, mlp.b_in)), mlp.W_out.T, mlp.b_out)
        rows, W_in, b_in, W_out, cols = c
        if W_in.shape[1] == 0:
            return mlp.b_out.expand(*x.shape[:-1], x.shape[-1])
        o = mlp.act_fn(F.linear(x if rows is None else x[..., rows], W_in.T, b_in)) @ W_out
        if cols is None:
            return o + mlp.b_out
        return torch.zeros_like(x).index_add_(-1, cols, o) + mlp.b_out if not torch.is_grad_enabled() else \
            x.new_zeros(x.shape).index_add(-1, cols, o) + mlp.b_out

    def _compact(self, mlp):
        """Exact compaction of an MLP with zero padding (Tracr pads every layer to the largest d_mlp):
        hidden units whose output row is zero, or whose input column and bias are zero (act(0) = 0),
        contribute nothing; residual dimensions no live unit reads, or none writes, are skipped.
        ``(rows or None, W_in, b_in, W_out, cols or None)``, or None when nothing is saved.
        Cached while the parameters are unchanged; recomputed if they require grad under autograd."""
        params = (mlp.W_in, mlp.b_in, mlp.W_out)
        key = tuple((id(p), p._version) for p in params)
        hit = self._mlp_cache.get(id(mlp))
        tracked = torch.is_grad_enabled() and any(p.requires_grad for p in params)
        if hit is not None and hit[0] == key and not tracked:
            return hit[1]
        with torch.no_grad():
            zero_act = float(mlp.act_fn(torch.zeros(1, dtype=mlp.W_in.dtype, device=mlp.W_in.device))) == 0.0
            live = mlp.W_out.abs().sum(1) > 0
            if zero_act:
                live &= (mlp.W_in.abs().sum(0) > 0) | (mlp.b_in != 0)
            h = live.nonzero().flatten()
            rows = (mlp.W_in[:, h].abs().sum(1) > 0).nonzero().flatten()
            cols = (mlp.W_out[h].abs().sum(0) > 0).nonzero().flatten()
        D, d_mlp = mlp.W_in.shape
        if len(h) > 0.8 * d_mlp and len(rows) > 0.8 * D and len(cols) > 0.8 * D:
            out = None
        else:
            keep_rows = len(rows) <= 0.8 * D
            keep_cols = len(cols) <= 0.8 * D
            W_in = mlp.W_in[rows][:, h] if keep_rows else mlp.W_in[:, h]
            W_out = mlp.W_out[h][:, cols] if keep_cols else mlp.W_out[h]
            out = (rows if keep_rows else None, W_in, mlp.b_in[h], W_out, cols if keep_cols else None)
        if not tracked:
            self._mlp_cache[id(mlp)] = (key, None if out is None else tuple(
                t.detach() if isinstance(t, torch.Tensor) and t.is_floating_point() else t for t in out))
        return out

    def _scale(self, x: torch.Tensor, ln) -> torch.Tensor:
        """The normalisation's divisor ``[..., 1]`` (standard deviation or root mean square)."""
        msq = torch.linalg.vector_norm(x, dim=-1, keepdim=True).square() / x.shape[-1]
        var = msq - x.mean(-1, keepdim=True).square() if self.norm in ("LN", "LNPre") else msq
        return (var + ln.eps).sqrt()

    def _probe_term(self, p: torch.Tensor, rc: torch.Tensor, scale: torch.Tensor | None, Wf: torch.Tensor,
                    y0: torch.Tensor) -> torch.Tensor:
        """The first-order change of the heads' projections when probe ``p [K, H, n, P, D]`` (zero) is
        added to their input ``rc`` (the residual, centred for LN): ``J p`` with ``y(x) = x Wf / s(x)``,
        ``J p = p Wf / s - y0 <x - mean(x), p> / (D s^2)`` (RMS: ``<x, p>``; no norm: ``p Wf``). Its value
        is zero (so the forward is the unsplit one, unchanged) and its gradient in ``p`` is exactly the
        gradient at a split head input: the receiver gradient without a per-head copy of the residual."""
        K, H, n, P, D = p.shape
        lin = torch.matmul(p.reshape(K, H, n * P, D), Wf).view(K, H, n, P, -1)
        if scale is None:
            return lin
        s = scale.unsqueeze(1)  # [k, 1, n, P, 1]
        dot = (p * rc.unsqueeze(1)).sum(-1, keepdim=True)  # [K, H, n, P, 1]
        return lin / s - y0 * (dot / (D * s.square()))

    def _written(self, *tensors: torch.Tensor) -> torch.Tensor | None:
        """The residual columns (last dimension) where any of ``tensors`` is nonzero, or None when that is
        most of them (then dense adds are as cheap). Cached per tuple of tensors while they are unchanged
        (same objects, same version counters; the cache holds them, so an identity is never reused)."""
        key = tuple(id(t) for t in tensors)
        hit = self._cols_cache.get(key)
        versions = tuple(t._version for t in tensors)
        if hit is not None and all(a is b for a, b in zip(hit[0], tensors)) and hit[1] == versions:
            return hit[2]
        with torch.no_grad():
            D = tensors[0].shape[-1]
            used = torch.zeros(D, dtype=torch.bool, device=tensors[0].device)
            for t in tensors:
                if t.numel():
                    used |= t.detach().reshape(-1, D).abs().amax(0) > 0
            cols = None if int(used.sum()) > 0.8 * D else used.nonzero().flatten()
        self._cols_cache[key] = (tensors, versions, cols)
        return cols

    def _mlp_cols(self, mlp, x: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """The MLP's output on residual columns ``cols`` only: ``[..., len(cols)]``, computed on its live
        units (as :meth:`_compact`); the sliced output weights are cached like the compaction."""
        c = self._compact(mlp)
        if c is not None and c[1].shape[1] == 0:
            return mlp.b_out[cols].expand(*x.shape[:-1], len(cols))
        params = (mlp.W_in, mlp.b_in, mlp.W_out, mlp.b_out)
        key = (tuple((id(p), p._version) for p in params), cols)
        tracked = torch.is_grad_enabled() and any(p.requires_grad for p in params)
        hit = self._mlp_cache.get((id(mlp), "cols"))
        if hit is not None and hit[0][0] == key[0] and hit[0][1] is cols and not tracked:
            W_out, b_out = hit[1]
        else:
            with torch.no_grad():
                live = mlp.W_out.abs().sum(1) > 0
                if float(mlp.act_fn(torch.zeros(1, dtype=mlp.W_in.dtype, device=mlp.W_in.device))) == 0.0:
                    live &= (mlp.W_in.abs().sum(0) > 0) | (mlp.b_in != 0)
                live = live.nonzero().flatten() if c is not None else None
            W_out = (mlp.W_out if live is None else mlp.W_out[live])[:, cols]
            b_out = mlp.b_out[cols]
            if not tracked:
                self._mlp_cache[(id(mlp), "cols")] = (key, (W_out.detach(), b_out.detach()))
        if c is None:
            hid = mlp.act_fn(F.linear(x, mlp.W_in.T, mlp.b_in))
        else:
            rows, W_in, b_in, _, _ = c
            hid = mlp.act_fn(F.linear(x if rows is None else x[..., rows], W_in.T, b_in))
        return hid @ W_out + b_out

    @staticmethod
    def _add_cols(resid: torch.Tensor, cols: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
        """``resid`` plus ``part [K, n, P, len(cols)]`` on columns ``cols`` (out of place; a shared
        ``[1, ...]`` residual becomes K rows)."""
        if len(cols) == 0:
            return resid if resid.shape[0] == part.shape[0] else resid.expand(part.shape[0], *resid.shape[1:])
        if resid.shape[0] != part.shape[0]:
            resid = resid.expand(part.shape[0], *resid.shape[1:])
        return resid.index_add(-1, cols, part)

    def embed(self, tokens: torch.Tensor, pos_override: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The input sender(s) ``[n, pos, d]``: token + position, or token and position apart."""
        m = self.model
        emb = m.W_E[tokens]
        pos = m.W_pos[: tokens.shape[1]].expand_as(emb) if pos_override is None else pos_override.to(emb.dtype)
        return [emb, pos] if self.n_input == 2 else [emb + pos]

    # ---- the run ----------------------------------------------------------------------------------------
    def run(self, K: int, inputs: list[torch.Tensor], *, W: torch.Tensor | None = None,
            ablated: list[torch.Tensor] | None = None, start: int = 0, resid: torch.Tensor | None = None,
            below: list[torch.Tensor] | None = None, probes: dict | None = None,
            sender_override: dict[int, Callable] | None = None, gates: torch.Tensor | None = None,
            collect: list | None = None, stop_after_senders: bool = False,
            keep: list[bool] | None = None, resids: list | None = None) -> torch.Tensor | None:
        """Logits ``[K, n, pos, vocab]``.

        ``inputs``: the input sender outputs, ``[K or 1, n, pos, d]`` each (ignored when ``start > 0``).
        ``W [K, S, R]``: edge weights (1 - mask) on (sender, receiver) slots; None: no edge patching.
        ``ablated``: per sender group ``[1, size, n, pos, d]`` (this module's layout).
        ``start``, ``resid``, ``below``: begin at block ``start`` from ``resid [1, n, pos, d]`` (the clean
        residual there) with the differences ``below`` (``[1, size, n, pos, d]``) of the groups before it.
        ``probes``: filled with zero tensors ``[K, n, pos, size, d]`` added at each receiver group.
        ``sender_override``: {group index: fn(x) -> x} on the group's output in the hook's shape.
        ``gates [K, S]``: node gating (``ablated + g (own - ablated)`` per sender) instead of edges;
        ``keep [S]``: senders left ungated (their outputs stay shared by all K rows).
        ``collect``: a list to fill with each sender group's output ``[K or 1, size, n, pos, d]``.
        """
        m, graph = self.model, self.graph
        n, P, D = inputs[0].shape[-3:] if start == 0 else resid.shape[-3:]
        H = self.H
        grad = torch.is_grad_enabled()
        needs_w_grad = W is not None and W.requires_grad
        gi = [len(below or []), graph.sender_index[f"a{start}.h0"] if start else 0]  # next group, next sender
        if W is not None and gates is None and not needs_w_grad and not bool(W.any()):
            W = None  # nothing patched (e.g. the full mask of a gradient pass): no differences to keep
        diffs = _Diffs(K, len(graph.senders), pooled=not grad)
        # pure node gating (SP): gated outputs are formed and added on the residual columns they write
        # (Tracr senders write a few of d_model), not over the whole residual
        sparse = gates is not None and W is None and probes is None and not sender_override and collect is None
        for d in below or []:
            diffs.add(d)

        def finish_sender(out: torch.Tensor, size: int, per_head: bool = False) -> torch.Tensor:
            """out [K|1, size, n, P, D] -> after override / gating; records the difference. ``per_head``:
            the group is a layer's heads, whose hook shape keeps the head axis even for one head."""
            g, s0 = gi
            if sender_override and g in sender_override:
                k = out.shape[0]
                shaped = out.permute(0, 2, 3, 1, 4).reshape(k * n, P, size, D)
                shaped = sender_override[g](shaped if per_head else shaped[:, :, 0])
                shaped = shaped if per_head else shaped.unsqueeze(2)
                out = shaped.reshape(-1, n, P, size, D).permute(0, 3, 1, 2, 4)
            if gates is not None and size == 1 and not (keep is not None and keep[s0]):  # heads: at z (below)
                gz = gates[:, s0:s0 + 1].view(K, 1, 1, 1, 1)
                out = ablated[g] + gz * (out - ablated[g])
            if collect is not None:
                collect.append(out)
            if W is not None:
                diffs.add(ablated[g] - out)
            gi[0] += 1
            gi[1] += size
            return out

        def delta_for(r0: int, size: int, n_send: int, hooks: list[tuple[str, int]]) -> torch.Tensor | None:
            """The summed sender differences at receivers r0..r0+size: [K, size, n, P, D] (or None).
            ``hooks``: the receiver hooks covering these receivers, (name, size) in order (for probes)."""
            delta = None
            if W is not None:
                w = W[:, :n_send, r0:r0 + size]
                if needs_w_grad or bool(w.any()):
                    delta = diffs.contract(w).view(K, size, n, P, D)
            if probes is not None:
                ps = make_probes(hooks)
                pp = torch.cat(ps, 1) if len(ps) > 1 else ps[0]
                delta = pp if delta is None else delta + pp
            return delta

        def make_probes(hooks: list[tuple[str, int]]) -> list[torch.Tensor]:
            """Zero probes at these receiver hooks, registered in ``probes`` (``[K, n, P, size, D]``, the
            hook's shape); returned in this module's layout ``[K, size, n, P, D]``, one per hook."""
            ps = []
            for name, sz in hooks:
                p = torch.zeros(K, n, P, sz, D, device=resid.device, dtype=resid.dtype, requires_grad=True)
                probes[name] = p
                ps.append(p.permute(0, 3, 1, 2, 4))
            return ps

        if start == 0:
            outs = [finish_sender(x.unsqueeze(1), 1) for x in inputs]
            resid = sum(o[:, 0] for o in outs)  # [K|1, n, P, D]
        for layer in range(start, self.L):
            if resids is not None:
                resids.append(resid)
            block = m.blocks[layer]
            attn = block.attn
            # ---- attention: q/k/v inputs
            qkv_hooks = [(naming.act_name(f"{x}_input", layer), H) for x in naming.QKV]
            if W is None and probes is not None:  # probes alone: linearised around the unsplit projection (below)
                delta, pq = None, make_probes(qkv_hooks)
            else:
                delta, pq = delta_for(self.qkv_start[layer], 3 * H, self.s_attn[layer], qkv_hooks), None
            weights = ((attn.W_Q, attn.b_Q), (attn.W_K, attn.b_K), (attn.W_V, attn.b_V))
            qk_idx, vo_idx = self._head_dims(attn)
            W_O = attn.W_O if vo_idx is None else attn.W_O[:, vo_idx]
            dead = W_O.shape[1] == 0  # no head writes anything: outputs are zero, skip the attention
            qkv = []
            # centred residual: the folded weights ignore the mean, and the variance is computed as
            # E[x^2] - E[x]^2 of (centred residual + delta), whose mean is only the delta's
            rc = resid - resid.mean(-1, keepdim=True) if self.norm in ("LN", "LNPre") and not dead else resid
            folded = []
            for j, (Wp, bp) in enumerate(weights if not dead else ()):
                Wf, bf = self._folded(Wp, bp, block.ln1)
                idx = qk_idx if j < 2 else vo_idx
                if idx is not None:  # dimensions that cannot contribute (zero padding)
                    Wf, bf = Wf[..., idx], bf[:, idx]
                folded.append((Wf, bf))
            if delta is None and folded:  # every head reads the residual: one unsplit projection for q, k, v
                k = rc.shape[0]
                widths = [Wf.shape[-1] for Wf, _ in folded]
                y = rc.reshape(k * n * P, D) @ torch.cat([Wf.permute(1, 0, 2).reshape(D, -1) for Wf, _ in folded], 1)
                scale = self._scale(rc, block.ln1) if self.norm is not None else None
                if scale is not None:
                    y = y / scale.reshape(k * n * P, 1)
                for j, (part, (Wf, bf), w) in enumerate(zip(y.split([H * w for w in widths], 1), folded, widths)):
                    y0 = part.view(k, n, P, H, w).permute(0, 3, 1, 2, 4)  # [k, H, n, P, dh], before the bias
                    if pq is not None:
                        y0 = y0 + self._probe_term(pq[j], rc, scale, Wf, y0)
                    qkv.append(y0 + bf.view(1, H, 1, 1, -1))
            for j, (Wf, bf) in enumerate(folded if delta is not None else ()):
                d = delta[:, j * H:(j + 1) * H]  # each head its own input: centred residual + its delta
                x = d.add_(rc.unsqueeze(1)) if not grad else d + rc.unsqueeze(1)  # [K, H, n, P, D]
                k = x.shape[0]
                y = torch.matmul(x.view(k, H, n * P, D), Wf).view(k, H, n, P, -1)
                if self.norm is not None:
                    y = y / self._scale(x, block.ln1)
                qkv.append(y + bf.view(1, H, 1, 1, -1))
            if dead:
                z = resid.new_zeros(1, H, n, P, 0)
            else:
                z = self._attend(qkv, attn, P)  # [K, H, n, P, dv]
            k = z.shape[0]
            if gates is not None:
                g = gates[:, gi[1]:gi[1] + H]  # [K, H]
                abl = ablated[gi[0]][0]  # [H, n, P, D]
                cols = self._written(attn.W_O, attn.b_O, ablated[gi[0]]) if sparse else None  # stable keys
                if cols is not None:  # only the columns the heads (or their ablated values) write
                    part = attn.b_O[cols] + torch.matmul(1 - g, abl[..., cols].reshape(H, -1)).view(K, n, P, -1)
                    if not dead:
                        part = part + torch.einsum("khnpe,hed->knpd", z * g.view(K, H, 1, 1, 1), W_O[..., cols])
                    resid = self._add_cols(resid, cols, part)
                else:
                    attn_out = attn.b_O + torch.matmul(1 - g, abl.reshape(H, -1)).view(K, n, P, D)
                    if not dead:
                        attn_out = attn_out + torch.einsum("khnpe,hed->knpd", z * g.view(K, H, 1, 1, 1), W_O)
                    resid = resid + attn_out
                gi[0] += 1
                gi[1] += H
                if collect is not None:
                    collect.append(None)
            else:
                if dead:
                    result = resid.new_zeros(1, H, n, P, D)
                else:
                    result = torch.matmul(z.reshape(k, H, n * P, -1), W_O).view(k, H, n, P, D)
                result = finish_sender(result, H, per_head=True)
                resid = resid + (result.sum(1) + attn.b_O)
            # ---- MLP
            if self.has_mlp:
                delta = delta_for(self.mlp_start[layer], 1, self.s_mlp[layer], [(naming.act_name("mlp_in", layer), 1)])
                x = resid if delta is None else resid + delta[:, 0]
                x = self._normed(x, block.ln2)
                g, s0 = gi
                cols = None
                if sparse and not (keep is not None and keep[s0]):
                    cols = self._written(block.mlp.W_out, block.mlp.b_out, ablated[g])
                if cols is not None:  # gated on the columns the MLP (or its ablated value) writes
                    abl = ablated[g][:, 0, ..., cols]  # [1, n, P, c]
                    out = self._mlp_cols(block.mlp, x, cols)
                    out = abl + gates[:, s0:s0 + 1].view(K, 1, 1, 1) * (out - abl)
                    gi[0] += 1
                    gi[1] += 1
                    resid = self._add_cols(resid, cols, out)
                else:
                    out = self._mlp(block.mlp, x)
                    out = finish_sender(out.unsqueeze(1), 1)[:, 0]
                    resid = resid + out
        if stop_after_senders:
            return None
        delta = delta_for(self.logits_start, 1, len(graph.senders), [(naming.act_name("resid_post", self.L - 1), 1)])
        x = resid if delta is None else resid + delta[:, 0]
        if self.norm is not None:
            x = self._normed(x, m.ln_final)
        logits = F.linear(x, m.W_U.T, m.b_U)
        return logits.expand(K, *logits.shape[1:])


class _Diffs:
    """The senders' differences ``ablated - current`` in sender order, and their contraction with edge
    weights. Differences shared by all K mask rows (leading dim 1: everything before the first
    patched receiver) are a prefix, contracted with one matrix product for all rows; the rest
    ``[K, ...]`` with a batched one. Without autograd both live in preallocated buffers (no
    concatenation); with it, the contraction is summed group by group."""

    def __init__(self, K: int, n_senders: int, pooled: bool):
        self.K, self.S, self.pooled = K, n_senders, pooled
        self.n = 0          # senders recorded
        self.split = None   # first sender whose difference depends on the mask row
        self.parts: list[tuple[int, torch.Tensor]] = []  # autograd mode: (start, [k, size, m])
        self.shared = self.rows = None  # pooled mode: [S, m] and [K, S - split, m]

    def add(self, d: torch.Tensor) -> None:
        size, flat = d.shape[1], d.reshape(d.shape[0], d.shape[1], -1)
        if d.shape[0] != 1 and self.split is None:
            self.split = self.n
        if self.split is not None and d.shape[0] == 1:
            flat = flat.expand(self.K, *flat.shape[1:])
        if not self.pooled:
            self.parts.append((self.n, flat))
        elif self.split is None:
            if self.shared is None:
                self.shared = flat.new_empty(self.S, flat.shape[-1])
            self.shared[self.n:self.n + size] = flat[0]
        else:
            if self.rows is None:
                self.rows = flat.new_empty(self.K, self.S - self.split, flat.shape[-1])
            self.rows[:, self.n - self.split:self.n - self.split + size] = flat
        self.n += size

    def contract(self, w: torch.Tensor) -> torch.Tensor:
        """``w [K, s, R]`` (s <= senders recorded) -> ``[K, R, m]``: sum_s w[k, s, r] d_s."""
        K, s, R = w.shape
        wt = w.transpose(1, 2)
        out = None
        if not self.pooled:
            for start, flat in self.parts:
                if start >= s:
                    break
                part = flat[:, :s - start]
                ws = wt[:, :, start:start + part.shape[1]]
                term = ((ws.reshape(K * R, -1) @ part[0]).view(K, R, -1) if part.shape[0] == 1
                        else torch.bmm(ws, part))
                out = term if out is None else out + term
            return out
        cut = s if self.split is None else min(self.split, s)
        if cut > 0:
            out = (wt[:, :, :cut].reshape(K * R, cut) @ self.shared[:cut]).view(K, R, -1)
        if cut < s:
            term = torch.bmm(wt[:, :, cut:s], self.rows[:, :s - cut])
            out = term if out is None else out.add_(term)
        return out
