"""Edge Pruning (Bhaskar et al. 2024) and MIB-style sigmoid edge masks ("ugs"): the mask-optimisation family.

Both learn one mask per edge of the graph with the model frozen, on SP's machinery
(``methods.sp.SubnetworkProbing`` with ``edgewise=True``): the same gates, the same seeded noise, the
same batched sweep (every sweep value is an independent run, ``lambda_batch`` of them per patched pass,
exactly as if trained alone), the same deterministic read-out (an edge is in the circuit iff its logit
log_alpha > 0) and the same scores (the deterministic gate, mean over the sweep's runs). Mask 1 keeps
an edge, 0 ablates it with the problem's ablation; the task loss is ``problem.loss_fn()``.

``edge-pruning`` (hard-concrete gates, as Bhaskar et al.): gate samples
``z = clamp(sigmoid((log u - log(1-u) + log_alpha) / beta) (zeta - gamma) + gamma, 0, 1)``, beta = 2/3,
gamma = -0.1, zeta = 1.1: the stretch-and-clamp puts finite probability on exactly 0 and exactly 1,
which is what drives the masks to {0, 1}. Two ways to ask for sparsity:

* **target** (default; the paper's): expected sparsity ``s = 1 - mean_e P(z_e != 0)`` is pushed to a
  target t by the Lagrangian term ``l1 (t_k - s) + l2 (t_k - s)^2`` whose multipliers l1, l2 start at 0
  and follow gradient *ascent* (``l1 += lr_lagrangian (t_k - s)``, ``l2 += lr_lagrangian (t_k - s)^2``
  after each step); t_k rises linearly from 0 to t over the first ``warmup`` fraction of the epochs
  (the paper's target warm-up). ``sparsity_targets``: one independent run per target, the sweep.
* **penalty** (``lambdas`` given): ``lambda * mean_e P(z_e != 0)``, edge-level SP.

Choices the paper leaves open: sparsity counts edges of our graph (q/k/v split), the Lagrangian uses
plain ascent steps (no separate optimiser), one gate sample per step (``n_samples``), full-data steps,
and the read-out is deterministic (log_alpha > 0) rather than a thresholded sample.

``ugs`` (MIB's UGS family, as its ``convert_mask_to_graph.py`` reads it): a deterministic sigmoid mask
``theta = sigmoid(log_alpha)`` per edge, used directly as the edge's mask during training (no noise),
with the penalty ``lambda * mean_e theta_e``; the score is theta. The uniform-gradient-sampling
estimator of alestolfo/optimalablation (``edge_pruning_unif_mib.py``) is not in our mirrors and is
*not* reproduced: this is the continuous sigmoid-mask relaxation with a penalty, trained by plain
gradients. Default lambdas are 10^-3 .. 10^0 on our loss scale (MIB's 1e-2 .. 1e-7 are for logit-diff
losses of large models).
"""

from __future__ import annotations

from typing import Any

import torch

from core.protocols import Method, MethodOutput, Problem
from methods.sp import SubnetworkProbing, expected_l0

DEFAULT_TARGETS = [0.5, 0.7, 0.8, 0.9, 0.95, 0.98]
DEFAULT_UGS_LAMBDAS = [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0]


class EdgePruning(SubnetworkProbing):
    """Hard-concrete edge masks with a target sparsity (Lagrangian) or an L0 penalty."""

    name = "edge-pruning"
    # not SP's variant knowledge: lambda_batch stays in the variant and the label is the generic key=value one
    speed_only = ()
    variant_parts = Method.__dict__["variant_parts"]

    @classmethod
    def default_sweep(cls) -> dict:
        """None of SP's lambda grid: the sweep is the constructor's own (its sparsity targets, or the
        ``lambdas`` a user gives for the penalty form), the same in ``run`` and ``benchmark``."""
        return {}

    def __init__(self, sparsity_targets: list[float] | None = None, lambdas: list[float] | None = None,
                 epochs: int = 200, lr: float = 0.1, lr_lagrangian: float = 0.5, warmup: float = 0.5,
                 n_samples: int = 1, mask_p: float = 0.9, lambda_batch: int = 0):
        if lambdas is None:
            targets = DEFAULT_TARGETS if sparsity_targets is None else [float(t) for t in sparsity_targets]
            if not targets or any(not 0 <= t < 1 for t in targets):
                raise ValueError(f"sparsity_targets must be in [0, 1), got {sparsity_targets!r}")
        elif sparsity_targets is not None:
            raise ValueError("give sparsity_targets (Lagrangian) or lambdas (penalty), not both")
        if not 0 <= warmup <= 1:
            raise ValueError(f"warmup must be a fraction of the epochs in [0, 1], got {warmup!r}")
        if lr_lagrangian <= 0:
            raise ValueError(f"lr_lagrangian must be > 0, got {lr_lagrangian!r}")
        self.mode = "penalty" if lambdas is not None else "target"
        self.sparsity_targets = None if lambdas is not None else sorted(targets)
        super().__init__(lambdas=lambdas if lambdas is not None else self.sparsity_targets, edgewise=True,
                         epochs=epochs, lr=lr, n_samples=n_samples, mask_p=mask_p, lambda_batch=lambda_batch)
        self.lr_lagrangian, self.warmup = float(lr_lagrangian), float(warmup)

    def params(self) -> dict[str, Any]:
        p = {"mode": self.mode, "epochs": self.epochs, "lr": self.lr, "n_samples": self.n_samples,
             "mask_p": self.mask_p, "lambda_batch": self.lambda_batch}
        if self.mode == "target":
            p.update(sparsity_targets=self.sparsity_targets, lr_lagrangian=self.lr_lagrangian, warmup=self.warmup)
        else:
            p["lambdas"] = self.lambdas
        return p

    def _train(self, problem: Problem, gated, lams):
        self._step, self._lag = 0, None
        return super()._train(problem, gated, lams)

    def _penalty(self, log_alpha: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        if self.mode == "penalty":
            return super()._penalty(log_alpha, lam)
        if self._lag is None:
            self._lag = torch.zeros(2, lam.shape[0], dtype=log_alpha.dtype, device=log_alpha.device)
        ramp = min(1.0, (self._step + 1) / max(1.0, self.warmup * self.epochs)) if self.warmup > 0 else 1.0
        gap = lam * ramp - (1 - expected_l0(log_alpha).mean(1))          # t_k - s, [L]
        lag = self._lag.clone()  # this step's multipliers (the in-place ascent below must not touch the graph)
        term = lag[0] * gap + lag[1] * gap ** 2
        with torch.no_grad():  # gradient ascent on the multipliers
            self._lag[0] += self.lr_lagrangian * gap
            self._lag[1] += self.lr_lagrangian * gap ** 2
        self._step += 1
        return term

    def discover(self, problem: Problem) -> MethodOutput:
        out = super().discover(problem)
        if self.mode == "target":
            out.info.pop("lambdas", None)
            out.info["sparsity_targets"] = self.sparsity_targets
            out.info["sweep_param"] = "target sparsity (fraction of edges removed)"
        out.info["relaxation"] = "hard-concrete (beta 2/3, gamma -0.1, zeta 1.1), stretch-and-clamp"
        out.info["objective"] = (f"task + l1 (t_k - s) + l2 (t_k - s)^2, l1/l2 by ascent (lr {self.lr_lagrangian}), "
                                 f"t_k warmed up over {self.warmup:.0%} of the epochs" if self.mode == "target"
                                 else "task + lambda * mean expected L0")
        return out


class SigmoidMasks(SubnetworkProbing):
    """MIB-UGS-style deterministic sigmoid edge masks with a mean-mask penalty (see the module doc)."""

    name = "ugs"
    # not SP's variant knowledge: lambda_batch stays in the variant and the label is the generic key=value one
    speed_only = ()
    variant_parts = Method.__dict__["variant_parts"]

    def __init__(self, lambdas: list[float] | None = None, epochs: int = 200, lr: float = 0.1, mask_p: float = 0.9,
                 lambda_batch: int = 0):
        super().__init__(lambdas=DEFAULT_UGS_LAMBDAS if lambdas is None else lambdas, edgewise=True, epochs=epochs,
                         lr=lr, n_samples=1, mask_p=mask_p, lambda_batch=lambda_batch)

    def params(self) -> dict[str, Any]:
        return {"lambdas": self.lambdas, "epochs": self.epochs, "lr": self.lr, "mask_p": self.mask_p,
                "lambda_batch": self.lambda_batch}

    def _sample(self, log_alpha: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(log_alpha) + 0 * u  # the noise is ignored (broadcast to the sample shape)

    def _penalty(self, log_alpha: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        return lam * torch.sigmoid(log_alpha).mean(1)

    def discover(self, problem: Problem) -> MethodOutput:
        out = super().discover(problem)
        graph = problem.graph
        theta = {}
        # the score is theta = sigmoid(log_alpha) (monotone in SP's deterministic gate, same ranking and read-out)
        for e, g in out.edge_scores.items():
            theta[e] = (g + 0.1) / 1.2
        out.edge_scores = {e: theta[e] for e in graph.edges}
        out.info.update(score="theta = sigmoid(log_alpha), mean over lambdas; in the circuit iff theta > 0.5",
                        relaxation="deterministic sigmoid mask, no noise", objective="task + lambda * mean theta",
                        note="not the uniform-gradient-sampling estimator of alestolfo/optimalablation")
        return out
