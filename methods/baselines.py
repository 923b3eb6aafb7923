"""Baselines: random scores (the AUROC ~ 0.5 floor) and an oracle that returns the ground truth."""

from __future__ import annotations

import torch

from core.circuit import Circuit
from core.protocols import Method, MethodOutput, Problem


class RandomScores(Method):
    """Uniform random score per edge, seeded by the problem's seed."""

    name = "random"

    def discover(self, problem: Problem) -> MethodOutput:
        g = torch.Generator().manual_seed(problem.seed)
        scores = torch.rand(problem.graph.n_edges, generator=g)
        return MethodOutput(edge_scores=dict(zip(problem.graph.edges, scores.tolist())),
                            info={"score": "uniform random in [0, 1)"})


class Oracle(Method):
    """Score 1 on the ground-truth edges and 0 elsewhere (to test evaluators). Needs ``truth``."""

    name = "oracle"
    needs_ground_truth = True

    def __init__(self, truth: Circuit | None = None):
        self.truth = truth

    def params(self):
        return {}

    def discover(self, problem: Problem) -> MethodOutput:
        if self.truth is None:
            raise ValueError("the oracle needs the ground truth (Oracle(truth=case.ground_truth()))")
        mask = problem.graph.mask_for(self.truth)
        return MethodOutput(edge_scores=dict(zip(problem.graph.edges, mask.tolist())), info={"score": "ground truth"})
