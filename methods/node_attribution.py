"""Node attribution patching (NAP) and node-level EAP-IG: MIB's ``--level node`` (EAP-IG's attribute_node).

For a node u (a head ``a{l}.h{h}`` or an MLP ``m{l}``) with output a_u (its sender hook:
``attn.hook_result[:, :, h]``, ``hook_mlp_out``):

    score(u) = sum_{b, pos, d} (a_u^ablated - a_u^clean) . g_u,     g_u = mean_k dL/da_u |_(alpha_k)

``nap`` takes the gradient at the clean input (one backward pass; alpha = 1). ``node-eap-ig``
averages it over the points alpha_k = k/m, k = 1..m, of the input interpolated from the corrupted to
the clean embedding (right Riemann sum, as EAP-IG's node-level code; resample ablation only), or,
with ``ig_variant="activations"``, of the node's own sender group interpolated from its ablated to its
clean output (one group at a time, m passes per group). ``L`` is the attribution metric of
``methods.attribution`` (the same scale as EAP / exact patching).

The gradient is taken at the sender *output* (a probe added to the sender hook), not at the MLP input
as EAP-IG's node-level code does for MLPs (methods.md §8.3: that multiplies an output difference by an
input gradient). Because every receiver reads the residual stream, dL/da_u = sum over the receivers v
u feeds of dL/dx_v, so NAP(u) is exactly the sum of EAP over u's outgoing edges (tested); node-level
EAP-IG-inputs likewise equals the sum of edge-level EAP-IG-inputs.

Output: ``node_scores`` (|signed| by default; signed in ``signed_nodes``), scored against the
node ground truth (node AUROC). ``edge_scores[u->v] = min(score(u), score(v))`` with the endpoints
``input``/``pos``/``logits`` above every node (as node SP does), so a top-k of edges keeps the edges
between the best nodes and ``eval faithfulness`` can evaluate node circuits.
"""

from __future__ import annotations

from typing import Any

import torch

from core import naming
from core.protocols import Method, MethodOutput, Problem
from core.metrics import attribution_loss, check_attribution_metric as _check_metric
from methods.attribution import SIGN_CONVENTION, _hook_shaped

NODE_IG_VARIANTS = ("inputs", "activations")


def sender_gradients(engine, loss_fn, sender_override: dict | None = None) -> list[torch.Tensor]:
    """dL/d(sender output) at the full mask for every sender group ``[n, pos, size, d]``.

    ``sender_override``: {group index: fn(x) -> x} applied before the probe (interpolation points)."""
    probes: dict[int, torch.Tensor] = {}
    overrides = {}
    for gi, g in enumerate(engine.senders):
        inner = (sender_override or {}).get(gi)

        def probe(x, gi=gi, inner=inner):
            x = inner(x) if inner is not None else x
            p = torch.zeros_like(x, requires_grad=True)
            probes[gi] = p
            return x + p
        overrides[gi] = probe
    with torch.enable_grad():
        logits = engine.run(engine.full_mask(), sender_override=overrides)
        loss = loss_fn(logits).sum()
        order = sorted(probes)
        grads = torch.autograd.grad(loss, [probes[i] for i in order], allow_unused=True)
    out = []
    for gi, g in zip(order, grads):
        g = torch.zeros_like(probes[gi]) if g is None else g
        out.append(g if engine.senders[gi].per_head else g.unsqueeze(-2))
    return out


class NodeAttribution(Method):
    """Node-level attribution patching (``integrated_grad_steps=1``) or node-level EAP-IG (> 1)."""

    name = "nap"

    def __init__(self, integrated_grad_steps: int = 1, ig_variant: str = "inputs", absolute: bool = True,
                 attribution_metric: str = "auto"):
        steps = int(integrated_grad_steps)
        if steps < 1 or steps != integrated_grad_steps:
            raise ValueError(f"integrated_grad_steps must be a positive integer, got {integrated_grad_steps!r}")
        variant = str(ig_variant).replace("_", "-")
        if variant not in NODE_IG_VARIANTS:
            raise ValueError(f"unknown ig_variant {ig_variant!r}; expected one of {', '.join(NODE_IG_VARIANTS)}")
        self.integrated_grad_steps = steps
        self.ig_variant = variant
        self.absolute = bool(absolute)
        self.attribution_metric = _check_metric(attribution_metric)

    def params(self) -> dict[str, Any]:
        p = super().params()
        if self.integrated_grad_steps == 1:
            p.pop("ig_variant")  # one step at the clean point: the variant does not matter
        return p

    @torch.no_grad()
    def discover(self, problem: Problem) -> MethodOutput:
        engine, graph = problem.engine(), problem.graph
        with engine.eval_mode():
            loss = attribution_loss(problem, self.attribution_metric)
            diffs = engine.ablated_minus_clean()
            m = self.integrated_grad_steps
            alphas = [k / m for k in range(1, m + 1)]
            if m == 1:
                grads = sender_gradients(engine, loss.fn)
                where = "the clean input"
            elif self.ig_variant == "inputs":
                grads = self._ig_inputs(engine, loss.fn, alphas)
                where = f"the input interpolated corrupted -> clean, alpha = k/{m}, k = 1..{m}"
            else:
                grads = self._ig_activations(engine, loss.fn, alphas)
                where = f"each sender group's output interpolated ablated -> clean, alpha = k/{m}, k = 1..{m}"
            per_sender = torch.cat([(d * g).sum((0, 1, 3)) for d, g in zip(diffs, grads)]).double().cpu()
        signed = {s: float(v) for s, v in zip(graph.senders, per_sender.tolist())
                  if s not in (naming.INPUT, naming.POS)}
        shown = {n: (abs(v) if self.absolute else v) for n, v in signed.items()}
        top = max([abs(v) for v in shown.values()] + [0.0]) + 1.0
        node_rank = {**shown, naming.INPUT: top, naming.POS: top, naming.LOGITS: top}
        senders, receivers = graph.edge_sender_receiver()
        edge_scores = {e: min(node_rank[s], node_rank[r]) for e, s, r in zip(graph.edges, senders, receivers)}
        info = {"level": "node", "sign_convention": SIGN_CONVENTION, "attribution_metric": loss.name,
                "metric_definition": loss.description, "gradient_at": where,
                "gradient_of": "the sender output (attn.hook_result head slice, hook_mlp_out)",
                "ranking": "absolute value (node_scores = |signed|)" if self.absolute else "signed",
                "edge_scores": "min of the endpoint node scores (input/pos/logits above every node)",
                "absolute": self.absolute}
        return MethodOutput(edge_scores=edge_scores, node_scores=shown, info=info, signed_nodes=signed)

    def check_ablation(self, ablation: str) -> None:
        """Raise ValueError, before any work, for an ablation this variant cannot use."""
        if self.integrated_grad_steps > 1 and self.ig_variant == "inputs" and ablation != "corrupted":
            raise ValueError("ig_variant 'inputs' interpolates the corrupted and the clean prompt, so it needs "
                             f"ablation='corrupted' (got {ablation!r}); use ig_variant='activations'")

    def _ig_inputs(self, engine, loss_fn, alphas):
        self.check_ablation(engine.ablation)
        inputs = [i for i, g in enumerate(engine.senders) if engine.graph.senders[g.start] in (naming.INPUT, naming.POS)]
        total = None
        for alpha in alphas:
            over = {}
            for gi in inputs:
                start = _hook_shaped(engine.ablated[gi], engine.senders[gi].per_head)
                over[gi] = lambda x, start=start, alpha=alpha: start + alpha * (x - start)
            g = sender_gradients(engine, loss_fn, over)
            total = g if total is None else [a + b for a, b in zip(total, g)]
        return [t / len(alphas) for t in total]

    def _ig_activations(self, engine, loss_fn, alphas):
        out = []
        for gi, g in enumerate(engine.senders):
            start = _hook_shaped(engine.ablated[gi], g.per_head)
            acc = None
            for alpha in alphas:
                over = {gi: lambda x, start=start, alpha=alpha: start + alpha * (x - start)}
                grad = sender_gradients(engine, loss_fn, over)[gi]
                acc = grad if acc is None else acc + grad
            out.append(acc / len(alphas))
        return out


class NodeEAPIG(NodeAttribution):
    """Node-level EAP-IG (MIB ``--level node`` with EAP-IG-inputs, 5 steps by default)."""

    name = "node-eap-ig"

    def __init__(self, integrated_grad_steps: int = 5, ig_variant: str = "inputs", absolute: bool = True,
                 attribution_metric: str = "auto"):
        super().__init__(integrated_grad_steps, ig_variant, absolute, attribution_metric)
