"""Direction-finding methods: the ``direction`` family of the one method registry (``methods``), scored
against a case's known direction.

A direction method is a small class (:class:`DirectionMethod`): hyper-parameters as constructor arguments,
``fit(problem)`` returns a unit vector (``torch.Tensor`` of shape ``(d_model,)``). The ``DirectionProblem``
gives the activations at the site s*, the labels, counterfactual pairs (each example's partner of the
opposite label) and a way to run the model from s* with patched activations, for methods that need the
model (DAS).

Built in (registered in ``methods``): ``das``, ``mean-diff``, ``probe``, ``pca``, ``kmeans``,
``random-direction``. Plug in your own like any method: ``methods.register("mine", MyClass)``, an entry
point of ``circuit_bench.methods``, or by name, ``run pkg.module:MyClass -i sentiment``. A plug-in that
does not subclass :class:`DirectionMethod` is a direction method when it has ``fit``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Callable, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["DirectionProblem", "DirectionMethod", "unit"]


@dataclass
class DirectionProblem:
    """What a direction method may use. ``acts[i]`` is the activation at s* of example i."""

    acts: torch.Tensor  # (n, d_model)
    labels: torch.Tensor  # (n,) long, 1 = positive
    pairs: torch.Tensor  # (n,) long: index of a counterfactual example with the opposite label
    patched_logits: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    """``patched_logits(idx, a_new)``: answer logits (len(idx), 2) [negative, positive] of examples ``idx``
    run with their activation at s* replaced by ``a_new``; differentiable in ``a_new``."""
    seed: int = 0

    @property
    def d_model(self) -> int:
        return int(self.acts.shape[1])


class DirectionMethod(abc.ABC):
    """A method of the ``direction`` family. Hyper-parameters are constructor arguments with defaults."""

    family: ClassVar[str] = "direction"

    @abc.abstractmethod
    def fit(self, problem: DirectionProblem) -> torch.Tensor:
        """A unit vector of shape (d_model,)."""


def unit(v) -> torch.Tensor:
    v = torch.as_tensor(np.asarray(v, dtype=np.float32) if not isinstance(v, torch.Tensor) else v).float().flatten()
    n = torch.linalg.vector_norm(v)
    if not torch.isfinite(n) or n < 1e-12:
        raise ValueError("a direction method returned a zero or non-finite vector")
    return v / n


def _orient(v: torch.Tensor, problem: DirectionProblem) -> torch.Tensor:
    """Sign convention: positive examples project higher (|cos| is sign-free anyway)."""
    p = problem.acts @ v
    pos, neg = p[problem.labels == 1], p[problem.labels == 0]
    return v if not (len(pos) and len(neg)) or pos.mean() >= neg.mean() else -v


class MeanDiff(DirectionMethod):
    """mean(positive activations) - mean(negative activations)."""

    def fit(self, problem: DirectionProblem) -> torch.Tensor:
        a, y = problem.acts, problem.labels
        return unit(a[y == 1].mean(0) - a[y == 0].mean(0))


class Probe(DirectionMethod):
    """Logistic-regression probe (scikit-learn); the direction is its weight vector."""

    def __init__(self, C: float = 1.0, max_iter: int = 1000, standardize: bool = False):
        self.C, self.max_iter, self.standardize = C, max_iter, standardize

    def fit(self, problem: DirectionProblem) -> torch.Tensor:
        from sklearn.linear_model import LogisticRegression

        x = problem.acts.double().numpy()
        scale = x.std(0) + 1e-8 if self.standardize else np.ones(x.shape[1])
        lr = LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=problem.seed)
        lr.fit(x / scale, problem.labels.numpy())
        return _orient(unit(lr.coef_[0] / scale), problem)


class PCADirection(DirectionMethod):
    """The first principal component of the activations (no labels used)."""

    def fit(self, problem: DirectionProblem) -> torch.Tensor:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=1, random_state=problem.seed).fit(problem.acts.double().numpy())
        return _orient(unit(pca.components_[0]), problem)


class KMeansDirection(DirectionMethod):
    """Two k-means clusters; the direction is the centroid difference (cluster matched to labels by majority)."""

    def __init__(self, n_init: int = 10):
        self.n_init = n_init

    def fit(self, problem: DirectionProblem) -> torch.Tensor:
        from sklearn.cluster import KMeans

        km = KMeans(n_clusters=2, n_init=self.n_init, random_state=problem.seed).fit(problem.acts.double().numpy())
        c = km.cluster_centers_
        return _orient(unit(c[1] - c[0]), problem)


class RandomDirection(DirectionMethod):
    """A seeded Gaussian unit vector (the chance baseline)."""

    def __init__(self, seed: int | None = None):
        self.seed = seed

    def fit(self, problem: DirectionProblem) -> torch.Tensor:
        g = torch.Generator().manual_seed(problem.seed if self.seed is None else self.seed)
        return unit(torch.randn(problem.d_model, generator=g))


class DAS(DirectionMethod):
    """Distributed alignment search with a 1-d subspace: a learned unit vector w, trained by interchange.

    For a base example and its counterfactual (opposite label), the activation at s* is patched along w,
    a <- a + ((a_cf - a).w) w, and the model is run on. Losses:

    - ``"match"`` (default): squared error between the patched run's answer logit difference and the
      counterfactual run's own, divided by the mean squared counterfactual logit difference: the patched
      model must *behave like* the counterfactual, so overshooting is penalised as much as undershooting;
    - ``"ce"``: cross-entropy toward the counterfactual's label (the usual interchange loss). It is flat
      once every label flips, so any direction with enough u* in it (e.g. one tilted towards a
      label-correlated distractor, which pushes *further*) is as good as u*;
    - ``"kl"``: KL divergence from the counterfactual run's answer distribution (near-flat for a
      confident model, like ``ce``).

    Adam, seeded initialisation and batches.
    """

    def __init__(self, steps: int = 500, lr: float = 0.05, batch_size: int = 256, loss: str = "match"):
        if loss not in ("match", "ce", "kl"):
            raise ValueError(f"das: --loss must be match, ce or kl, got {loss!r}")
        if steps <= 0 or batch_size <= 0 or lr <= 0:
            raise ValueError("das: --steps, --batch-size and --lr must be positive")
        self.steps, self.lr, self.batch_size, self.loss = steps, lr, batch_size, loss
        self.history: list[float] = []

    def fit(self, problem: DirectionProblem) -> torch.Tensor:
        g = torch.Generator().manual_seed(problem.seed)
        w = torch.nn.Parameter(torch.randn(problem.d_model, generator=g))
        opt = torch.optim.Adam([w], lr=self.lr)
        a, pairs, y = problem.acts.detach(), problem.pairs, problem.labels
        n = a.shape[0]
        with torch.no_grad():
            cf_logits = problem.patched_logits(torch.arange(n), a)  # the unpatched runs
            cf_logp = F.log_softmax(cf_logits, -1)
            cf_ld = cf_logits[:, 1] - cf_logits[:, 0]
            ld_scale = float((cf_ld ** 2).mean()) + 1e-8
        self.history = []
        for _ in range(self.steps):
            idx = torch.randint(n, (min(self.batch_size, n),), generator=g)
            u = w / torch.linalg.vector_norm(w)
            base, cf = a[idx], a[pairs[idx]]
            patched = base + ((cf - base) @ u)[:, None] * u[None, :]
            logits = problem.patched_logits(idx, patched)
            if self.loss == "match":
                loss = ((logits[:, 1] - logits[:, 0] - cf_ld[pairs[idx]]) ** 2).mean() / ld_scale
            elif self.loss == "ce":
                loss = F.cross_entropy(logits, y[pairs[idx]])
            else:
                loss = F.kl_div(F.log_softmax(logits, -1), cf_logp[pairs[idx]], log_target=True, reduction="batchmean")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            self.history.append(float(loss.detach()))
        return _orient(unit(w.detach()), problem)
