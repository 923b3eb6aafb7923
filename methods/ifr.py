"""Information Flow Routes (Ferrando & Voita 2024), at the graph's edge level, as MIB runs it.

One clean forward pass: no metric, no gradient, no counterfactual. For a receiver v with input
``x_v`` (its hook value: ``hook_{q,k,v}_input`` for a head, ``hook_mlp_in``, ``resid_post`` for the
logits; the sum of its senders' outputs plus constant biases) and each sender u feeding it, at every
example b and position p:

    proximity(u, v)[b, p]  = max(0, ||x_v||_1 - ||x_v - a_u||_1)               (L1 norms over d_model)
    proportion(u, v)[b, p] = proximity(u, v)[b, p] / sum_{u' feeding v} proximity(u', v)[b, p]
    score(u -> v)          = mean over (b, p) of proportion(u, v)[b, p]

(a position whose proximities are all 0 contributes 0 for every sender). This is MIB's / EAP-IG's
``get_scores_information_flow_routes`` formula: the paper's contribution of a_u to x_v is
``max(-||x_v - a_u||_1 + ||x_v||_1, 0)`` normalised over the summands of x_v. Choices the papers leave
open, and ours:

* **positions**: every position of every example (circuit-bench sequences are never padded; MIB
  masks padding only), averaged; the mean over positions then over examples equals the mean over
  both because every example has the same length.
* **q/k/v**: the three inputs of a head read the same residual stream, so their scores are equal; on
  an unsplit graph the edge's score is the mean over its three slots (still a proportion).
* **bias terms** (``b_O``, ``b_in`` ...) are part of ``x_v`` but are no sender, so the proportions of
  a receiver sum to 1 over its senders at every position with a positive proximity.
* **selection**: scores are non-negative importances, not effects; MIB evaluates IFR circuits with
  greedy selection from the logits (``apply_greedy``), recorded as ``info["selection"] = "greedy"``
  (``eval faithfulness --policy mib`` honours it).

Node scores are not produced (the node ROC derives them from the edges).
"""

from __future__ import annotations

import torch

from core.protocols import Method, MethodOutput, Problem

FORMULA = ("score(u->v) = mean_{b,p} max(0, |x_v|_1 - |x_v - a_u|_1) / sum_{u'} max(0, |x_v|_1 - |x_v - a_u'|_1); "
           "x_v = receiver input, a_u = sender output, L1 over d_model, clean run")


def receiver_inputs(engine) -> dict[str, torch.Tensor]:
    """Every receiver hook's value on the clean input, as ``[n, pos, size, d]`` (one forward pass)."""
    saved: dict[str, torch.Tensor] = {}

    def save(x, hook):
        saved[hook.name] = x.detach()
    engine.model.run_with_hooks(engine.clean, fwd_hooks=[(rg.hook, save) for rg in engine.receivers])
    return {rg.hook: (saved[rg.hook] if rg.per_head else saved[rg.hook].unsqueeze(-2)) for rg in engine.receivers}


def proportions(x: torch.Tensor, senders: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """``x [n, pos, r, d]`` receiver inputs, ``senders [n, pos, s, d]`` -> ``[n, pos, s, r]`` proportions
    (distances computed ``chunk`` senders at a time, to bound the ``[n, pos, s, r, d]`` intermediate)."""
    norm = x.abs().sum(-1)                                                          # [n, pos, r]
    prox = torch.cat([(norm.unsqueeze(-2) - (x.unsqueeze(-3) - senders[:, :, i:i + chunk].unsqueeze(-2)).abs().sum(-1))
                      .clamp_min(0) for i in range(0, senders.shape[2], chunk)], dim=2)   # [n, pos, s, r]
    total = prox.sum(-2, keepdim=True)
    return torch.where(total > 0, prox / total.clamp_min(torch.finfo(prox.dtype).tiny), torch.zeros_like(prox))


class InformationFlowRoutes(Method):
    """Edge importance = mean proportion of the receiver's input (L1 proximity) each sender provides."""

    name = "ifr"

    def __init__(self, chunk_senders: int = 16):
        if int(chunk_senders) < 1:
            raise ValueError(f"chunk_senders must be >= 1, got {chunk_senders!r}")
        self.chunk_senders = int(chunk_senders)  # memory only: senders per [n, pos, s, r, d] block

    @torch.no_grad()
    def discover(self, problem: Problem) -> MethodOutput:
        engine, graph = problem.engine(), problem.graph
        with engine.eval_mode():
            inputs = receiver_inputs(engine)
            acts = torch.cat([a.to(engine.clean_acts[0].dtype) for a in engine.clean_acts], dim=2)  # [n, pos, S, d]
            S, R = len(graph.senders), len(graph.receivers)
            dense = torch.zeros(S, R, dtype=torch.float64, device=engine.device)
            for rg in engine.receivers:
                x = inputs[rg.hook].to(acts.dtype)
                prop = proportions(x, acts[:, :, :rg.n_senders], self.chunk_senders)                    # [n, pos, s, r]
                dense[:rg.n_senders, rg.start:rg.start + rg.size] = prop.double().mean((0, 1))
        e, s, r = graph.slots.unbind(1)
        vals = dense[s.to(engine.device), r.to(engine.device)]
        total = torch.zeros(graph.n_edges, dtype=torch.float64, device=engine.device).index_add(0, e.to(engine.device), vals)
        count = torch.zeros(graph.n_edges, dtype=torch.float64, device=engine.device).index_add(
            0, e.to(engine.device), torch.ones_like(vals))
        scores = (total / count).cpu()
        info = {"formula": FORMULA, "selection": "greedy", "positions": "all positions of every example",
                "qkv": "q/k/v inputs of a head share the residual stream (equal scores); unsplit edge = mean of its slots",
                "ranking": "signed = absolute (scores are non-negative proportions)", "absolute": True}
        return MethodOutput(edge_scores=dict(zip(graph.edges, scores.tolist())), info=info)
