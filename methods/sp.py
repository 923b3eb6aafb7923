"""Subnetwork Probing (SP): learn hard-concrete (Louizos et al. L0) gates on nodes or edges.

Gates. Each gate j has a logit ``log_alpha_j`` (the only trained parameters; the model is frozen).
A sample draws u ~ U(eps, 1 - eps) and gives
``z = clamp(sigmoid((log u - log(1 - u) + log_alpha) / beta) * (zeta - gamma) + gamma, 0, 1)``
with beta = 2/3, gamma = -0.1, zeta = 1.1; logits start at ``log(p / (1 - p))``,
``p = (mask_p - gamma) / (zeta - gamma)`` (mask_p = 0.9: log_alpha = log 5, gates mostly on).

* node level (default): one gate per head and per MLP; ``input`` (and ``pos``) are never gated. An
  edge's mask is its sender's gate (a node gate multiplies all its outgoing edges' masks), computed
  as the sender's output scaled between its ablated and own value (``PatchEngine.run_nodes``).
* edge level (``edgewise=True``): one gate per edge, used as that edge's mask.

Mask 1 keeps an edge, 0 ablates it (the problem's ablation, through the patching engine).
Loss per step = ``problem.loss_fn()`` (KL / MSE to the model's own clean output by default)
averaged over ``n_samples`` gate samples, plus ``lambda * mean_j sigmoid(log_alpha_j - beta *
log(-gamma / zeta))`` (the expected L0, mean over gates). Adam on the logits, full data each step;
the noise comes from a ``torch.Generator`` seeded with ``problem.seed`` (re-seeded per lambda),
so the result is deterministic given the seed (on one device).

Read-out (deterministic, never a random sample): the *deterministic gate* is
``sigmoid(log_alpha) * (zeta - gamma) + gamma`` (the noise-free sample at u = 1/2, before
clamping; in (-0.1, 1.1)). A gate is on iff it is > 0.5, i.e. iff ``log_alpha > 0``.

* edge level: the circuit is the edges whose gate is on; ``edge_scores`` = deterministic gate.
* node level: the circuit is ``graph.node_edge_mask(nodes on + input/pos)`` (edges between kept
  nodes); ``node_scores`` = deterministic gate (zeta = 1.1 for the never-gated ``input``, ``pos``,
  ``logits``); ``edge_scores[u->v]`` = min(score(u), score(v)), so ``> 0.5`` gives the circuit.

With ``lambdas`` one independent run per lambda (ascending); ``sweep = [(lambda, circuit), ...]``
and the scores are the mean over the runs of the per-run scores. Without it, one run at
``lambda_reg``. The runs of a sweep are trained together, ``lambda_batch`` lambdas per patched pass
(default: all): their gates are separate parameters, the loss is the sum of the per-lambda losses
and Adam is elementwise, so each run follows exactly the trajectory it would follow alone (same
noise: every run draws the same seeded samples), at one batched forward/backward per step instead
of one per lambda (tested against one-at-a-time training).
"""

from __future__ import annotations

import math

import torch

from core import naming
from core.circuit import Circuit
from core.params import frozen_parameters
from core.protocols import Method, MethodOutput, Problem, sweep_label
from methods import _checks

BETA, GAMMA, ZETA = 2 / 3, -0.1, 1.1
EPS = 1e-6


def init_log_alpha(mask_p: float) -> float:
    p = (mask_p - GAMMA) / (ZETA - GAMMA)
    return math.log(p / (1 - p))


def sample_gates(log_alpha: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / BETA)
    return (s * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)


def deterministic_gates(log_alpha: torch.Tensor) -> torch.Tensor:
    """The noise-free gate before clamping: > 0.5 iff log_alpha > 0."""
    return torch.sigmoid(log_alpha) * (ZETA - GAMMA) + GAMMA


def expected_l0(log_alpha: torch.Tensor) -> torch.Tensor:
    """P(gate != 0) per gate."""
    return torch.sigmoid(log_alpha - BETA * math.log(-GAMMA / ZETA))


class SubnetworkProbing(Method):
    """Hard-concrete L0 mask learning, node level (default) or edge level (``edgewise=True``)."""

    name = "sp"
    speed_only = ("lambda_batch",)  # lambdas trained per pass

    @classmethod
    def variant_parts(cls, differing, params):
        """``sp (node)``, ``sp (edge, 11 lambdas)``, ``sp (lambda=0.1, 100 epochs)``."""
        parts = []
        if "edgewise" in differing:
            parts.append("edge" if params.get("edgewise") else "node")
        if differing & {"lambdas", "lambda_reg"}:
            parts.append(sweep_label(params, "lambdas", "lambda_reg", "lambdas", "lambda"))
        if "epochs" in differing and "epochs" in params:
            parts.append(f"{params['epochs']} epochs")
        return [x for x in parts if x], {"edgewise", "lambdas", "lambda_reg", "epochs"}

    def __init__(self, lambda_reg: float = 1.0, lambdas: list[float] | None = None, edgewise: bool = False,
                 epochs: int = 200, lr: float = 0.1, n_samples: int = 1, mask_p: float = 0.9,
                 lambda_batch: int = 0):
        epochs, n_samples = _checks.integer("epochs", epochs), _checks.integer("n_samples", n_samples)
        lambda_batch = _checks.integer("lambda_batch (0 = every lambda in one pass)", lambda_batch, low=0)
        mask_p = _checks.number("mask_p", mask_p, low=0, low_open=True)
        if not mask_p < 1:
            raise ValueError(f"mask_p must be in (0, 1), got {mask_p}")
        self.lambda_reg = _checks.number("lambda_reg", lambda_reg, low=0)
        self.lambdas = None if lambdas is None else _checks.grid("lambdas", lambdas, low=0)
        self.edgewise = edgewise
        self.epochs, self.lr, self.n_samples, self.mask_p = epochs, _checks.number("lr", lr, low=0, low_open=True), \
            n_samples, mask_p
        self.lambda_batch = lambda_batch

    sweep_single = {"lambdas": "lambda_reg"}

    @classmethod
    def default_sweep(cls) -> dict:
        """``lambdas``: 10^linspace(-3, 0, 11), for ``run sp`` and ``benchmark`` alike."""
        return {"lambdas": [round(10 ** (-3 + 3 * i / 10), 6) for i in range(11)]}

    def discover(self, problem: Problem) -> MethodOutput:
        graph = problem.graph
        gated = [s for s in graph.senders if s not in (naming.INPUT, naming.POS)]
        lams = self.lambdas if self.lambdas is not None else [float(self.lambda_reg)]
        step = self.lambda_batch or len(lams)
        trained = torch.cat([self._train(problem, gated, lams[i:i + step]) for i in range(0, len(lams), step)])
        sweep, runs = [], []
        for lam, log_alpha in zip(lams, trained):
            score = deterministic_gates(log_alpha)
            runs.append(score)
            on = log_alpha > 0
            if self.edgewise:
                circuit = graph.circuit_from_mask(on.float())
            else:
                nodes = {n for n, k in zip(gated, on.tolist()) if k} | (set(graph.senders) - set(gated))
                circuit = Circuit.from_edges(graph.circuit_from_mask(graph.node_edge_mask(nodes)).edges,
                                             extra_nodes=nodes | {naming.LOGITS})
            sweep.append((lam, circuit))
        score = torch.stack(runs).mean(0).tolist()
        info = {"lambdas": lams, "readout": "gate on iff log_alpha > 0 (deterministic gate > 0.5)"}
        if self.edgewise:
            info["score"] = "deterministic gate sigmoid(log_alpha)*(zeta-gamma)+gamma, mean over lambdas"
            return MethodOutput(edge_scores=dict(zip(graph.edges, score)), sweep=sweep, info=info)
        node_scores = {n: ZETA for n in graph.nodes}
        node_scores.update(zip(gated, score))
        senders, receivers = graph.edge_sender_receiver()
        edge_scores = {e: min(node_scores[s], node_scores[r]) for e, s, r in zip(graph.edges, senders, receivers)}
        info["score"] = ("node: deterministic gate (mean over lambdas), 1.1 for input/pos/logits; "
                         "edge: min of its endpoints' node scores")
        return MethodOutput(edge_scores=edge_scores, node_scores=node_scores, sweep=sweep, info=info)

    # ---- training -----------------------------------------------------------------------------------
    def _sample(self, log_alpha: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Gate samples from logits and uniform noise (subclasses change the relaxation)."""
        return sample_gates(log_alpha, u)

    def _penalty(self, log_alpha: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        """Per-run sparsity term ``[L]`` added to the task loss: lambda * mean expected L0."""
        return lam * expected_l0(log_alpha).mean(1)

    def _train(self, problem: Problem, gated: list[str], lams: list[float]) -> torch.Tensor:
        """Gate logits ``[len(lams), n_gates]``, one independent run per lambda, trained in one batch."""
        graph, engine, loss_fn = problem.graph, problem.engine(), problem.loss_fn()
        device = engine.device
        if self.edgewise:
            n_gates = graph.n_edges

            def patched(z):  # [K, E] edge gates
                return engine.run(z)
        else:
            # column index into [1 (never gated), gates...] for each sender; a node gate scales the
            # sender's output (engine.run_nodes: the same as masking all its outgoing edges alike)
            col = {n: i + 1 for i, n in enumerate(gated)}
            idx = torch.tensor([col.get(s, 0) for s in graph.senders], device=device)
            n_gates = len(gated)

            keep = idx == 0  # input / pos: never gated

            def patched(z):  # [K, n_gated] node gates
                return engine.run_nodes(torch.cat([torch.ones_like(z[..., :1]), z], -1)[..., idx], keep=keep)
        gen = torch.Generator().manual_seed(problem.seed)
        L = len(lams)
        lam = torch.tensor(lams, device=device)
        log_alpha = torch.full((L, n_gates), init_log_alpha(self.mask_p), device=device, requires_grad=True)
        opt = torch.optim.Adam([log_alpha], lr=self.lr)
        with frozen_parameters(problem.model), engine.eval_mode():  # gradients flow to the gates only
            for _ in range(self.epochs):
                u = torch.rand(self.n_samples, n_gates, generator=gen, dtype=torch.float64)
                u = u.clamp(EPS, 1 - EPS).to(device, log_alpha.dtype)
                gates = self._sample(log_alpha[:, None, :], u[None])                # [L, samples, gates]
                task = loss_fn(patched(gates.flatten(0, 1))).view(L, self.n_samples).mean(1)
                loss = (task + self._penalty(log_alpha, lam)).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
        return log_alpha.detach().cpu()
