"""The training queue (``train iit --cases ... --resume``): ladder, bar, summary, exclusions, SIGKILL + resume."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmark import train_queue as q
from training import model_files

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]
TINY = ["--num-samples", "200", "--eval-pairs", "64", "--min-steps-per-epoch", "1", "--include-shipped"]


def _args(*argv):
    from benchmark.cli import Parser
    from benchmark.commands.train import add_train_iit_arguments
    return add_train_iit_arguments(Parser(prog="train iit")).parse_args(list(argv))


def _run(*argv) -> int:
    from benchmark.commands.train import run_train_iit
    return run_train_iit(_args(*argv))


def _summary(out: Path) -> dict[tuple[str, str], dict]:
    with open(out / "summary.csv") as f:
        return {(r["case"], r["kind"]): r for r in csv.DictReader(f)}


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_bad_queue_flags_are_usage_errors(tmp_path):
    from benchmark.cli import UsageError
    for argv, msg in ((["--cases", "3", "--lr", "0.1"], "--lr"), (["--cases", "3", "-i", "3"], "not both"),
                      (["--cases", "nope"], "nope"), (["--cases", "3", "--workers", "0"], "--workers"),
                      (["--cases", "3", "--bar", "120"], "--bar"),
                      (["--cases", "3", "--kinds", "iit", "--model-kind", "iit"], "--kinds"),
                      (["--kinds", "iit", "-i", "3"], "--kinds")):
        with pytest.raises(UsageError, match=msg):
            _run(*argv, "--out", str(tmp_path))
    assert not any(tmp_path.iterdir())  # nothing written before the error
    rc = subprocess.run([sys.executable, "main.py", "train", "iit", "--cases", "3", "--seed", "3", "--out",
                         str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert rc.returncode == 2 and "--seed" in rc.stderr and "Traceback" not in rc.stderr


def test_ladder_escalates_records_attempts_and_never_ships_below_bar(tmp_path):
    out = tmp_path / "q"
    assert _run("--cases", "33", "--kinds", "siit", "iit", "--epochs", "1", *TINY, "--bar", "100",
                "--recipes", "shipped", "wide", "--out", str(out)) == 0
    assert not (out / "33" / "siit").exists()          # below the bar: not a model of the queue
    tried = sorted(p.name for p in (out / q.ATTEMPTS / "33" / "siit").iterdir())
    assert tried == ["shipped", "wide"]
    wide = model_files.read_metadata(out / q.ATTEMPTS / "33" / "siit" / "wide")
    assert wide["recipe"]["name"] == "wide" and wide["recipe"]["rung"] == 2
    assert [a["recipe"] for a in wide["recipe"]["previous_attempts"]] == ["shipped"]
    first = model_files.read_metadata(out / q.ATTEMPTS / "33" / "siit" / "shipped")
    assert wide["ll_config"]["d_model"] == 2 * first["ll_config"]["d_model"]
    assert "--compression-ratio" in wide["command"] and "-i 33" in wide["command"]
    rows = _summary(out)
    assert rows["33", "siit"]["status"] == "below bar" and rows["33", "siit"]["attempts"] == "2"
    assert rows["33", "iit"]["status"] == "needs siit"  # baselines wait for a SIIT model at the bar
    assert not (out / q.ATTEMPTS / "33" / "iit").exists()


def test_many_classes_at_a_narrow_ll_try_wide_first(tmp_path):
    # 41: 11 output classes through InterpBench's d_model 4; 66: 6 classes at d_model 4; 3: numerical
    rest = ["wide-anneal", "wide-anneal-seed1", "wider-anneal", "long", "wide-long"]
    assert [r.name for r in q.ladder("siit", cid="41")] == ["wide", "shipped", "seed1", *rest]
    assert [r.name for r in q.ladder("siit", cid="66")] == ["shipped", "seed1", "wide", *rest]
    assert [r.name for r in q.ladder("siit", cid="3")][0] == "shipped"
    assert [r.name for r in q.ladder("iit", cid="41")] == ["shipped", "seed1", "long", "anneal"]  # only SIIT is reordered
    out = tmp_path / "q"
    assert _run("--cases", "41", "--kinds", "siit", "--epochs", "1", *TINY, "--bar", "100",
                "--recipes", "shipped", "wide", "--out", str(out)) == 0
    shipped = model_files.read_metadata(out / q.ATTEMPTS / "41" / "siit" / "shipped")
    assert [a["recipe"] for a in shipped["recipe"]["previous_attempts"]] == ["wide"]
    assert shipped["recipe"]["rung"] == 1 and shipped["recipe"]["ladder"][0] == "wide"


def test_baselines_train_at_the_siit_models_width(tmp_path):
    # 41's shipped SIIT model is the wide rung (d_model 8, not InterpBench's 4): its natural control
    # must be the same architecture, or the methods would compare different graphs
    siit = model_files.read_metadata(q.SHIPPED_DIR / "41" / "siit")
    assert siit["recipe"]["widen"] == 2.0 and q.siit_widen("41", tmp_path) == 2.0
    assert q.siit_widen("3", tmp_path) == 1.0
    out = tmp_path / "q"
    assert _run("--cases", "41", "--kinds", "natural", "--epochs", "1", *TINY, "--bar", "100",
                "--recipes", "shipped", "--out", str(out)) == 0
    nat = model_files.read_metadata(out / q.ATTEMPTS / "41" / "natural" / "shipped")
    assert nat["ll_config"]["d_model"] == siit["ll_config"]["d_model"] == 8
    assert nat["recipe"]["widen"] == 2.0 and "--compression-ratio" in nat["command"]


def test_widened_ratio_doubles_the_width():
    from cases import get_case
    from training.correspondence import ll_size
    for cid, attr in (("33", "d_head"), ("26", "d_model")):  # 26 compresses the residual stream
        hl = get_case(cid).compiled_model().config
        assert getattr(ll_size(cid, hl, ratio=float(q.widened_ratio(cid, 2))), attr) == 2 * getattr(ll_size(cid, hl), attr)


def test_exclude_file_and_shipped_are_skipped(tmp_path):
    out, ex = tmp_path / "q", tmp_path / "ex.txt"
    ex.write_text("# parity\n33, 3\n")
    assert _run("--cases", "3", "33", "--kinds", "natural", "--epochs", "1", *TINY, "--exclude-file", str(ex),
                "--out", str(out)) == 0
    rows = _summary(out)
    assert rows["3", "natural"]["status"] == rows["33", "natural"]["status"] == "excluded"
    assert not (out / q.ATTEMPTS).exists()
    # without --include-shipped a shipped model counts as done
    assert _run("--cases", "3", "--kinds", "natural", "--epochs", "1", "--out", str(out)) == 0
    assert _summary(out)["3", "natural"]["status"] == "shipped" and not (out / "3").exists()


def test_queue_survives_sigkill_and_resumes(tmp_path, capsys):
    """SIGKILL while the second case trains: the first model stays byte for byte, --resume finishes the
    second from its checkpoint, and the summary lists both."""
    out = tmp_path / "q"
    argv = ["--cases", "3", "33", "--kinds", "natural", "--epochs", "4", *TINY, "--bar", "0", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "main.py", "train", "iit", *argv], cwd=ROOT, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = out / q.ATTEMPTS / "33" / "natural" / "shipped" / "checkpoint.pt"
    deadline = time.monotonic() + 240
    try:
        while not ckpt.exists():
            assert proc.poll() is None, "the queue ended before the second case started"
            assert time.monotonic() < deadline, "the second case never started"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    first = out / "3" / "natural"
    assert q.finished_meta(first) is not None
    before = _files(first)
    assert not (out / "33" / "natural").exists() and ckpt.exists()
    with pytest.raises(Exception, match="--resume"):   # an unfinished attempt needs --resume
        _run(*argv)
    assert _run(*argv, "--resume") == 0
    assert "resumed from" in capsys.readouterr().err
    assert _files(first) == before
    meta = q.finished_meta(out / "33" / "natural")
    assert meta is not None and meta["recipe"]["name"] == "shipped" and not ckpt.exists()
    assert meta["epochs_run"] == 4 and [r["epoch"] for r in meta["history"]] == [2, 4]  # the evaluated epochs
    rows = _summary(out)
    assert rows["3", "natural"]["status"] == rows["33", "natural"]["status"] == "trained"
    assert json.loads((first / model_files.ARGS).read_text())["recipe"]["queue_command"]


def test_trim_history_keeps_the_evaluated_epochs():
    from benchmark.train import trim_history
    hist = [{"epoch": e, "lr": 1e-3 / 3, "train_iit_loss": 0.123456789, **({"val_iia": 0.987654321} if e % 2 == 0 else {}),
             "seconds": 1.0 * e} for e in range(1, 8)]
    got = trim_history(hist)
    assert [r["epoch"] for r in got] == [2, 4, 6, 7]
    assert got[0]["val_iia"] == 0.987654 and got[0]["train_iit_loss"] == 0.123457 and got[-1]["seconds"] == 7.0


def test_ship_copies_models_at_the_bar_only(tmp_path):
    out, to = tmp_path / "q", tmp_path / "shipped"
    assert _run("--cases", "33", "3", "--kinds", "natural", "--epochs", "1", *TINY, "--bar", "0", "--out", str(out)) == 0
    meta = q.finished_meta(out / "33" / "natural")
    bar = 100 * meta["metrics"]["test"]["accuracy"]
    other = 100 * q.finished_meta(out / "3" / "natural")["metrics"]["test"]["accuracy"]
    got = q.ship(out, to, bar=bar)
    assert (to / "33" / "natural") in got and ((to / "3" / "natural") in got) == (other >= bar)
    assert model_files.read_metadata(to / "33" / "natural")["history_kept"]
    assert _files(to / "33" / "natural")["model.safetensors"] == _files(out / "33" / "natural")["model.safetensors"]
    assert q.ship(out, to, bar=0) == ([] if other >= bar else [to / "3" / "natural"])  # never overwrites


def test_ship_recheck_refuses_a_model_below_the_bar_on_the_shipped_test(tmp_path, monkeypatch):
    out, to = tmp_path / "q", tmp_path / "shipped"
    assert _run("--cases", "33", "--kinds", "natural", "--epochs", "1", *TINY, "--bar", "0", "--out", str(out)) == 0
    d = out / "33" / "natural"
    real = q.recheck_metrics(d, "33", "natural")  # the shipped-model test's own evaluation, really run
    assert 0.0 <= real["accuracy"] <= 1.0
    bar = 100 * q.finished_meta(d)["metrics"]["test"]["accuracy"]
    logged = []
    monkeypatch.setattr(q, "recheck_metrics", lambda *a: {**real, "accuracy": bar / 100 - 0.002})
    assert q.ship(out, to, bar=bar, recheck=True, log=logged.append) == [] and not (to / "33").exists()
    assert "below the bar on the shipped-model test" in logged[0] and "accuracy" in logged[0]
    monkeypatch.setattr(q, "recheck_metrics", lambda *a: {**real, "accuracy": bar / 100})
    assert q.ship(out, to, bar=bar, recheck=True) == [to / "33" / "natural"]


def test_queue_keeps_an_attempt_below_the_bar_on_the_shipped_test(tmp_path, monkeypatch):
    # at the bar on its own test pairs, below it on the shipped-model test's evaluation: not a model, it
    # stays an attempt (a capped one keeps its checkpoint, so a larger cap continues it)
    out = tmp_path / "q"
    monkeypatch.setattr(q, "recheck_metrics", lambda d, cid, kind: {"accuracy": 0.005})
    assert _run("--cases", "33", "--kinds", "natural", "--epochs", "1", *TINY, "--bar", "1",
                "--recipes", "shipped", "--out", str(out)) == 0
    assert not (out / "33" / "natural").exists()
    adir = out / q.ATTEMPTS / "33" / "natural" / "shipped"
    assert q.meets_bar(q.finished_meta(adir), "natural", 1)
    assert _summary(out)["33", "natural"]["status"] == "below bar"
    monkeypatch.undo()  # the real evaluation: at bar 1% it passes, and the attempt becomes the model
    assert _run("--cases", "33", "--kinds", "natural", "--epochs", "1", *TINY, "--bar", "1",
                "--recipes", "shipped", "--out", str(out), "--resume") == 0
    assert (out / "33" / "natural").exists() and _summary(out)["33", "natural"]["status"] == "trained"


def test_max_seconds_caps_a_run(tmp_path):
    assert _run("-i", "33", "--model-kind", "natural", "--epochs", "50", "--num-samples", "200", "--eval-pairs", "64",
                "--max-seconds", "1e-6", "--out", str(tmp_path), "--no-progress") == 0
    meta = model_files.read_metadata(tmp_path / "33" / "natural")
    assert meta["epochs_run"] == 1 and meta["time_capped"] and meta["max_seconds"] == 1e-6


def test_a_larger_cap_continues_a_capped_attempt(tmp_path):
    out = tmp_path / "q"
    common = ["--cases", "33", "--kinds", "natural", "--epochs", "3", *TINY, "--bar", "100", "--recipes", "shipped",
              "--out", str(out)]
    assert _run(*common, "--max-seconds", "1e-6") == 0
    d = out / q.ATTEMPTS / "33" / "natural" / "shipped"
    meta = q.finished_meta(d)
    assert meta["epochs_run"] == 1 and meta["time_capped"] and (d / "checkpoint.pt").exists()
    assert _run(*common, "--max-seconds", "1e-6", "--resume") == 0          # the same cap: nothing to do
    assert q.finished_meta(d)["epochs_run"] == 1
    assert _run(*common, "--max-seconds", "1000", "--resume") == 0          # a larger one continues it
    meta = q.finished_meta(d)
    assert meta["epochs_run"] == 3 and not meta["time_capped"] and not (d / "checkpoint.pt").exists()
    assert _summary(out)["33", "natural"]["status"] == "below bar"
