"""AtP* (Kramar et al. 2024, "AtP*: An efficient and scalable method for localizing LLM behaviour
to components"), at the graph's edge level: attribution patching with the QK fix and GradDrop.

Plain AtP (= EAP here) scores an edge u->v by (a_u^ablated - a_u^clean) . dL/dx_v. It fails where
the loss is not close to linear in x_v; the paper names two failures, and AtP* fixes both:

* **Attention saturation (QK fix).** For an edge into a head's query or key input the change goes
  through the attention softmax; when the softmax is sharp (compiled Tracr models: near-hard attention)
  its gradient is ~0 and AtP scores ~0 although patching the edge flips the pattern. AtP* recomputes
  the pattern *exactly* and linearises only after it:

      score(u -> a_l.h<q>) = sum_{b, q, k} (A'_{bqk} - A_{bqk}) . dL/dA_{bqk}

  where A is the clean pattern of head h and A' = softmax(q' k^T / scale + the model's mask, causal or none) with
  q' = ln1(x_q + a_u^ablated - a_u^clean) W_Q[h] + b_Q[h] and the clean keys (for <k>: the clean
  queries and k' likewise, the key input patched at every position). dL/dA = dL/dz . v^T with the
  clean values, and dL/dz = dL/d(result_h) W_O[h]^T, where dL/d(result_h) is the sum of dL/dx_w over
  every receiver w the head feeds (every receiver reads the residual stream). Value edges and every
  other edge keep the AtP product (their path is linear up to the next nonlinearity, as in the paper).
* **Cancellation (GradDrop).** For each layer l, the AtP(+QK) estimate is recomputed with the gradient
  through block l's outputs (its heads' results and its MLP output) dropped (detached); the score is
  the mean of the absolute estimates over the layers other than the receiver's own block (for a
  receiver inside block l_v dropping l_v zeroes the estimate: that term is the paper's excluded one,
  giving its 1/(L - 1) sum; edges into the logits average all L layers; in a one-layer model an
  in-block receiver has no other layer and keeps |AtP|). Without cancellation every term equals |AtP|,
  so the score is |AtP|. Caveat (inherent in the formula, visible on our 2-4 layer models): for an edge
  whose whole effect goes through one later block l*, the l* term is ~0, so with few layers GradDrop
  shrinks true edges (a 2-layer model's layer-0 receivers have that single term only); the paper
  targets deep models and uses GradDrop to keep candidates for verification, not to rank them.
  ``atp-qk`` is AtP* without GradDrop (the QK fix alone).

Choices the paper leaves open (it works at node level, and with resample ablation): edges are scored
as single patches of the sender's contribution to one receiver (the engine's semantics); the QK fix
uses the *clean* other side of the attention (keys for query edges, queries for key edges) and the
clean values, so it is exact for the pattern but first-order in what follows it; positions are not
masked (the loss masks them). ``grad_drop=False`` gives AtP with the QK fix alone, signed or absolute.
With ``grad_drop=True`` the scores are unsigned (``edge_scores`` = GradDrop magnitude); the signed
AtP+QK estimate is kept in ``signed_edges`` (``method_info.signed`` in result files). The loss is the attribution metric of
``methods.attribution`` (the same scale as EAP and exact patching).
"""

from __future__ import annotations

from typing import Any

import torch

from core.protocols import Method, MethodOutput, Problem
from core.metrics import attribution_loss, check_attribution_metric as _check_metric
from methods.attribution import SIGN_CONVENTION, _output, _summed_node_scores
from core.naming import act_name, hook_layer


class AtPStar(Method):
    """Attribution patching with the exact attention-pattern recomputation for q/k edges and GradDrop."""

    name = "atp-star"

    def __init__(self, grad_drop: bool = True, qk_fix: bool = True, absolute: bool = True,
                 attribution_metric: str = "auto", chunk_senders: int = 32):
        self.grad_drop = bool(grad_drop)
        self.qk_fix = bool(qk_fix)
        self.absolute = bool(absolute)
        self.attribution_metric = _check_metric(attribution_metric)
        if int(chunk_senders) < 1:
            raise ValueError(f"chunk_senders must be >= 1, got {chunk_senders!r}")
        self.chunk_senders = int(chunk_senders)  # memory only

    def params(self) -> dict[str, Any]:
        return {k: v for k, v in super().params().items() if k != "chunk_senders"}

    # ---- the pieces -------------------------------------------------------------------------------------
    def _check_model(self, model) -> None:
        cfg = model.cfg
        if cfg.positional_embedding_type not in ("standard", "shortformer") or getattr(cfg, "n_key_value_heads", None):
            raise ValueError("AtP*'s QK fix recomputes standard multi-head attention; rotary/alibi/GQA models "
                             "are not supported (use qk_fix=False)")

    def _clean_attention(self, engine) -> dict[str, torch.Tensor]:
        names = []
        for layer in range(engine.graph.n_layers):
            names += [act_name(h, layer) for h in ("q_input", "k_input", "q", "k", "v", "pattern")]
        saved: dict[str, torch.Tensor] = {}

        def save(x, hook):
            saved[hook.name] = x.detach()
        engine.model.run_with_hooks(engine.clean, fwd_hooks=[(n, save) for n in names])
        return saved

    def _pattern(self, attn, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """softmax(q k^T / scale (+ causal mask unless the model attends bidirectionally)):
        q, k ``[..., pos, d_head]`` -> ``[..., q_pos, k_pos]``."""
        scores = torch.einsum("...qd,...kd->...qk", q, k) / attn.attn_scale
        if attn.cfg.attention_dir == "causal":
            P = q.shape[-2]
            causal = torch.ones(P, P, dtype=torch.bool, device=q.device).tril()
            scores = scores.masked_fill(~causal, float("-inf"))
        return torch.softmax(scores.to(torch.promote_types(scores.dtype, torch.float32)), -1)

    def _delta_patterns(self, engine, acts, diffs_flat, layer: int, head: int, which: str) -> torch.Tensor:
        """``A' - A`` for each sender feeding head (layer, head)'s ``which`` input: ``[S, n, q, k]``."""
        block = engine.model.blocks[layer]
        attn = block.attn
        x = acts[act_name(f"{which}_input", layer)][:, :, head]                   # [n, pos, d]
        W = attn.W_Q[head] if which == "q" else attn.W_K[head]
        b = attn.b_Q[head] if which == "q" else attn.b_K[head]
        other = acts[act_name("k" if which == "q" else "q", layer)][:, :, head]  # [n, pos, d_head]
        clean = acts[act_name("pattern", layer)][:, head]                   # [n, q, k]
        n_send = engine.graph.sender_index[f"a{layer}.h0"]
        out = []
        for i in range(0, n_send, self.chunk_senders):
            d = diffs_flat[:, :, i:min(i + self.chunk_senders, n_send)].permute(2, 0, 1, 3)   # [s, n, pos, d]
            new = block.ln1(x.unsqueeze(0) + d) @ W + b                                  # [s, n, pos, d_head]
            if which == "q":
                pat = self._pattern(attn, new, other.unsqueeze(0).expand_as(new))
            else:
                pat = self._pattern(attn, other.unsqueeze(0).expand_as(new), new)
            out.append(pat - clean.unsqueeze(0).to(pat.dtype))
        return torch.cat(out)

    def _pattern_grads(self, engine, acts, grads: dict[str, torch.Tensor]) -> dict[tuple[int, int], torch.Tensor]:
        """dL/dA for every head ``[n, q, k]`` from the receiver gradients (see the module doc)."""
        graph = engine.graph
        out = {}
        for layer in range(graph.n_layers):
            attn = engine.model.blocks[layer].attn
            v = acts[act_name("v", layer)]                                     # [n, pos, H, d_head]
            for h in range(graph.n_heads):
                s = graph.sender_index[f"a{layer}.h{h}"]
                d_res = sum(grads[rg.hook].sum(2) for rg in engine.receivers if rg.n_senders > s)   # [n, pos, d]
                dz = d_res @ attn.W_O[h].T                                               # [n, pos, d_head]
                out[(layer, h)] = torch.einsum("nqd,nkd->nqk", dz, v[:, :, h])
        return out

    def _dense_eap(self, engine, diffs, grads) -> torch.Tensor:
        S, R = len(engine.graph.senders), len(engine.graph.receivers)
        dense = torch.zeros(S, R, device=engine.device, dtype=torch.float64)
        for rg in engine.receivers:
            g = grads[rg.hook]
            for sg, d in zip(engine.senders, diffs):
                if sg.start + sg.size > rg.n_senders:
                    break
                dense[sg.start:sg.start + sg.size, rg.start:rg.start + rg.size] = \
                    torch.einsum("npsd,nprd->sr", d, g).double()
        return dense

    def _to_edges(self, engine, dense: torch.Tensor) -> torch.Tensor:
        e, s, r = engine.slots.unbind(1)
        return torch.zeros(engine.graph.n_edges, dtype=torch.float64, device=engine.device).index_add(0, e, dense[s, r])

    # ---- the method ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def discover(self, problem: Problem) -> MethodOutput:
        engine, graph = problem.engine(), problem.graph
        L = graph.n_layers
        with engine.eval_mode():
            loss = attribution_loss(problem, self.attribution_metric)
            diffs = engine.ablated_minus_clean()
            # gradient settings: index 0 = plain, 1 + l = gradient through block l dropped
            settings: list[dict | None] = [None]
            if self.grad_drop:
                for layer in range(L):
                    drop = {gi: (lambda x: x.detach()) for gi, g in enumerate(engine.senders) if hook_layer(g.hook) == layer}
                    settings.append(drop)
            all_grads = [engine.receiver_gradients(loss.fn, sender_override=o) for o in settings]
            denses = [self._dense_eap(engine, diffs, g) for g in all_grads]
            if self.qk_fix:
                self._check_model(engine.model)
                acts = self._clean_attention(engine)
                self._check_recompute(engine, acts)
                pgrads = [self._pattern_grads(engine, acts, g) for g in all_grads]
                flat = torch.cat(diffs, dim=2)                                            # [n, pos, S, d]
                for r_idx, rc in enumerate(graph.receivers):
                    if rc.qkv not in ("q", "k"):
                        continue
                    layer = hook_layer(rc.hook)
                    dA = self._delta_patterns(engine, acts, flat, layer, rc.head, rc.qkv)   # [s, n, q, k]
                    for dense, pg in zip(denses, pgrads):
                        dense[:rc.n_senders, r_idx] = torch.einsum("snqk,nqk->s", dA.double(),
                                                                   pg[(layer, rc.head)].double())
        signed = self._to_edges(engine, denses[0]).cpu()
        info: dict[str, Any] = {
            "sign_convention": SIGN_CONVENTION, "attribution_metric": loss.name, "metric_definition": loss.description,
            "qk_fix": "q/k edges: exact attention pattern with the patched query/key input (clean other side), "
                      "times dL/dpattern" if self.qk_fix else "off (plain AtP on q/k edges)",
            "gradient_at": "the clean input"}
        if not self.grad_drop:
            out = _output(problem, signed, _summed_node_scores(problem, signed), self.absolute, info)
            out.info["absolute"] = self.absolute
            return out
        layer_of = torch.tensor([hook_layer(rc.hook) for rc in graph.receivers])
        e, _, r = graph.slots.unbind(1)
        edge_layer = torch.full((graph.n_edges,), -1, dtype=torch.long).scatter_reduce(0, e, layer_of[r], reduce="amax")
        drops = torch.stack([self._to_edges(engine, d).cpu().abs() for d in denses[1:]])   # [L, E]
        keep = torch.arange(L).unsqueeze(1) != edge_layer.unsqueeze(0)                        # [L, E]
        # a one-layer model has no other layer for in-block receivers: their score is |AtP+QK|
        gd = torch.where(keep.any(0), (drops * keep).sum(0) / keep.sum(0).clamp_min(1), signed.abs())
        info.update(grad_drop="mean over layers l != the receiver's block of |AtP+QK with the gradient through "
                              "block l detached| (the paper's 1/(L-1) sum; logits edges: all L layers)",
                    ranking="GradDrop magnitude (unsigned); info['signed'] = AtP+QK without GradDrop",
                    absolute=True)
        out = _output(problem, signed, _summed_node_scores(problem, signed), True, info)
        out.edge_scores = dict(zip(graph.edges, gd.double().tolist()))
        return out

    def _check_recompute(self, engine, acts) -> None:
        """The recomputed clean pattern must be the model's (else this model's attention is not standard)."""
        for layer in range(engine.graph.n_layers):
            attn = engine.model.blocks[layer].attn
            q, k = acts[act_name("q", layer)], acts[act_name("k", layer)]
            mine = self._pattern(attn, q.transpose(1, 2), k.transpose(1, 2))
            theirs = acts[act_name("pattern", layer)]
            if not torch.allclose(mine.to(theirs.dtype), theirs, atol=1e-4, rtol=1e-3):
                raise ValueError(f"AtP*: recomputed attention of layer {layer} differs from the model's "
                                 "(non-standard attention); use qk_fix=False")


class AtPQK(AtPStar):
    """AtP with the QK fix only (``atp-star --no-grad-drop``), registered apart for benchmark sweeps."""

    name = "atp-qk"

    def __init__(self, grad_drop: bool = False, qk_fix: bool = True, absolute: bool = True,
                 attribution_metric: str = "auto", chunk_senders: int = 32):
        super().__init__(grad_drop, qk_fix, absolute, attribution_metric, chunk_senders)
