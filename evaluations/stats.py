"""Uncertainty for leaderboards: bootstrap confidence intervals over cases (and seeds), paired tests,
which variants are tied with the best, and how stable the ranking is.

Input everywhere: for one method variant, ``{case: [value per seed, ...]}`` (NaN values are dropped;
a case with no value left is dropped). Every procedure is fixed and seeded so reports reproduce:

- **Interval** (:func:`bootstrap_ci`): a two-stage percentile bootstrap. ``rng =
  numpy.random.default_rng(seed)``; each of ``n_boot`` replicates draws ``C`` cases with replacement
  (``rng.integers(0, C, (n_boot, C))``), then, inside each drawn case with ``k`` seeds, ``k`` seeds with
  replacement (``floor(rng.random((n_boot, C, S)) * k)``, only the first ``k`` of the ``S`` = max seeds
  columns used); the replicate's statistic is the mean over drawn cases of the mean over drawn seeds.
  The interval is the (alpha/2, 1-alpha/2) percentiles (numpy's linear interpolation); the point
  estimate is the mean over cases of the per-case seed means. With one seed per case this is the
  ordinary bootstrap over cases.
- **Paired comparison** (:func:`paired_comparison`): per-case seed means of two variants on their common
  cases; differences ``a - b``; wins/ties/losses with ``|d| <= tie_tol`` a tie; scipy's two-sided
  Wilcoxon signed-rank test with ``zero_method="wilcox"`` (zero differences dropped, as ties), p = 1
  when every difference is zero.
- **Tied with the best** (:func:`tied_with_best`): the best variant has the highest point estimate;
  another is tied with it when the paired test against it gives p >= alpha (alpha stated in the report;
  the leaderboard applies the test to Holm-adjusted p-values, below).
- **Multiple comparisons** (:func:`holm`): Holm's step-down adjustment of a family of p-values
  (``m`` tests sorted ascending, ``p_(i) * (m - i + 1)``, made monotone by a running maximum, capped
  at 1); it controls the family-wise error rate at alpha without assuming independence. The leaderboard's
  families: per model kind, the comparisons against the best; per model kind and metric, every pair.
- **Rank stability** (:func:`rank_stability`): on the cases every variant has, ``n_boot`` resamples of
  the cases (seeded as above); in each, variants are ranked by mean (1 = best, ties share the average
  rank); per variant, the rank on all cases, the fraction of resamples where its rank differs, and the
  2.5-97.5% range of its ranks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

N_BOOT = 10_000
BOOTSTRAP_SEED = 0
LEVEL = 0.95
ALPHA = 0.05
TIE_TOL = 1e-9
CI_METHOD = "two-stage percentile bootstrap (cases, then the runs of a case: data and model seeds)"
TEST_METHOD = "Wilcoxon signed-rank, two-sided, zero differences dropped (scipy.stats.wilcoxon)"
CORRECTION = "Holm step-down (family-wise error rate)"

Values = Mapping[str, Sequence[float]]


def _clean(values: Values) -> dict[str, list[float]]:
    out = {}
    for case, vs in values.items():
        vs = [float(v) for v in (vs if isinstance(vs, (list, tuple, np.ndarray)) else [vs])
              if v is not None and not math.isnan(float(v))]
        if vs:
            out[str(case)] = vs
    return out


def case_means(values: Values) -> dict[str, float]:
    """Per case, the mean over its seeds."""
    return {c: float(np.mean(vs)) for c, vs in _clean(values).items()}


def point(values: Values) -> float:
    """The point estimate: the mean over cases of the per-case seed means (NaN without values)."""
    means = case_means(values)
    return float(np.mean(list(means.values()))) if means else math.nan


def seed_spread(values: Values) -> dict[str, dict[str, float]]:
    """Per case with two or more seeds: mean, standard deviation (ddof=1), min, max, number of seeds."""
    return {c: {"mean": float(np.mean(vs)), "std": float(np.std(vs, ddof=1)), "min": min(vs), "max": max(vs),
                "n_seeds": len(vs)}
            for c, vs in _clean(values).items() if len(vs) > 1}


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n_cases: int
    n_values: int
    level: float = LEVEL
    n_boot: int = N_BOOT
    seed: int = BOOTSTRAP_SEED
    method: str = CI_METHOD

    def to_json(self) -> dict:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n_cases": self.n_cases,
                "n_values": self.n_values, "level": self.level, "n_boot": self.n_boot, "seed": self.seed,
                "method": self.method}


def _replicate_means(matrix: np.ndarray, counts: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Two-stage bootstrap replicates of the mean (see the module docstring for the exact draws)."""
    n_cases, width = matrix.shape
    rng = np.random.default_rng(seed)
    cases = rng.integers(0, n_cases, size=(n_boot, n_cases))
    u = rng.random((n_boot, n_cases, width))
    k = counts[cases]                                             # seeds of each drawn case
    picks = np.minimum(np.floor(u * k[..., None]).astype(int), k[..., None] - 1)
    drawn = matrix[cases[..., None], picks]                        # (n_boot, n_cases, width)
    used = np.arange(width)[None, None, :] < k[..., None]
    per_case = np.where(used, drawn, 0.0).sum(-1) / k
    return per_case.mean(-1)


def _matrix(values: dict[str, list[float]]) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(v) for v in values.values())
    matrix = np.full((len(values), width), np.nan)
    for i, vs in enumerate(values.values()):
        matrix[i, :len(vs)] = vs
    return matrix, np.array([len(v) for v in values.values()])


def bootstrap_ci(values: Values, level: float = LEVEL, n_boot: int = N_BOOT, seed: int = BOOTSTRAP_SEED) -> Interval:
    """The mean over cases (of per-case seed means) with its bootstrap interval; NaN without values."""
    clean = _clean(values)
    if not clean:
        return Interval(math.nan, math.nan, math.nan, 0, 0, level, n_boot, seed)
    matrix, counts = _matrix(clean)
    reps = _replicate_means(matrix, counts, n_boot, seed)
    lo, hi = np.percentile(reps, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return Interval(point(clean), float(lo), float(hi), len(clean), int(counts.sum()), level, n_boot, seed)


@dataclass(frozen=True)
class Paired:
    a: str
    b: str
    n_cases: int
    mean_diff: float
    median_diff: float
    wins: int
    ties: int
    losses: int
    statistic: float
    p_value: float
    test: str = TEST_METHOD

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in ("a", "b", "n_cases", "mean_diff", "median_diff", "wins", "ties",
                                              "losses", "statistic", "p_value", "test")}


def paired_comparison(a: Values, b: Values, names: tuple[str, str] = ("a", "b"), tie_tol: float = TIE_TOL) -> Paired:
    """``a`` against ``b`` on their common cases (per-case seed means); wins are cases where a > b."""
    from scipy.stats import wilcoxon

    ma, mb = case_means(a), case_means(b)
    common = sorted(set(ma) & set(mb))
    d = np.array([ma[c] - mb[c] for c in common])
    if not len(d):
        return Paired(*names, 0, math.nan, math.nan, 0, 0, 0, math.nan, math.nan)
    wins, losses = int((d > tie_tol).sum()), int((d < -tie_tol).sum())
    ties = len(d) - wins - losses
    if np.all(d == 0):
        stat, p = 0.0, 1.0
    else:
        res = wilcoxon(d, zero_method="wilcox", alternative="two-sided")
        stat, p = float(res.statistic), float(res.pvalue)
    return Paired(*names, len(d), float(d.mean()), float(np.median(d)), wins, ties, losses, stat, p)


def tied_with_best(variants: Mapping[str, Values], alpha: float = ALPHA,
                   higher_is_better: bool = True) -> tuple[str | None, dict[str, Paired]]:
    """(the best variant, {other variant: its paired comparison with the best}); a variant is tied
    with the best when that comparison's p-value is >= ``alpha``."""
    points = {v: point(vals) for v, vals in variants.items()}
    points = {v: m for v, m in points.items() if not math.isnan(m)}
    if not points:
        return None, {}
    best = (max if higher_is_better else min)(points, key=lambda v: (points[v], v))
    return best, {v: paired_comparison(variants[v], variants[best], (v, best))
                  for v in variants if v != best and v in points}


def is_tied(comparison: Paired, alpha: float = ALPHA, p_value: float | None = None) -> bool:
    """Tied when the comparison has cases and its p-value (``p_value`` if given, e.g. Holm-adjusted) is not
    below ``alpha``."""
    p = comparison.p_value if p_value is None else p_value
    return comparison.n_cases > 0 and not p < alpha


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order; NaN entries stay NaN and are not counted in the family."""
    idx = [i for i, p in enumerate(p_values) if not math.isnan(p)]
    out = [math.nan] * len(p_values)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: p_values[i])):
        running = max(running, min(1.0, p_values[i] * (len(idx) - rank)))
        out[i] = running
    return out


@dataclass(frozen=True)
class RankStability:
    variant: str
    rank: float
    changed: float
    low: float
    high: float
    n_cases: int
    n_boot: int = N_BOOT
    seed: int = BOOTSTRAP_SEED

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in ("variant", "rank", "changed", "low", "high", "n_cases", "n_boot",
                                              "seed")}


def _ranks(means: np.ndarray) -> np.ndarray:
    """Ranks along the last axis, 1 = highest mean, ties share the average rank."""
    from scipy.stats import rankdata

    return rankdata(-means, axis=-1, method="average")


def rank_stability(variants: Mapping[str, Values], n_boot: int = N_BOOT,
                   seed: int = BOOTSTRAP_SEED) -> dict[str, RankStability]:
    """How often each variant's rank changes across bootstrap resamples of the cases all variants share."""
    means = {v: case_means(vals) for v, vals in variants.items()}
    names = [v for v in means if means[v]]
    if len(names) < 2:
        return {}
    common = sorted(set.intersection(*(set(means[v]) for v in names)))
    if not common:
        return {}
    table = np.array([[means[v][c] for c in common] for v in names])   # (variants, cases)
    full = _ranks(table.mean(1))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(common), size=(n_boot, len(common)))
    reps = _ranks(table[:, idx].mean(-1).T)                             # (n_boot, variants)
    out = {}
    for i, v in enumerate(names):
        lo, hi = np.percentile(reps[:, i], [2.5, 97.5])
        out[v] = RankStability(v, float(full[i]), float((reps[:, i] != full[i]).mean()), float(lo), float(hi),
                               len(common), n_boot, seed)
    return out
