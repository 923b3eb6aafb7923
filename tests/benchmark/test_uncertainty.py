"""Issue 22: the leaderboard's intervals and paired tests match a hand computation (scipy's Wilcoxon on
the same vectors, the documented two-stage bootstrap redone here with the fixed seed), the floored
AUROC column, `leaderboard --compare`, and a plug-in method ranked against a reference without
rerunning the baselines (with the refusals when the data differ)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import wilcoxon

from benchmark.cli import main
from core.results import iter_results
from tests.helpers import loop_bootstrap

CASES = ("3", "4", "12")
METHODS = ("eap", "eap-ig", "exact", "random")
SEEDS = ("0", "1", "2")
N = "16"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("unc") / "res"
    assert main(["benchmark", "--cases", *CASES, "--methods", *METHODS, "--seeds", *SEEDS, "-n", N,
                 "--out", str(out)]) == 0
    return out


def _leaderboard(out: Path, capsys, *extra) -> dict:
    capsys.readouterr()
    assert main(["leaderboard", "--out", str(out), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def _by_method(out: Path, key=lambda d: d["roc"]["edges"]["auroc"]) -> dict[str, dict[str, list[float]]]:
    table: dict[str, dict[str, list[float]]] = {}
    for _, doc in iter_results(out):
        table.setdefault(doc["method"], {}).setdefault(doc["case"], []).append(key(doc))
    return table


def _hand_bootstrap(values: dict[str, list[float]], n_boot: int, seed: int) -> tuple[float, float, float]:
    """The two-stage bootstrap as documented in evaluations/stats.py, written out case by case; the
    leaderboard keeps result order: sorted paths, so case ids sorted as text."""
    return loop_bootstrap(values, n_boot, seed, cases=sorted(values))


def test_intervals_and_paired_tests_match_a_hand_computation(runs, capsys):
    doc = _leaderboard(runs, capsys)
    method = doc["method"]
    assert method["bootstrap_seed"] == 0 and method["n_boot"] == 10_000 and "Wilcoxon" in method["test"]
    rows = {r["method"]: r for r in doc["summary"]}
    assert sorted(rows) == sorted(METHODS) and all(r["n_runs"] == 9 and r["n_cases"] == 3 for r in rows.values())
    table = _by_method(runs)
    for m in METHODS:
        point, lo, hi = _hand_bootstrap(table[m], method["n_boot"], method["bootstrap_seed"])
        assert rows[m]["edge_auroc"] == pytest.approx(point, abs=1e-12)
        assert (rows[m]["edge_auroc_low"], rows[m]["edge_auroc_high"]) == pytest.approx((lo, hi), abs=1e-12)
        assert lo <= point <= hi
    # the seeds really differ for random (else the seed stage of the bootstrap would be untested)
    assert any(len(set(v)) > 1 for v in table["random"].values())
    pairs = {(p["a"], p["b"]): p for p in doc["pairwise"]}
    assert len(pairs) == 6  # every pair of the 4 variants of the one model kind
    for (a, b), p in pairs.items():
        d = [np.mean(table[a][c]) - np.mean(table[b][c]) for c in sorted(table[a], key=int)]
        assert p["n_cases"] == 3 and p["mean_diff"] == pytest.approx(np.mean(d), abs=1e-12)
        assert (p["wins"], p["ties"], p["losses"]) == (sum(x > 1e-9 for x in d), sum(abs(x) <= 1e-9 for x in d),
                                                      sum(x < -1e-9 for x in d))
        if any(x != 0 for x in d):
            ref = wilcoxon(d, zero_method="wilcox", alternative="two-sided")
            assert p["p_value"] == pytest.approx(float(ref.pvalue)) and p["statistic"] == pytest.approx(ref.statistic)
        else:
            assert p["p_value"] == 1.0
    best = [r for r in rows.values() if r["tied_with_best"] == "best"]
    assert len(best) == 1 and best[0]["edge_auroc"] == max(r["edge_auroc"] for r in rows.values())
    for r in rows.values():  # with 3 cases no Wilcoxon p is below 0.25: every other variant is tied
        if r is not best[0]:
            key = (r["method"], best[0]["method"]) if (r["method"], best[0]["method"]) in pairs else \
                (best[0]["method"], r["method"])
            assert r["p_vs_best"] == pytest.approx(pairs[key]["p_value"])
            assert r["tied_with_best"] == ("yes" if r["p_vs_best_holm"] >= 0.05 else "no")
    # Holm over the three comparisons with the best, by hand: sorted p times (3, 2, 1), running max, cap 1
    others = sorted((r for r in rows.values() if r is not best[0]), key=lambda r: r["p_vs_best"])
    running = 0.0
    for i, r in enumerate(others):
        running = max(running, min(1.0, r["p_vs_best"] * (len(others) - i)))
        assert r["p_vs_best_holm"] == pytest.approx(running)
    for r in rows.values():
        assert 0 <= r["rank_changed"] <= 1 and 1 <= r["rank"] <= 4
    # the per-case spread over seeds of the random baseline
    spread = [s for s in doc["per_case"] if s["variant"] == "random"]
    assert {s["case"] for s in spread} == set(CASES)
    for s in spread:
        assert s["std"] == pytest.approx(float(np.std(table["random"][s["case"]], ddof=1)))


def test_paired_tests_on_node_auroc_cpr_and_cmd(runs, tmp_path, capsys):
    """Pairs on the other metrics: node AUROC from the results, CPR and CMD from faithfulness.json files
    planted next to each result (the file eval faithfulness writes); each matches scipy on the same
    vectors, and p_holm is Holm over the pairs of one metric."""
    import shutil

    out = tmp_path / "res"
    shutil.copytree(runs, out)
    rng = np.random.default_rng(0)
    planted: dict[str, dict[str, dict[str, list[float]]]] = {"cpr": {}, "cmd": {}}
    for path, doc in iter_results(out):
        if doc["method"] == "random":
            continue  # a variant without faithfulness results: left out of the CPR/CMD pairs
        cpr, cmd = float(rng.random()), float(rng.random())
        (path.parent / "faithfulness.json").write_text(json.dumps({"curve": {"cpr": cpr, "cmd": cmd}}))
        planted["cpr"].setdefault(doc["method"], {}).setdefault(doc["case"], []).append(cpr)
        planted["cmd"].setdefault(doc["method"], {}).setdefault(doc["case"], []).append(cmd)
    doc = _leaderboard(out, capsys)
    node = _by_method(out, key=lambda d: d["roc"]["nodes"]["auroc"])
    tables = {"node_auroc": node, **planted}
    by_metric: dict[str, list[dict]] = {}
    for p in doc["pairwise_metrics"]:
        by_metric.setdefault(p["metric"], []).append(p)
    assert sorted(by_metric) == ["cmd", "cpr", "node_auroc"]
    assert len(by_metric["node_auroc"]) == 6 and len(by_metric["cpr"]) == len(by_metric["cmd"]) == 3
    for metric, pairs in by_metric.items():
        table = tables[metric]
        for p in pairs:
            d = [np.mean(table[p["a"]][c]) - np.mean(table[p["b"]][c]) for c in sorted(table[p["a"]], key=int)]
            assert p["mean_diff"] == pytest.approx(np.mean(d), abs=1e-12)
            want = 1.0 if all(x == 0 for x in d) else float(wilcoxon(d, zero_method="wilcox").pvalue)
            assert p["p_value"] == pytest.approx(want)
        ps = sorted(p["p_value"] for p in pairs)
        holm = np.maximum.accumulate([min(1.0, q * (len(ps) - i)) for i, q in enumerate(ps)])
        assert sorted(p["p_holm"] for p in pairs) == pytest.approx(list(holm))
    capsys.readouterr()
    assert main(["leaderboard", "--out", str(out), "--compare", "eap", "exact", "--compare-metric", "cmd",
                 "--json"]) == 0
    (cmp,) = json.loads(capsys.readouterr().out)["comparisons"]
    d = [np.mean(planted["cmd"]["eap"][c]) - np.mean(planted["cmd"]["exact"][c]) for c in CASES]
    assert cmp["metric"] == "cmd" and [x["diff"] for x in cmp["cases"]] == pytest.approx(d)
    assert main(["leaderboard", "--out", str(out)]) == 0
    md = (out / "leaderboard.md").read_text()
    assert "Paired comparisons (node AUROC, CPR, CMD" in md and "p (Holm)" in md
    assert main(["leaderboard", "--out", str(out), "--compare", "eap", "exact", "--compare-metric", "f1"]) == 2
    # a faithfulness.json of another shape (a list, a curve that is not an object) counts as no CPR/CMD
    shapes = iter(["[]", '{"curve": [1, 2]}', '"text"'])
    for path, d in iter_results(out):
        if d["method"] == "exact" and d["case"] == CASES[0]:
            (path.parent / "faithfulness.json").write_text(next(shapes))
    doc = _leaderboard(out, capsys)
    exact = next(r for r in doc["summary"] if r["method"] == "exact")
    assert exact["cpr"] == pytest.approx(np.mean([np.mean(planted["cpr"]["exact"][c]) for c in CASES[1:]]))


def test_markdown_csv_and_html_carry_the_intervals(runs, capsys):
    doc = _leaderboard(runs, capsys)
    eap = next(r for r in doc["summary"] if r["method"] == "eap")
    assert main(["leaderboard", "--out", str(runs)]) == 0
    md = (runs / "leaderboard.md").read_text()
    assert f"[{eap['edge_auroc_low']:.3f}, {eap['edge_auroc_high']:.3f}]" in md
    assert "bootstrap seed 0" in md and "Paired comparisons" in md and "1e-06" in md
    assert main(["leaderboard", "--out", str(runs), "--format", "csv"]) == 0
    import csv
    import io

    table = {r["method"]: r for r in csv.DictReader(io.StringIO((runs / "leaderboard.csv").read_text()))}
    assert float(table["eap"]["edge_auroc_low"]) == pytest.approx(eap["edge_auroc_low"])
    assert main(["leaderboard", "--out", str(runs), "--format", "html"]) == 0
    page = (runs / "leaderboard.html").read_text()
    assert 'id="pairwise"' in page and 'id="heatmap-tracr"' in page and 'id="cost-quality"' in page
    assert "<details>" in page and "src=\"http" not in page and "<script>" in page


def test_floored_auroc_column_and_floor_flag(runs, capsys):
    from core.results import load_result
    from evaluations.roc import floored_edge_roc

    table = _by_method(runs, key=lambda d: floored_edge_roc(d, 0.5).auroc)
    doc = _leaderboard(runs, capsys, "--score-floor", "0.5")
    assert doc["method"]["score_floor"] == 0.5
    eap = next(r for r in doc["summary"] if r["method"] == "eap")
    assert eap["floored_edge_auroc"] == pytest.approx(np.mean([np.mean(v) for v in table["eap"].values()]))
    default = next(r for r in _leaderboard(runs, capsys)["summary"] if r["method"] == "eap")
    assert default["floored_edge_auroc"] != eap["floored_edge_auroc"]  # a floor of half the top score bites
    assert main(["leaderboard", "--out", str(runs), "--score-floor", "2"]) == 2
    assert load_result  # imported for the result files' reader


def test_compare_two_variants(runs, capsys):
    capsys.readouterr()
    assert main(["leaderboard", "--out", str(runs), "--compare", "eap", "random", "--json"]) == 0
    (cmp,) = json.loads(capsys.readouterr().out)["comparisons"]
    table = _by_method(runs)
    d = [np.mean(table["eap"][c]) - np.mean(table["random"][c]) for c in sorted(table["eap"], key=int)]
    assert [x["diff"] for x in cmp["cases"]] == pytest.approx(d)
    assert cmp["p_value"] == pytest.approx(float(wilcoxon(d).pvalue))
    assert main(["leaderboard", "--out", str(runs), "--compare", "eap", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no variant 'nope'" in err[0] and "tracr:eap" in err[0]


def test_plugin_method_ranked_against_a_reference(runs, tmp_path, capsys):
    ref = tmp_path / "ref.jsonl.gz"
    assert main(["leaderboard", "--out", str(runs), "--write-reference", str(ref)]) == 0
    size = ref.stat().st_size
    raw = sum(p.stat().st_size for p, _ in iter_results(runs))
    assert 0 < size < raw / 5  # compact: far smaller than the result files
    mine = tmp_path / "mine"
    assert main(["benchmark", "--cases", *CASES, "--methods", "tests.plugin_methods:SenderIndex",
                 "--seeds", *SEEDS, "-n", N, "--out", str(mine)]) == 0
    doc = _leaderboard(mine, capsys, "--with-reference", str(ref))
    rows = {r["variant"]: r for r in doc["summary"]}
    assert set(rows) == {"tests.plugin_methods:SenderIndex", *(f"{m} [ref]" for m in METHODS)}
    # the reference's rows reproduce the leaderboard of the original results
    orig = {r["method"]: r for r in _leaderboard(runs, capsys)["summary"]}
    for m in METHODS:
        for k in ("edge_auroc", "node_auroc", "edge_auroc_low", "edge_auroc_high"):
            assert rows[f"{m} [ref]"][k] == pytest.approx(orig[m][k], abs=1e-12), (m, k)
        assert rows[f"{m} [ref]"]["floored_edge_auroc"] == pytest.approx(orig[m]["floored_edge_auroc"], abs=1e-3)
    pairs = {(p["a"], p["b"]) for p in doc["pairwise"]}
    assert ("eap [ref]", "tests.plugin_methods:SenderIndex") in pairs and len(pairs) == 10
    # refusals: other data, other case set, another result schema -> one line, exit 2, before any output
    other = tmp_path / "other"
    assert main(["benchmark", "--cases", "3", "--methods", "random", "--seeds", *SEEDS, "-n", "8",
                 "--out", str(other)]) == 0
    capsys.readouterr()
    assert main(["leaderboard", "--out", str(other), "--with-reference", str(ref)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "n (examples)" in err[0] and not (other / "leaderboard.md").exists()
    one_seed = tmp_path / "one_seed"  # seeds the reference has: ranked against its runs at those seeds only
    assert main(["benchmark", "--cases", "3", "--methods", "random", "-n", N, "--out", str(one_seed)]) == 0
    capsys.readouterr()
    doc = _leaderboard(one_seed, capsys, "--with-reference", str(ref))
    assert doc["reference"]["seeds_used"] == [0] and doc["reference"]["cases_used"] == {"tracr": ["3"]}
    assert doc["reference"]["n_runs"] == len(METHODS)
    rows = {r["variant"]: r for r in doc["summary"]}
    # every row over the same case: the [ref] rows are the reference's case-3 seed-0 runs, nothing else
    assert all(r["n_cases"] == 1 and r["n_runs"] == 1 for r in rows.values()) and len(rows) == len(METHODS) + 1
    seed0 = {d["method"]: d["roc"]["edges"]["auroc"] for _, d in iter_results(runs) if d["seed"] == 0 and d["case"] == "3"}
    for m in METHODS:
        assert rows[f"{m} [ref]"]["edge_auroc"] == pytest.approx(seed0[m], abs=1e-12)
    assert "on the cases of these results, data seeds 0 only" in (one_seed / "leaderboard.md").read_text()
    other_seed = tmp_path / "other_seed"  # a seed it does not have: refused
    assert main(["benchmark", "--cases", "3", "--methods", "random", "--seed", "7", "-n", N, "--out",
                 str(other_seed)]) == 0
    capsys.readouterr()
    assert main(["leaderboard", "--out", str(other_seed), "--with-reference", str(ref)]) == 2
    assert "data seeds" in capsys.readouterr().err
    toy = tmp_path / "toy"  # a case the reference does not have
    assert main(["benchmark", "--cases", "toy", "--methods", "random", "--seeds", *SEEDS, "-n", N, "--out", str(toy)]) == 0
    capsys.readouterr()
    assert main(["leaderboard", "--out", str(toy), "--with-reference", str(ref)]) == 2
    assert "has no toy runs of case(s) toy" in capsys.readouterr().err
    import gzip

    lines = gzip.open(ref, "rt").read().splitlines()
    header = json.loads(lines[0])
    header["settings"]["schema"] = [999]
    bad = tmp_path / "bad.jsonl.gz"
    with gzip.open(bad, "wt") as f:
        f.write("\n".join([json.dumps(header)] + lines[1:]) + "\n")
    assert main(["leaderboard", "--out", str(mine), "--with-reference", str(bad)]) == 2
    assert "result schema" in capsys.readouterr().err
    del header["settings"]["seeds"]  # a damaged header: refused in one line, not a traceback
    with gzip.open(bad, "wt") as f:
        f.write("\n".join([json.dumps(header)] + lines[1:]) + "\n")
    assert main(["leaderboard", "--out", str(mine), "--with-reference", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "damaged" in err[0] and "seeds" in err[0]
    (tmp_path / "junk.gz").write_bytes(b"not gzip")
    assert main(["leaderboard", "--out", str(mine), "--with-reference", str(tmp_path / "junk.gz")]) == 2


def test_reference_extended_with_new_cases_equals_one_written_at_once(runs, tmp_path, capsys):
    """`--extend-reference`: a reference of cases 3 and 4 extended with case 12's runs holds the same
    records and settings as one written from all three at once; redoing the extension replaces runs
    (never duplicates them); results with other settings are refused and leave the file as it was."""
    import gzip
    import shutil

    def lines(path):
        with gzip.open(path, "rt") as f:
            text = f.read().splitlines()
        return json.loads(text[0]), sorted(text[1:])

    whole = tmp_path / "whole.jsonl.gz"
    assert main(["leaderboard", "--out", str(runs), "--write-reference", str(whole)]) == 0
    old, new = tmp_path / "cases34", tmp_path / "case12"
    for p, doc in iter_results(runs):
        shutil.copytree(p.parent, (new if doc["case"] == "12" else old) / p.parent.relative_to(runs))
    ref = tmp_path / "ref.jsonl.gz"
    assert main(["leaderboard", "--out", str(old), "--write-reference", str(ref)]) == 0
    assert lines(ref)[0]["settings"]["cases"]["tracr"] == ["3", "4"]
    extend = ["leaderboard", "--out", str(new), "--write-reference", str(ref), "--extend-reference"]
    assert main(extend) == 0
    (h1, r1), (h2, r2) = lines(whole), lines(ref)
    assert r2 == r1 and h2["settings"] == h1["settings"] and h2["n_runs"] == len(r1) == 36
    assert h2["command"].count("--write-reference") == 2 and h2["command"].endswith("--extend-reference")
    assert main(extend) == 0 and lines(ref)[1] == r1  # redone runs replace the old records
    other = tmp_path / "other"  # case 12 again with other data: refused, the file untouched
    assert main(["benchmark", "--cases", "12", "--methods", "random", "--seeds", *SEEDS, "-n", "8",
                 "--out", str(other)]) == 0
    before = ref.read_bytes()
    capsys.readouterr()
    assert main(["leaderboard", "--out", str(other), "--write-reference", str(ref), "--extend-reference"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot extend" in err[0] and "n (examples)" in err[0] and ref.read_bytes() == before
    assert main(["leaderboard", "--out", str(new), "--write-reference", str(tmp_path / "none.gz"),
                 "--extend-reference"]) == 2
    assert "no reference file" in capsys.readouterr().err
    assert main(["leaderboard", "--out", str(new), "--extend-reference"]) == 2
    assert "goes with --write-reference" in capsys.readouterr().err


def test_faithfulness_plot_axis_fits_the_graph_and_legend_is_off_the_curves(tmp_path, monkeypatch):
    from evaluations import plots

    seen = {}

    def capture(fig, path):
        ax = fig.axes[0]
        fig.canvas.draw()
        seen["xlim"] = ax.get_xlim()
        seen["x"] = [list(line.get_xdata()) for line in ax.get_lines() if line.get_label().startswith("m")]
        seen["legend"] = ax.get_legend().get_window_extent()
        seen["axes"] = ax.get_window_extent()
        plots._plt().close(fig)
        return path

    monkeypatch.setattr(plots, "_save", capture)
    fractions = [0.001, 0.01, 0.03, 0.1, 0.5, 1.0]  # a 23-edge graph: the first three ask for 0 edges
    curve = {"fractions": fractions, "requested": [int(p * 23) for p in fractions],
             "faithfulness": [0.0, 0.0, 0.0, 0.4, 0.9, 1.0], "cpr": 0.8, "cmd": 0.2}
    plots.plot_faithfulness({"m1": curve, "m2": {**curve, "faithfulness": [0, 0, 0, 0.2, 0.7, 1.0]}}, tmp_path / "f.png")
    lo, hi = seen["xlim"]
    assert lo == pytest.approx(0.8 / 23) and hi == pytest.approx(1.25)  # one edge .. all, not 1e-3 .. 1
    assert all(min(x) >= 1 / 23 for x in seen["x"])  # points below one edge (the empty circuit) not drawn
    assert seen["legend"].y1 <= seen["axes"].y0  # the legend lies below the axes, never over a curve


def test_plugin_method_ranked_against_the_shipped_reference(tmp_path, capsys):
    """The shipped reference (benchmark/reference/): a plug-in run with its settings is ranked against
    its baselines in one `leaderboard --with-reference`, nothing rerun. After a result-schema or version
    change this fails with the reference's one-line refusal: regenerate it (README, Reference leaderboard)."""
    from benchmark import reference

    header, docs = reference.load()
    assert header["settings"]["seeds"] == [0, 1, 2] and header["n_runs"] == len(docs)
    assert set(header["settings"]["cases"]["tracr"]) >= {"3", "4", "12"}
    mine = tmp_path / "mine"
    assert main(["benchmark", "--cases", "3", "4", "12", "--methods", "tests.plugin_methods:SenderIndex",
                 "--seeds", *SEEDS, "--out", str(mine)]) == 0
    doc = _leaderboard(mine, capsys, "--with-reference")
    tracr = {r["variant"]: r for r in doc["summary"] if r["model"] == "tracr"}
    # the reference holds three EAP-IG variants on Tracr, so the default's label names its variant
    assert {"eap [ref]", "eap-ig (inputs, 5 steps) [ref]", "eap-ig (activations, 5 steps) [ref]", "exact [ref]",
            "acdc [ref]", "random [ref]"} <= set(tracr)
    plugin = tracr["tests.plugin_methods:SenderIndex"]
    assert plugin["n_cases"] == 3 and plugin["n_runs"] == 9 and plugin["tied_with_best"] in ("yes", "no")
    assert any(p["b"] == "tests.plugin_methods:SenderIndex" and p["a"] == "eap [ref]" and p["n_cases"] == 3
               for p in doc["pairwise"])
    # ranked on the same cases: the reference's runs of Tracr 3, 4, 12 only (its other cases and kinds left out)
    ours = [d for d in docs if d["model"] == "tracr" and d["case"] in ("3", "4", "12")]
    assert doc["reference"]["n_runs"] == len(ours) and doc["reference"]["cases_used"] == {"tracr": ["3", "4", "12"]}
    assert all(r["n_cases"] == 3 for r in doc["summary"]) and {r["model"] for r in doc["summary"]} == {"tracr"}


def test_uncertainty_tables_reread_the_experiments_tables():
    """benchmark.uncertainty's table re-reading (benchmarks/uncertainty_tables.py), the source of EXPERIMENTS.md
    section 13's re-reading."""
    from benchmark.uncertainty import auroc_table_report, read_auroc_tables

    root = Path(__file__).resolve().parents[2]
    text = ("| case | ACDC | node SP | EAP | paper |\n|---|---|---|---|---|\n"
            + "".join(f"| {c} | 1.000 | {0.5 + c / 100:.3f} | 1.000 | x |\n" for c in range(1, 9)) + "| mean | 1 | 1 | 1 | |\n")
    ((_, cols),) = read_auroc_tables(text)
    assert sorted(cols) == ["ACDC", "EAP", "node SP"] and len(cols["ACDC"]) == 8
    out = auroc_table_report(cols)
    assert "| ACDC | node SP | +0.455 | 8/0/0 | 0.00781 |" in out and "| ACDC | EAP | +0.000 | 0/8/0 | 1 |" in out
    assert len(read_auroc_tables((root / "EXPERIMENTS.md").read_text())) >= 2


def test_html_page_has_the_direction_results_and_cpr_cmd(tmp_path, capsys):
    from tests.benchmark.test_report_html import _parse

    assert main(["benchmark", "--cases", "toy", "--methods", "random", "eap", "-n", "8", "--out", str(tmp_path)]) == 0
    assert main(["run", "mean-diff", "-i", "sentiment", "--out", str(tmp_path)]) == 0
    assert main(["eval", "faithfulness", str(tmp_path), "-n", "8"]) == 0
    faith = {d["method"]: d["curve"] for _, d in iter_results(tmp_path, "faithfulness.json")}
    doc = _leaderboard(tmp_path, capsys)
    for row in doc["summary"]:  # CPR / CMD from eval faithfulness's files, with intervals (one run: a point)
        assert row["cpr"] == pytest.approx(faith[row["method"]]["cpr"])
        assert row["cmd"] == pytest.approx(faith[row["method"]]["cmd"])
        assert row["cpr_low"] == pytest.approx(row["cpr"]) == pytest.approx(row["cpr_high"])
    assert main(["leaderboard", "--out", str(tmp_path), "--format", "html"]) == 0
    page = _parse(tmp_path / "leaderboard.html")
    assert [row[0] for row in page.rows["directions"]] == ["mean-diff"]  # method, seed, |cos|, ...
    assert 0 <= float(page.rows["directions"][0][2]) <= 1
    assert sorted(row[1] for row in page.rows["leaderboard"]) == ["eap", "random"]
    assert len(page.rows["heatmap-toy"]) == 1 and page.external == []
