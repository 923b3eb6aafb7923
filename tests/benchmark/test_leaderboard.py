"""Leaderboard rows are method variants (never an average over different settings), every variant has
its own curve in every plot, and the time reported is the method's own (set-up apart)."""

from __future__ import annotations

import csv
import io
import math

import pytest

from benchmark import leaderboard as lb
from benchmark.cli import main
from benchmark.variants import label_variants, run_labels, variant_key
from core import results

SP = {"lambda_reg": 1.0, "lambdas": [0.01, 0.1, 1.0], "edgewise": False, "epochs": 200, "lr": 0.1, "n_samples": 1,
      "mask_p": 0.9, "lambda_batch": 0}
IG = {"absolute": True, "node_scores": True, "attribution_metric": "auto"}


def _doc(case, method, params, edge=None, node=None, pess=None, method_s=None, setup_s=None, total=None,
         status="ok", seed=0, model="tracr", ablation="corrupted"):
    """A result document in the runner's schema (``benchmark.runner.run_job``)."""
    doc = {"schema": results.SCHEMA, "case": case, "model": model, "method": method, "params": params, "seed": seed,
           "status": status, "error": None if status == "ok" else "ValueError: bad", "run_id": None,
           "data": {"n": 200, "seed": seed, "ablation": ablation, "metric": "faithfulness"}, "versions": {}}
    timing = {} if total is None else {"seconds": total}
    if method_s is not None:
        timing.update(method_seconds=method_s, setup_seconds=setup_s, problem_reused=False)
    doc["timing"] = timing
    if status == "ok":
        doc["roc"] = {"edges": {"auroc": edge, "pessimistic_auc": pess, "fpr": [0, 1], "tpr": [0, 1]},
                      "nodes": {"auroc": node}}
    return doc


def _write(out, i, doc):
    results.write_json_atomic(out / doc["case"] / doc["model"] / doc["method"] / f"run-{i:04d}" / "result.json", doc)


def test_hand_written_results_give_one_row_per_variant_with_hand_computed_means(tmp_path):
    out = tmp_path / "res"
    docs = [  # node SP and edge SP on cases 3 and 4; edge SP has two seeds on case 3
        _doc("3", "sp", SP, edge=0.861, node=0.9, pess=0.5, method_s=10.0, setup_s=5.0, total=15.5),
        _doc("4", "sp", SP, edge=0.833, node=0.7, pess=0.3, method_s=20.0, setup_s=0.0, total=20.1),
        _doc("3", "sp", dict(SP, edgewise=True), edge=1.0, node=1.0, pess=0.9, method_s=30.0, setup_s=0.5, total=31),
        _doc("3", "sp", dict(SP, edgewise=True), edge=0.8, node=0.6, pess=0.7, method_s=40.0, setup_s=0.5, total=41,
             seed=1),
        _doc("4", "sp", dict(SP, edgewise=True, lambda_batch=2), edge=0.9, node=0.8, pess=0.6, method_s=50.0,
             setup_s=2.0, total=52),  # lambda_batch changes speed only: the same variant
        # a failed edge-SP run that recorded only the typed parameters: counted under edge SP
        _doc("4", "sp", {"edgewise": True, "lambdas": [0.01, 0.1, 1.0]}, status="error", total=0.1),
        # an old result without method_seconds: its time is unknown, not the job's 7 s
        _doc("3", "eap", IG, edge=0.95, node=0.9, pess=0.9, total=7.0),
        _doc("3", "eap-ig", {"ig_variant": "bogus"}, status="error", total=0.2),
        _doc("3", "eap-ig", dict(IG, ig_variant="inputs", integrated_grad_steps=5), edge=0.5, node=0.5, pess=0.5,
             method_s=1.0, setup_s=0.0, total=1.1),
    ]
    for i, d in enumerate(docs):
        _write(out, i, d)
    summary, detail = lb.collect(out)
    rows = {(r["method"], r["variant"]): r for r in summary}
    assert set(rows) == {("sp", "sp (node)"), ("sp", "sp (edge)"), ("eap", "eap"), ("eap-ig", "eap-ig (bogus)"),
                         ("eap-ig", "eap-ig (inputs, 5 steps)")}
    node, edge = rows[("sp", "sp (node)")], rows[("sp", "sp (edge)")]
    assert (node["n_cases"], node["n_runs"], node["errors"]) == (2, 2, 0)
    assert node["edge_auroc"] == pytest.approx((0.861 + 0.833) / 2)
    assert node["node_auroc"] == pytest.approx((0.9 + 0.7) / 2)
    assert node["edge_pessimistic_auc"] == pytest.approx((0.5 + 0.3) / 2)
    assert node["mean_method_seconds"] == pytest.approx(15.0) and node["mean_setup_seconds"] == pytest.approx(2.5)
    # edge SP: the two seeds of case 3 are averaged first, then the cases: ((1.0 + 0.8) / 2 + 0.9) / 2
    assert (edge["n_cases"], edge["n_runs"], edge["errors"]) == (2, 3, 1)
    assert edge["edge_auroc"] == pytest.approx(((1.0 + 0.8) / 2 + 0.9) / 2)
    assert edge["node_auroc"] == pytest.approx(((1.0 + 0.6) / 2 + 0.8) / 2)
    assert edge["mean_method_seconds"] == pytest.approx((30 + 40 + 50) / 3)  # per run, not the job's seconds
    assert edge["mean_setup_seconds"] == pytest.approx((0.5 + 0.5 + 2.0) / 3)
    assert rows[("eap", "eap")]["mean_method_seconds"] is None  # not recorded: no fallback to the total
    bogus = rows[("eap-ig", "eap-ig (bogus)")]
    assert (bogus["n_cases"], bogus["errors"]) == (0, 1) and math.isnan(bogus["edge_auroc"])
    assert [r["variant"] for r in summary] == ["eap", "sp (edge)", "sp (node)", "eap-ig (inputs, 5 steps)",
                                               "eap-ig (bogus)"]  # best edge AUROC first, nan last

    md = lb.to_markdown(summary)
    assert md.splitlines()[0].startswith("| model | method | variant | n_cases | n_runs | edge_auroc")
    assert "mean_method_seconds | mean_setup_seconds" in md
    eap_line = next(line for line in md.splitlines() if "| eap | eap |" in line)
    assert eap_line.split("|")[9:11] == [" - ", " - "]  # method and set-up seconds
    table = list(csv.DictReader(io.StringIO(lb.to_csv(summary))))
    by_variant = {r["variant"]: r for r in table}
    assert len(table) == 5 and by_variant["sp (edge)"]["edge_auroc"] == f"{((1.0 + 0.8) / 2 + 0.9) / 2:.3f}"
    assert by_variant["sp (node)"]["mean_method_seconds"] == "15.000" and by_variant["eap"]["mean_method_seconds"] == "-"
    page = lb.to_html(summary, detail)
    assert "<td>sp (node)</td>" in page and "<td>sp (edge)</td>" in page
    # the per-run table names each run's variant and shows its parameters and times
    sp_edge = [d for d in detail if d["variant"] == "sp (edge)"]
    assert len(sp_edge) == 4 and sum(d["status"] == "error" for d in sp_edge) == 1
    assert all("edgewise=True" in d["params"] for d in sp_edge)
    ok = next(d for d in sp_edge if d["status"] == "ok" and d["seed"] == 1)
    assert (ok["method_seconds"], ok["setup_seconds"], ok["seconds"]) == (40.0, 0.5, 41)
    assert "edgewise=True" in page and "<th scope=\"col\">method_seconds</th>" in page


def test_variant_labels():
    def key(method, params, ablation="corrupted"):
        return variant_key(_doc("3", method, params, edge=1, ablation=ablation))

    acdc = {"threshold": None, "thresholds": [10 ** (-5 + i / 4) for i in range(21)], "abs_value_threshold": False,
            "order": "reverse-topological", "min_window": 4}
    ig = [dict(IG, ig_variant="inputs", integrated_grad_steps=5), dict(IG, ig_variant="activations",
          integrated_grad_steps=5), dict(IG, ig_variant="clean-corrupted"), dict(IG, ig_variant="inputs",
          integrated_grad_steps=20)]
    keys = [key("acdc", acdc), key("acdc", dict(acdc, threshold=0.01, thresholds=None, min_window=8)),
            key("sp", SP), key("sp", dict(SP, edgewise=True, lambdas=[0.1, 1.0])), key("eap", IG),
            key("exact", dict(IG, chunk=None, restart=True)), key("exact", dict(IG, chunk=64, restart=False)),
            *(key("eap-ig", p) for p in ig)]
    labels = label_variants(keys)
    assert [labels[k] for k in keys] == [
        "acdc (21 tau)", "acdc (tau=0.01)", "sp (node, 3 lambdas)", "sp (edge, 2 lambdas)", "eap", "exact", "exact",
        "eap-ig (inputs, 5 steps)", "eap-ig (activations, 5 steps)", "eap-ig (clean-corrupted)",
        "eap-ig (inputs, 20 steps)"]
    assert keys[5] == keys[6]  # chunk and restart change speed only
    # other parameters as key=value; the ablation is part of the variant
    two = label_variants([key("eap", IG), key("eap", dict(IG, absolute=False))])
    assert sorted(two.values()) == ["eap (absolute=False)", "eap (absolute=True)"]
    abl = label_variants([key("eap", IG), key("eap", IG, ablation="mean")])
    assert sorted(abl.values()) == ["eap (corrupted ablation)", "eap (mean ablation)"]
    # two variants whose short forms coincide get their differing values in full
    clash = label_variants([key("sp", SP), key("sp", dict(SP, lambdas=[0.01, 0.1, 2.0]))])
    assert len(set(clash.values())) == 2 and all("lambdas=[0.01,0.1," in v for v in clash.values())


def test_a_locally_trained_model_is_its_own_row():
    shipped = _doc("3", "eap", IG, edge=0.9, model="siit")
    shipped["provenance"] = {"model": {"kind": "siit", "source": "shipped", "weights_sha256": "ab" * 32}}
    trained = _doc("3", "eap", IG, edge=0.7, model="siit")
    trained["provenance"] = {"model": {"kind": "siit", "source": "trained", "weights_sha256": "cd" * 32}}
    docs = [("a", shipped), ("b", trained)]
    assert [variant_key(d)[0] for _, d in docs] == ["siit", "siit-cdcdcdcd"]
    assert run_labels(docs) == {"a": "eap [model=siit]", "b": "eap [model=siit-cdcdcdcd]"}


def test_run_labels_tell_runs_of_one_variant_apart_by_seed():
    docs = [("a", _doc("3", "eap", IG, edge=1, seed=0)), ("b", _doc("3", "eap", IG, edge=1, seed=1)),
            ("c", _doc("4", "eap", IG, edge=1, seed=0))]
    assert run_labels(docs) == {"a": "eap [seed=0]", "b": "eap [seed=1]", "c": "eap"}


# ---- real runs on the toy case: 6 variants, 6 rows, 6 curves per plot -------------------------------------------
VARIANTS = [("sp", {"lambdas": [0.01, 0.1], "epochs": 10}), ("sp", {"lambdas": [0.01, 0.1], "epochs": 10, "edgewise": True}),
            ("eap-ig", {}), ("eap-ig", {"ig_variant": "activations"}), ("eap-ig", {"ig_variant": "clean-corrupted"}),
            ("eap-ig", {"integrated_grad_steps": 2})]
LABELS = {"sp (node)", "sp (edge)", "eap-ig (inputs, 5 steps)", "eap-ig (activations, 5 steps)",
          "eap-ig (clean-corrupted)", "eap-ig (inputs, 2 steps)"}


@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory):
    """Node SP, edge SP and four EAP-IG variants on the toy case, seeds 0 and 1, through the runner."""
    from benchmark.runner import Job, run_jobs

    out = tmp_path_factory.mktemp("variants") / "res"
    jobs = [Job(case="toy", method=m, params=p, seed=seed, n=8, out=str(out)) for seed in (0, 1) for m, p in VARIANTS]
    docs = run_jobs(jobs)
    assert [d["status"] for d in docs] == ["ok"] * 12
    return out, docs


def test_leaderboard_over_real_runs_has_a_row_per_variant_with_method_time(toy_runs):
    out, docs = toy_runs
    summary, detail = lb.collect(out)
    assert len(summary) == 6 and {r["variant"] for r in summary} == LABELS
    labels = run_labels([(d["path"], d) for d in docs])
    for row in summary:
        mine = [d for d in docs if labels[d["path"]].startswith(row["variant"] + " [")]
        assert len(mine) == 2 and row["n_cases"] == 1 and row["n_runs"] == 2
        for col, get in (("edge_auroc", lambda d: d["roc"]["edges"]["auroc"]),
                         ("node_auroc", lambda d: d["roc"]["nodes"]["auroc"]),
                         ("mean_method_seconds", lambda d: d["timing"]["method_seconds"]),
                         ("mean_setup_seconds", lambda d: d["timing"]["setup_seconds"])):
            assert row[col] == pytest.approx((get(mine[0]) + get(mine[1])) / 2), (row["variant"], col)
        # the job's total (set-up, ground truth, ROC) is not the method's time
        assert row["mean_method_seconds"] < sum(d["timing"]["seconds"] for d in mine) / 2
    assert main(["leaderboard", "--out", str(out), "--format", "csv"]) == 0
    table = list(csv.DictReader(io.StringIO((out / "leaderboard.csv").read_text())))
    assert {r["variant"] for r in table} == LABELS and "mean_method_seconds" in table[0]
    for fmt in ("md", "html"):
        assert main(["leaderboard", "--out", str(out), "--format", fmt]) == 0
        text = (out / f"leaderboard.{fmt}").read_text()
        assert all(label in text for label in LABELS)


@pytest.fixture
def figures(monkeypatch):
    """The legend texts and line styles of every plot written (read from the matplotlib figure)."""
    import evaluations.plots as plots

    seen = []
    save = plots._save

    def spy(fig, path):
        ax = fig.axes[0]
        lines = [ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]
        seen.append({"path": str(path), "labels": [ln.get_label() for ln in lines],
                     "styles": [(ln.get_linestyle(), ln.get_marker()) for ln in lines],
                     "data": [(list(ln.get_xdata()), list(ln.get_ydata())) for ln in lines]})
        return save(fig, path)

    monkeypatch.setattr(plots, "_save", spy)
    return seen


def _name(legend: str) -> str:
    return legend.split(" (AUROC")[0].split(" (CPR")[0]


def _same(a, b) -> bool:
    return len(a) == len(b) and all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b))


def _check_plot(fig):
    names = [_name(lab) for lab in fig["labels"]]
    assert len(names) == 6 and set(names) == LABELS
    assert len(set(fig["styles"])) == 6  # every curve its own line style and marker
    for i, (x, y) in enumerate(fig["data"]):  # a curve on top of earlier ones says so in its legend entry
        tied = [names[j] for j in range(i) if _same(fig["data"][j][0], x) and _same(fig["data"][j][1], y)]
        if tied:
            assert fig["labels"][i].endswith(f", tied with {tied[0]})")
        else:
            assert "tied with" not in fig["labels"][i]


def test_every_variant_has_its_own_curve_in_every_plot(toy_runs, figures, tmp_path, capsys):
    _, docs = toy_runs
    seed0 = [d["path"] for d in docs if d["seed"] == 0]
    assert main(["eval", "roc", *seed0, "--out", str(tmp_path)]) == 0
    assert main(["eval", "faithfulness", *seed0, "-n", "8", "--out", str(tmp_path)]) == 0
    assert [f["path"].rsplit("/", 1)[1] for f in figures] == ["roc_edges.png", "faithfulness.png"]
    for fig in figures:
        _check_plot(fig)


def test_identical_curves_are_told_apart(tmp_path, figures):
    from evaluations.plots import plot_faithfulness, plot_roc

    roc = {"fpr": [0.0, 0.5, 1.0], "tpr": [0.0, 1.0, 1.0], "auroc": 0.75}
    plot_roc({"a": roc, "b": dict(roc), "c": dict(roc, tpr=[0.0, 0.5, 1.0])}, tmp_path / "roc.png")
    curve = {"fractions": [0.1, 0.5, 1.0], "faithfulness": [0.2, None, 1.0], "cpr": 0.5, "cmd": 0.4}
    plot_faithfulness({"x": curve, "y": dict(curve)}, tmp_path / "f.png")
    roc_fig, f_fig = figures
    assert roc_fig["labels"] == ["a (AUROC 0.750)", "b (AUROC 0.750, tied with a)", "c (AUROC 0.750)"]
    assert len(set(roc_fig["styles"])) == 3
    assert f_fig["labels"] == ["x (CPR 0.500, CMD 0.400)", "y (CPR 0.500, CMD 0.400, tied with x)"]
    assert len(set(f_fig["styles"])) == 2
    assert (tmp_path / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
