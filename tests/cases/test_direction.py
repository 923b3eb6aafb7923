"""Known-direction cases (issue 11): data, the shipped model, direction methods, metrics, CLI."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cases import get_case
from cases.direction.data import (FINAL_POS, SEQ_LEN, is_test_text, opposite_pairs, sentiment_dataset)
from cases.direction.train import DirectionTrainConfig, evaluate_direction_model, train_direction_model

ROOT = Path(__file__).resolve().parents[2]


def cli(*args):
    """The real command line, in a subprocess."""
    return subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, capture_output=True, text=True,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": "/tmp", "PYTHONPATH": str(ROOT)})


def cli_here(capsys, *args):
    """The CLI in this process (cheaper): (exit status, stdout, stderr)."""
    from benchmark.cli import main

    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture(scope="module")
def case():
    return get_case("sentiment")


@pytest.fixture(scope="module")
def results(case, tmp_path_factory):
    """Every built-in direction method run once on the shipped case (fit split 2000, test split 1000)."""
    from benchmark.direction import DirectionJob, run_direction_jobs

    out = tmp_path_factory.mktemp("direction")
    methods = ["das", "mean-diff", "probe", "pca", "kmeans", "random-direction"]
    docs = run_direction_jobs([DirectionJob(case="sentiment", method=m, out=str(out),
                                            params={"steps": 300} if m == "das" else None) for m in methods])
    return out, {d["method"]: d for d in docs}


def test_data_is_seeded_disjoint_and_has_correlated_distractors():
    train = sentiment_dataset("train", 4000, seed=0)
    again = sentiment_dataset("train", 4000, seed=0)
    test = sentiment_dataset("test", 1000, seed=0)
    assert torch.equal(train.tokens, again.tokens)
    assert train.tokens.shape == (4000, SEQ_LEN)
    assert not {r.text for r in train.reviews} & {r.text for r in test.reviews}
    assert all(is_test_text(r.text) for r in test.reviews)
    y = train.labels.float()
    assert 0.45 < float(y.mean()) < 0.55
    # intensity agrees with the label 80% of the time, template group 75%: correlated, not identical
    agree_int = float((train.strong == train.labels).float().mean())
    agree_tmpl = float((((train.template < 2).long()) == train.labels).float().mean())
    assert 0.75 < agree_int < 0.85 and 0.70 < agree_tmpl < 0.80
    pairs = opposite_pairs(train.labels, seed=3)
    assert bool((train.labels[pairs] != train.labels).all())


@pytest.mark.parametrize("case_id,hook", [("sentiment", "blocks.1.hook_resid_pre"),
                                          ("sentiment-deep", "blocks.2.hook_resid_pre")])
def test_shipped_model_implements_the_direction(case_id, hook):
    """Held-out accuracy, IIA of the u* patch and strict accuracy of the complement patch all >= 0.99;
    the features sit where the training put them."""
    case = get_case(case_id)
    model, site = case.load_model(), case.site()
    assert site.hook_name == hook and site.position == FINAL_POS
    assert abs(float(site.vector.norm()) - 1) < 1e-5
    for v in site.distractors.values():
        assert abs(float(v @ site.vector)) < 1e-5
    test = case.dataset(1000, seed=5, split="test")
    m = evaluate_direction_model(model, test, site.vector, site.layer, case.answer_ids(), seed=5)
    assert m["accuracy"] >= 0.99 and m["iia"] >= 0.99 and m["strict_accuracy"] >= 0.99, m
    meta = case.metadata()
    assert meta["command"].startswith("python main.py train direction ")
    assert meta["command"].endswith(f"--out cases/direction/models/{case_id}/siit")
    assert meta["versions"]["transformer_lens"].startswith("3.")


def test_das_beats_mean_difference_on_the_deeper_case(tmp_path):
    from benchmark.direction import DirectionJob, run_direction_jobs

    docs = {d["method"]: d["metrics"] for d in run_direction_jobs(
        [DirectionJob(case="sentiment-deep", method=m, out=str(tmp_path), params={"steps": 300} if m == "das" else None)
         for m in ("das", "mean-diff")])}
    assert docs["das"]["abs_cos"] >= 0.95 and docs["das"]["flip_fraction"] >= 0.9, docs["das"]
    assert docs["mean-diff"]["abs_cos"] < docs["das"]["abs_cos"] - 0.1


def test_das_recovers_the_direction_and_flips_the_labels(results):
    _, docs = results
    das = docs["das"]["metrics"]
    assert das["abs_cos"] >= 0.95, das
    assert das["flip_fraction"] >= 0.90, das
    assert abs(das["D"] - 1) < 0.1
    assert abs(das["ortho_D"]) < 0.05  # what DAS found off u* does nothing: the case is strict


def test_distractor_correlated_methods_score_lower(results):
    _, docs = results
    das, md = docs["das"]["metrics"], docs["mean-diff"]["metrics"]
    # mean difference picks up the label-correlated intensity and template directions
    assert md["abs_cos"] < das["abs_cos"] - 0.1
    assert md["flip_fraction"] < das["flip_fraction"] - 0.03
    # PCA and k-means find the high-variance topic direction, not sentiment
    for name in ("pca", "kmeans"):
        m = docs[name]["metrics"]
        assert m["abs_cos"] < 0.3 and m["flip_fraction"] < 0.1, (name, m)


def test_random_direction_scores_about_zero(results):
    _, docs = results
    m = docs["random-direction"]["metrics"]
    assert m["abs_cos"] < 0.4  # d_model 48: a random |cos| is ~0.12
    assert m["flip_fraction"] < 0.05 and abs(m["D"]) < 0.05
    for d in docs.values():  # the controls every result carries
        assert d["metrics"]["ustar_flip_fraction"] >= 0.99 and abs(d["metrics"]["random_D"]) < 0.05


def test_results_record_seed_versions_and_are_deterministic(results, tmp_path):
    from benchmark.direction import DirectionJob, run_direction

    _, docs = results
    doc = docs["das"]
    assert doc["seed"] == 0 and doc["versions"]["torch"] and doc["params"] == {"steps": 300}
    runs = [run_direction(DirectionJob(case="sentiment", method="das", params={"steps": 20}, n_fit=300,
                                       out=str(tmp_path / str(i)))) for i in range(2)]
    assert runs[0]["vector"] == runs[1]["vector"] and runs[0]["params"] == {"steps": 20}
    other = run_direction(DirectionJob(case="sentiment", method="random-direction", seed=1, out=str(tmp_path)))
    assert other["vector"] != docs["random-direction"]["vector"]


def test_directional_patch_matches_running_from_the_site(case):
    """The hook-based patch of the metric and the run-from-s* path of the methods agree."""
    from benchmark.direction import build_problem
    from evaluations.direction import PatchSite, directional_patch

    problem, site, tokens = build_problem(case, None, "test", 200, seed=2)
    u = case.site().vector
    rng = torch.Generator().manual_seed(0)
    for direction in (u, torch.randn(u.shape, generator=rng)):
        d = direction / direction.norm()
        eff = directional_patch(site, tokens, problem.labels, problem.pairs, d)
        a, p = problem.acts, problem.pairs
        with torch.no_grad():
            logits = problem.patched_logits(torch.arange(len(a)), a + ((a[p] - a) @ d)[:, None] * d[None, :])
        flips = float((logits.argmax(-1) == problem.labels[p]).float().mean())
        assert abs(flips - eff.flip_fraction) < 1e-6
    zero = directional_patch(PatchSite(site.model, site.hook_name, site.position, site.answer_ids), tokens,
                             problem.labels, problem.pairs, None)
    assert zero.D == 0 and zero.flip_fraction == 0


def test_trainer_is_deterministic_and_validates(tmp_path):
    cfg = dict(d_model=16, n_heads=2, d_mlp=32, steps=6, batch_size=32, n_train=300, n_eval=64, eval_every=3)
    m1, meta1 = train_direction_model(DirectionTrainConfig(**cfg), out=tmp_path / "a")
    m2, _ = train_direction_model(DirectionTrainConfig(**cfg))
    for k, v in m1.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k]), k
    assert (tmp_path / "a" / "direction.json").is_file() and len(meta1["history"]) == 2
    with pytest.raises(ValueError, match="--layer"):
        DirectionTrainConfig(layer=2).validate()


def test_cli_run_eval_and_errors(tmp_path, capsys):
    r = cli("run", "random-direction", "-i", "sentiment", "--out", str(tmp_path), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["kind"] == "direction" and Path(doc["path"]).is_file()
    rc, out, err = cli_here(capsys, "run", "mean-diff", "-i", "sentiment", "--out", str(tmp_path))
    assert rc == 0 and "|cos|" in out, err
    rc, out, err = cli_here(capsys, "eval", "direction", str(tmp_path))
    assert rc == 0, err
    assert "mean-diff" in out and "random-direction" in out
    for ext in ("md", "csv", "html", "png"):
        assert (tmp_path / f"direction_leaderboard.{ext}").is_file()
    rc, out, _ = cli_here(capsys, "leaderboard", "--out", str(tmp_path))
    assert rc == 0 and "mean-diff" in out
    for args, needle in ((["run", "das", "-i", "3"], "direction cases only"),
                         (["run", "eap", "-i", "sentiment"], "not a direction method"),
                         (["run", "das", "-i", "sentiment", "--stepz", "3"], "unrecognized arguments"),
                         (["run", "das", "-i", "sentiment", "--steps", "0"], "must be positive"),
                         (["eval", "direction", str(tmp_path / "nope")], "no such result"),
                         (["benchmark", "--cases", "sentiment", "3", "--methods", "das"], "benchmark them separately"),
                         (["train", "direction", "--layer", "3"], "--layer")):
        rc, _, err = cli_here(capsys, *args)
        assert rc == 2, (args, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], (args, err)


def test_benchmark_runs_direction_methods_and_resumes(tmp_path, capsys):
    args = ("benchmark", "--cases", "sentiment", "--methods", "mean-diff", "random-direction", "--out", str(tmp_path),
            "--json")
    rc, out, err = cli_here(capsys, *args)
    assert rc == 0, err
    first = json.loads(out)
    assert first["jobs"] == 2 and first["failed"] == 0
    rc, out, _ = cli_here(capsys, *args, "--resume")
    assert rc == 0 and all(x["skipped"] for x in json.loads(out)["results"])


def test_user_direction_method_plugs_in(case, tmp_path, capsys, monkeypatch):
    from benchmark.direction import DirectionJob, run_direction
    from methods import REGISTRY, register

    monkeypatch.setattr(REGISTRY, "_factories", dict(REGISTRY._factories))  # the registration ends with the test

    class TrueDirection:  # an oracle: returns u*, must score |cos| 1
        def fit(self, problem):
            return case.site().vector * -2.0

    register("oracle-test", TrueDirection, replace=True)
    doc = run_direction(DirectionJob(case="sentiment", method="oracle-test", n_fit=200, out=str(tmp_path)))
    assert doc["metrics"]["abs_cos"] > 0.9999 and doc["metrics"]["flip_fraction"] >= 0.99
    rc, out, err = cli_here(capsys, "run", "tests.plugin_methods:MeanOfPositives", "-i", "sentiment", "-n", "200",
                            "--out", str(tmp_path), "--json")
    assert rc == 0, err
    assert json.loads(out)["method"] == "tests.plugin_methods:MeanOfPositives"


@pytest.mark.slow
def test_shipped_model_reproduces_from_its_command(tmp_path, case):
    """The recorded command retrains the shipped weights bit for bit (about 80 s)."""
    r = cli("train", "direction", "--out", str(tmp_path / "m"))
    assert r.returncode == 0, r.stderr
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "m" / "model.safetensors"))
    b = load_file(str(case.model_dir() / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_direction_case_implements_case(case):
    """The direction case is a Case: its ground truth is its DirectionSite, its dataset takes (n, seed, model)."""
    from cases.direction.case import DirectionSite
    from cases.plugins import _check_case
    from core.protocols import Case

    assert isinstance(case, Case) and case.kind == "direction"
    _check_case(case, "sentiment")  # the attribute checks every plug-in case passes
    truth = case.ground_truth()
    assert isinstance(truth, DirectionSite) and truth is case.site()
    a, b = case.dataset(50, 3), case.dataset(50, 3, None, split="test")
    assert torch.equal(a.tokens, b.tokens) and len(a) == 50
    assert not torch.equal(case.dataset(50, 3, split="fit").tokens, a.tokens)
    with pytest.raises(ValueError, match="has no model"):
        case.dataset(5, 0, "natural")
    assert case.resolve_model(None) == "siit" and case.model_ref().kind == "siit"


def test_direction_methods_are_a_family_of_the_one_registry():
    import methods
    from methods.directions import DAS, DirectionMethod

    for name in ("das", "mean-diff", "probe", "pca", "kmeans", "random-direction"):
        assert name in methods.method_names() and methods.method_family(name) == "direction"
        assert issubclass(methods.method_class(name), DirectionMethod)
    assert methods.method_family("eap") == "circuit" and "eap" not in methods.method_names("direction")
    assert methods.method_names("direction") == ["das", "kmeans", "mean-diff", "pca", "probe", "random-direction"]
    assert methods.method_family("tests.plugin_methods:MeanOfPositives") == "direction"  # duck-typed: has fit
    assert methods.method_family("tests.plugin_methods:SenderIndex") == "circuit"
    assert methods.is_direction_method("das") and not methods.is_direction_method("eap")
    assert not methods.is_direction_method("no-such-method")
    assert isinstance(methods.get_method("das", steps=3), DAS)
    with pytest.raises(TypeError, match="no fit"):
        methods.direction_method_class("eap")
    with pytest.raises(ValueError, match="family"):
        methods.method_names("other")


def test_direction_tables_render_through_the_shared_renderer():
    from evaluations import direction as dlb
    from evaluations.tables import csv_table, html_table, markdown_table

    rows = [{"case": "sentiment", "model": "siit", "method": "a|b", "seed": 0, "abs_cos": 0.5, "flip_fraction": None,
             "D": float("nan"), "ortho_D": 0.0, "seconds": 1.25}]
    md = dlb.to_markdown(rows)
    assert md.splitlines()[:2] == ["| method | seed | |cos| | flip | D | ortho D | seconds |", "|---|---|---|---|---|---|---|"]
    assert md.splitlines()[2] == "| a\\|b | 0 | 0.500 | nan | nan | 0.000 | 1.250 |"
    assert dlb.to_csv(rows).splitlines() == ["case,model,method,seed,abs_cos,flip_fraction,D,ortho_D,seconds",
                                             "sentiment,siit,a|b,0,0.5,,nan,0.0,1.25"]
    assert "<table border='1'><tr><th>method</th>" in dlb.to_html(rows)
    assert markdown_table([{"x": 1}], ["x"]) == "| x |\n|---|\n| 1 |\n"
    assert csv_table([{"x": None, "y": 1}], ["x", "y"], lineterminator="\r\n") == "x,y\r\n,1\r\n"
    assert html_table([{"x": "<"}], ["x"], attrs=' id="t"', caption="c") == \
        '<table id="t"><caption>c</caption><thead><tr><th scope="col">x</th></tr></thead><tbody><tr><td>&lt;</td></tr></tbody></table>'
