"""Model seeds as an axis (issue 22): further training seeds of a shipped model (``<kind>-seed<S>``),
``benchmark --model-seeds``, their provenance, the leaderboard pooling them, and shipping them."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest

from benchmark import train_queue
from benchmark.cli import main
from benchmark.leaderboard import collect
from benchmark.runner import Job, job_from_result
from cases import get_case
from core.provenance import sha256_file
from core.results import iter_results
from tests.helpers import perturbed_copy
from training import model_files, registry


def _set_seed(d: Path, seed: int) -> Path:
    """Record training seed ``seed`` in a model directory (its command too, as ``train iit`` writes it)."""
    p = d / model_files.ARGS
    meta = json.loads(p.read_text())
    words = shlex.split(meta["command"])
    words[words.index("--seed") + 1] = str(seed)
    meta.update(seed=seed, command=shlex.join(words))
    p.write_text(json.dumps(meta))
    return d


@pytest.fixture()
def seeded(tmp_path, monkeypatch):
    """Shipped models of case 3 in a temporary root: the primary SIIT model (seed 0), a second training seed
    (``siit-seed1``, other weights) and a directory whose name and recorded seed disagree (never a seed)."""
    root = tmp_path / "shipped"
    shutil.copytree(registry.model_dir("3", "siit"), root / "3" / "siit")
    _set_seed(perturbed_copy(root / "3" / "siit", root / "3" / "siit-seed1"), 1)
    _set_seed(perturbed_copy(root / "3" / "siit", root / "3" / "siit-seed2"), 5)
    monkeypatch.setattr(registry, "SHIPPED_DIR", root)
    return root


def test_model_seeds_are_found_by_their_recorded_training_seed(seeded):
    assert registry.model_seeds("3", "siit") == {0: seeded / "3" / "siit", 1: seeded / "3" / "siit-seed1"}
    assert registry.model_dir("3", "siit", 1) == seeded / "3" / "siit-seed1"
    assert registry.model_dir("3", "siit", 5) is None and registry.model_dir("3", "siit", 2) is None
    assert registry.model_seeds("3", "iit") == {}
    case = get_case("3")
    assert case.model_seeds("siit") == [0, 1] and case.model_seeds("tracr") == []
    ref = case.model_ref("siit", model_seed=1)
    assert ref.source == "shipped" and ref.extra["model_seed"] == 1
    assert ref.sha256 == sha256_file(seeded / "3" / "siit-seed1" / "model.safetensors")
    assert case.model_ref("siit").extra["model_seed"] == 0  # the primary records its seed too


def test_benchmark_runs_every_model_seed_and_the_leaderboard_pools_them(seeded, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["benchmark", "--cases", "3", "--model", "siit", "--model-seeds", "0", "1", "--methods", "eap",
                 "random", "-n", "20", "--out", str(out)]) == 0
    found = list(iter_results(out))
    docs = [d for _, d in found]
    assert len(docs) == 4 and {d["status"] for d in docs} == {"ok"}
    by_seed = {(d["method"], d["provenance"]["model"]["model_seed"]): d for d in docs}
    assert set(by_seed) == {(m, s) for m in ("eap", "random") for s in (0, 1)}
    sha = {s: by_seed["eap", s]["provenance"]["model"]["weights_sha256"] for s in (0, 1)}
    assert sha[0] == sha256_file(seeded / "3" / "siit" / "model.safetensors") != sha[1]
    assert by_seed["eap", 0]["scores"] != by_seed["eap", 1]["scores"]  # another model, other scores
    # seed 0 is the primary model: the same run as without --model-seeds (so --resume shares it)
    assert by_seed["eap", 0]["run_id"] == Job(case="3", method="eap", model="siit", n=20).run_id
    assert by_seed["eap", 1]["run_id"] != by_seed["eap", 0]["run_id"]
    # both seeds sit under the shipped kind: one variant, two runs of one case
    assert {Path(p).parts[-4] for p, _ in found} == {"siit"}
    summary, detail = collect(out)
    eap = next(r for r in summary if r["method"] == "eap")
    assert (eap["model"], eap["n_cases"], eap["n_runs"]) == ("siit", 1, 2)
    mean = sum(by_seed["eap", s]["roc"]["edges"]["auroc"] for s in (0, 1)) / 2
    assert eap["edge_auroc"] == pytest.approx(mean)
    assert sorted(r["model_seed"] for r in detail if r["method"] == "eap") == [0, 1]
    # a result rebuilds its own seed's model (eval faithfulness, study)
    job = job_from_result(by_seed["eap", 1])
    assert job.model_seed == 1 and job.model_ref().sha256 == sha[1] and job.run_id == by_seed["eap", 1]["run_id"]


@pytest.mark.parametrize("argv, needle", [
    (["--model", "siit", "--model-seeds", "2"], "no siit model of training seed 2 (its siit model seeds: 0, 1"),
    (["--model-seeds", "1"], "the compiled tracr model has no training seeds"),
    (["--model", "iit", "--model-seeds", "0"], "case 3 has no model 'iit'; it has tracr, siit"),
])
def test_a_model_seed_that_is_not_shipped_exits_2_before_any_work(seeded, tmp_path, capsys, argv, needle):
    out = tmp_path / "out"
    assert main(["benchmark", "--cases", "3", "--methods", "random", "-n", "8", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and needle in err, err
    assert not out.exists()


def test_model_seeds_with_model_dir_or_on_a_case_without_seeds_exit_2(seeded, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["benchmark", "--cases", "3", "--methods", "random", "--model-seeds", "0", "--model-dir",
                 str(seeded / "3" / "siit"), "--out", str(out)]) == 2
    assert "--model-dir" in capsys.readouterr().err
    assert main(["benchmark", "--cases", "toy", "--methods", "random", "--model-seeds", "0", "--out", str(out)]) == 2
    assert "case toy ships no trained model seeds" in capsys.readouterr().err
    assert not out.exists()


def test_ship_puts_a_same_recipe_seed_beside_the_shipped_model(tmp_path):
    to, queue = tmp_path / "to", tmp_path / "queue"
    shutil.copytree(registry.model_dir("3", "siit"), to / "3" / "siit")
    primary = json.loads((to / "3" / "siit" / model_files.ARGS).read_text())
    assert primary["seed"] == 0
    # the same recipe with seed 1 (and another time cap and output: not part of the recipe)
    seed1 = _set_seed(perturbed_copy(to / "3" / "siit", queue / "3" / "siit"), 1)
    meta = json.loads((seed1 / model_files.ARGS).read_text())
    words = shlex.split(meta["command"])
    words[words.index("--out") + 1] = str(queue)
    meta["command"] = shlex.join(words + ["--max-seconds", "999"])
    (seed1 / model_files.ARGS).write_text(json.dumps(meta))
    assert train_queue.recipe_of(meta["command"]) == train_queue.recipe_of(primary["command"])
    assert train_queue.ship(queue, to) == [to / "3" / "siit-seed1"]
    assert registry.training_seed(to / "3" / "siit-seed1") == 1
    assert train_queue.ship(queue, to) == []  # never overwritten
    # another recipe (another learning rate) is no seed of the shipped model; nor is the shipped seed again
    shutil.rmtree(to / "3" / "siit-seed1")
    words = shlex.split(meta["command"])
    words[words.index("--lr") + 1] = "1e-3"
    (seed1 / model_files.ARGS).write_text(json.dumps({**meta, "command": shlex.join(words)}))
    assert train_queue.ship(queue, to) == []
    _set_seed(seed1, 0)
    assert train_queue.ship(queue, to) == []


def test_seed_commands_are_the_shipped_command_with_another_seed(tmp_path, capsys):
    jobs = train_queue.seed_commands(["3"], "siit", [1, 2], tmp_path, max_seconds=60)
    shipped = shlex.split(json.loads((registry.model_dir("3", "siit") / model_files.ARGS).read_text())["command"])
    assert [root for root, _ in jobs] == [tmp_path / "seed1", tmp_path / "seed2"]
    for (root, argv), seed in zip(jobs, (1, 2)):
        assert argv[:2] == ["train", "iit"] and argv[argv.index("--seed") + 1] == str(seed)
        assert argv[argv.index("--out") + 1] == str(root) and argv[argv.index("--max-seconds") + 1] == "60"
        assert train_queue.recipe_of(shlex.join(["python", "main.py", *argv])) == train_queue.recipe_of(
            shlex.join(shipped))
    with pytest.raises(ValueError, match="case 2 ships no siit model"):
        train_queue.seed_commands(["2"], "siit", [1], tmp_path)
    assert train_queue.main(["seeds", str(tmp_path), "--cases", "3", "--seeds", "1", "--dry-run"]) == 0
    assert "--seed 1" in capsys.readouterr().out
    assert train_queue.main(["seeds", str(tmp_path), "--cases", "3"]) == 2
