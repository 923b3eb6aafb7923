"""Hostile inputs (issue 27): files a user is handed run no code; broken files and killed runs leave
nothing wrong behind. Every test here failed on 907489c."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cases.siit import model_files

ROOT = Path(__file__).resolve().parent.parent
torch.set_num_threads(1)


def cli(*argv, cwd=None, env=None, timeout=600):
    """``python main.py ARGV`` in a subprocess: (exit status, stdout, stderr)."""
    e = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **(env or {}))
    p = subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, argv)], capture_output=True, text=True,
                       cwd=cwd, env=e, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def main_(*argv):
    """The CLI in this process (fast): its exit status."""
    from benchmark.cli import main
    return main([str(a) for a in argv])


def one_line_error(err: str) -> bool:
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("circuit-bench: error:")]
    return len(lines) == 1 and "Traceback" not in err


# ---------------------------------------------------------------------------------------------------
# 1. no code runs from data files
# ---------------------------------------------------------------------------------------------------

class _Planted:
    """Unpickling this writes a marker file: what a hostile checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


def plant_checkpoint(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": _Planted(marker), "config": {}}, path)
    return path


def test_planted_checkpoint_never_runs_code(tmp_path):
    from cases.siit.trainer import load_checkpoint_file

    marker = tmp_path / "pwned"
    ck = plant_checkpoint(tmp_path / "ck.pt", marker)
    with pytest.raises(ValueError, match="ck.pt.*not a circuit-bench trainer checkpoint"):
        load_checkpoint_file(ck)
    assert not marker.exists()
    # a plain pickle (not a torch zip) too
    ck2 = tmp_path / "plain.pt"
    ck2.write_bytes(pickle.dumps(_Planted(marker)))
    with pytest.raises(ValueError, match="plain.pt"):
        load_checkpoint_file(ck2)
    assert not marker.exists()
    # IOI's export of a checkpoint
    from cases.ioi.train import export_checkpoint
    with pytest.raises(ValueError, match="ck.pt"):
        export_checkpoint(ck, tmp_path / "exported")
    assert not marker.exists() and not (tmp_path / "exported").exists()


def test_planted_checkpoint_cli_train_iit_resume(tmp_path):
    marker = tmp_path / "pwned"
    plant_checkpoint(tmp_path / "out" / "3" / "iit" / "checkpoint.pt", marker)
    rc, out, err = cli("train", "iit", "-i", "3", "--model-kind", "iit", "--out", tmp_path / "out", "--resume",
                       "--epochs", "1", "--num-samples", "100", "--no-progress")
    assert rc == 2 and one_line_error(err), err
    assert "checkpoint.pt" in err and not marker.exists()


def test_planted_checkpoint_cli_train_ioi(tmp_path):
    marker = tmp_path / "pwned"
    ck = plant_checkpoint(tmp_path / "ck.pt", marker)
    rc, out, err = cli("train", "ioi", "--checkpoint", ck, "--out", tmp_path / "m", "--epochs", "1",
                       "--n-train", "64", "--n-eval", "32")
    assert rc == 2 and one_line_error(err), err
    assert "ck.pt" in err and not marker.exists()


def _tiny(epochs, seed=0):
    from cases import get_case
    from cases.siit.tracr_setup import build_ll, tracr_data, tracr_setup
    from cases.siit.trainer import SIITTrainer, TrainConfig

    case = get_case("3")
    setup = tracr_setup(case, seed=0)
    data = tracr_data(case, 300, seed=0)
    torch.manual_seed(seed)
    ll = build_ll(setup.ll_config)
    cfg = TrainConfig(epochs=epochs, batch_size=64, eval_pairs=64, seed=seed, early_stop=False, lr=3e-3)
    return SIITTrainer(setup.hl, ll, setup.corr, data, setup.output_type, cfg)


def test_checkpoint_loads_weights_only_and_resume_is_bit_for_bit(tmp_path):
    """What the trainer saves loads under weights_only=True, and 1 epoch + resume + 1 epoch gives
    exactly the weights, optimizer state and history of 2 epochs in one go."""
    straight = _tiny(2)
    straight.fit(progress=False)
    first = _tiny(2)
    first.cfg.epochs = 1
    first.fit(checkpoint=tmp_path / "ck.pt", progress=False)
    st = torch.load(tmp_path / "ck.pt", weights_only=True)  # raises if anything but tensors/plain types
    assert st["epoch"] == 1
    resumed = _tiny(2)
    resumed.load_checkpoint(tmp_path / "ck.pt")
    resumed.fit(progress=False)
    assert resumed.epoch == straight.epoch == 2
    for (k, p), (_, q) in zip(straight.ll.state_dict().items(), resumed.ll.state_dict().items()):
        assert torch.equal(p, q), k
    so, ro = straight.opt.state_dict()["state"], resumed.opt.state_dict()["state"]
    assert all(torch.equal(so[i]["exp_avg_sq"], ro[i]["exp_avg_sq"]) for i in so)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in straight.history]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in resumed.history]


def _copy_model_dir(tmp_path) -> Path:
    src = ROOT / "cases" / "siit" / "models" / "11" / "siit"
    d = tmp_path / "models" / "11" / "siit"
    shutil.copytree(src, d)
    return d


def _edit_config(d: Path, **changes):
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(changes)
    (d / "config.json").write_text(json.dumps(cfg))


def _plant_tokenizer_code(tmp_path: Path, marker: Path) -> Path:
    """A 'tokenizer' directory whose remote code writes a marker when imported."""
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "config.json").write_text(json.dumps({"model_type": "x", "auto_map": {"AutoTokenizer": ["evil.Tok", None]}}))
    (tok / "tokenizer_config.json").write_text(json.dumps({"auto_map": {"AutoTokenizer": ["evil.Tok", None]}}))
    (tok / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('code ran')\nclass Tok: pass\n")
    return tok


@pytest.mark.parametrize("field,value", [("tokenizer_name", "TOK"), ("trust_remote_code", True),
                                         ("load_in_4bit", True), ("from_checkpoint", True),
                                         ("quantization_method", "gptq"), ("evil_field", 1),
                                         ("d_model", "12"), ("d_model", 10 ** 30), ("n_layers", -1),
                                         ("eps", None), ("act_fn", "os.system"), ("use_attn_result", "yes")])
def test_model_config_allow_list(tmp_path, field, value):
    marker = tmp_path / "pwned"
    tok = _plant_tokenizer_code(tmp_path, marker)
    d = _copy_model_dir(tmp_path)
    changes = {field: str(tok) if value == "TOK" else value}
    if field == "tokenizer_name":
        changes["trust_remote_code"] = True
    _edit_config(d, **changes)
    with pytest.raises(ValueError) as info:
        model_files.load_model_dir(d)
    msg = str(info.value)
    assert "config.json" in msg and "\n" not in msg and ("'" + (field if field != "tokenizer_name" else "")) in msg
    assert not marker.exists()


def test_shipped_configs_pass_the_allow_list():
    configs = sorted(ROOT.glob("cases/**/models/**/config.json"))
    assert len(configs) > 20
    for p in configs:
        model_files.read_config(p)


def test_model_config_cli_run_never_imports_code(tmp_path):
    """The audit's attack: a model directory (through CIRCUIT_BENCH_MODELS) whose config names a
    tokenizer directory with remote code: a recorded error naming the file and field, no code run."""
    marker = tmp_path / "pwned"
    tok = _plant_tokenizer_code(tmp_path, marker)
    d = _copy_model_dir(tmp_path)
    _edit_config(d, tokenizer_name=str(tok), trust_remote_code=True)
    rc, out, err = cli("run", "eap", "-i", "11", "--model", "siit", "--out", tmp_path / "res", "-n", "8",
                       env={"CIRCUIT_BENCH_MODELS": str(tmp_path / "models")})
    assert not marker.exists()
    assert rc != 0 and "Traceback" not in err
    assert "config.json" in (out + err) and "tokenizer_name" in (out + err)


def test_direction_and_tracr_configs_checked(tmp_path):
    from cases.direction.case import load_direction_model

    src = ROOT / "cases" / "direction" / "models" / "sentiment" / "siit"
    d = tmp_path / "dir"
    shutil.copytree(src, d)
    _edit_config(d, trust_remote_code=True)
    with pytest.raises(ValueError, match="config.json.*trust_remote_code"):
        load_direction_model(d)
    from cases.tracr.compiled import CompiledModel, META_FILE
    from cases import get_case
    cm = get_case("3").compiled_model()
    cm.save(tmp_path / "tr")
    meta = json.loads((tmp_path / "tr" / META_FILE).read_text())
    meta["config"]["tokenizer_name"] = "gpt2"
    (tmp_path / "tr" / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="tokenizer_name"):
        CompiledModel.load(tmp_path / "tr")
