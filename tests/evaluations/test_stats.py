"""evaluations.stats against hand computations: the bootstrap redone with a loop on the same seeded
draws, scipy's Wilcoxon on the same vectors, and rankings built by hand."""

import math

import numpy as np
import pytest
from scipy.stats import wilcoxon

from tests.helpers import loop_bootstrap
from evaluations.stats import (bootstrap_ci, case_means, holm, is_tied, paired_comparison, point,
                               rank_stability, seed_spread, tied_with_best)

SEEDED = {"1": [0.9, 0.8, 1.0], "2": [0.5, 0.7], "3": [1.0], "4": [0.2, 0.4, 0.3]}


def test_two_stage_bootstrap_equals_the_documented_loop():
    ci = bootstrap_ci(SEEDED, n_boot=400, seed=7)
    _, lo, hi = loop_bootstrap(SEEDED, 400, 7)
    assert (ci.low, ci.high) == pytest.approx((lo, hi), abs=1e-12)
    assert ci.mean == pytest.approx(np.mean([0.9, 0.6, 1.0, 0.3]))
    assert ci.n_cases == 4 and ci.n_values == 9
    assert ci.low < ci.mean < ci.high
    assert bootstrap_ci(SEEDED, n_boot=400, seed=7) == ci  # fixed seed: the same report
    assert bootstrap_ci(SEEDED, n_boot=400, seed=8) != ci


def test_one_seed_per_case_is_the_ordinary_bootstrap_over_cases():
    vals = {"a": [0.1], "b": [0.5], "c": [0.9], "d": [0.7], "e": [0.2]}
    ci = bootstrap_ci(vals, n_boot=1000, seed=0)
    rng = np.random.default_rng(0)
    x = np.array([0.1, 0.5, 0.9, 0.7, 0.2])
    idx = rng.integers(0, 5, size=(1000, 5))
    lo, hi = np.percentile(x[idx].mean(1), [2.5, 97.5])
    assert (ci.low, ci.high) == pytest.approx((lo, hi))


def test_nan_values_and_empty_inputs():
    assert case_means({"1": [float("nan"), 0.5], "2": [float("nan")]}) == {"1": 0.5}
    assert math.isnan(bootstrap_ci({}).mean) and bootstrap_ci({}).n_cases == 0
    assert math.isnan(point({"x": [float("nan")]}))
    spread = seed_spread(SEEDED)
    assert set(spread) == {"1", "2", "4"}  # case 3 has one seed
    assert spread["2"]["std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))


def test_paired_comparison_is_scipys_wilcoxon_on_the_per_case_means():
    a = {"1": [0.9, 1.0], "2": [0.8], "3": [0.7], "4": [0.95], "5": [0.6], "6": [0.5], "7": [0.9]}
    b = {"1": [0.7], "2": [0.8], "3": [0.6], "4": [0.5], "5": [0.65], "6": [0.1], "7": [0.85], "8": [0.3]}
    got = paired_comparison(a, b, ("A", "B"))
    d = np.array([0.95 - 0.7, 0.0, 0.1, 0.45, -0.05, 0.4, 0.05])
    want = wilcoxon(d, zero_method="wilcox")
    assert got.n_cases == 7  # case 8 is not shared
    assert (got.wins, got.ties, got.losses) == (5, 1, 1)
    assert got.p_value == pytest.approx(want.pvalue) and got.statistic == pytest.approx(want.statistic)
    assert got.mean_diff == pytest.approx(d.mean()) and got.median_diff == pytest.approx(np.median(d))
    same = paired_comparison(a, a)
    assert same.p_value == 1.0 and same.ties == 7


def test_tied_with_best_and_rank_stability():
    rng = np.random.default_rng(1)
    base = rng.random(20)
    variants = {
        "good": {str(i): [v + 0.3] for i, v in enumerate(base)},
        "good-too": {str(i): [v + 0.3 + (0.01 if i % 2 else -0.01)] for i, v in enumerate(base)},
        "bad": {str(i): [v] for i, v in enumerate(base)},
    }
    best, comps = tied_with_best(variants)
    assert best in {"good", "good-too"}
    other = ({"good", "good-too"} - {best}).pop()
    assert is_tied(comps[other]) and not is_tied(comps["bad"])
    assert comps["bad"].losses == 20
    stab = rank_stability(variants, n_boot=500, seed=0)
    assert stab["bad"].rank == 3 and stab["bad"].changed == 0.0  # always last
    assert stab["good"].changed + stab["good-too"].changed > 0  # the two near-equal ones swap
    assert stab["good"].low >= 1 and stab["good"].high <= 2


def test_benchmark_seeds_are_an_axis_of_the_run_identity(tmp_path, capsys):
    import json

    from benchmark.cli import main
    from core.results import iter_results

    out = tmp_path / "res"
    assert main(["benchmark", "--cases", "toy", "--methods", "random", "eap", "--seeds", "0", "1", "2", "-n", "8",
                 "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["jobs"] == 6
    docs = [d for _, d in iter_results(out)]
    assert sorted((d["method"], d["seed"]) for d in docs) == sorted((m, s) for m in ("random", "eap") for s in (0, 1, 2))
    assert len({d["run_id"] for d in docs}) == 6
    eap = {d["seed"]: d["scores"]["edges"] for d in docs if d["method"] == "eap"}
    assert eap[0] != eap[1]  # another data sample, other scores
    assert main(["benchmark", "--cases", "toy", "--methods", "random", "--seeds", "-1", "--out", str(out)]) == 2


def test_holm_adjustment_by_hand():
    # m = 4: sorted 0.01, 0.02, 0.03, 0.5 -> 0.04, 0.06, 0.06 (running max over 0.06), 0.5; input order kept
    assert holm([0.03, 0.5, 0.01, 0.02]) == pytest.approx([0.06, 0.5, 0.04, 0.06])
    assert holm([0.4, 0.6]) == pytest.approx([0.8, 0.8])  # capped at 1 by min, then monotone
    got = holm([0.2, float("nan"), 0.01])  # NaN stays NaN and is not one of the family (m = 2)
    assert got[0] == pytest.approx(0.2) and np.isnan(got[1]) and got[2] == pytest.approx(0.02)
    assert holm([]) == []
