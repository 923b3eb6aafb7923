"""The hostile-input audit of issue 27, rerunnable: kill -9 at random points, concurrent runs, and 100+
bad inputs (result files, model configs, checkpoints, command lines). Prints one JSON summary (and
writes it to WORK/audit.json); every count under "defects" should be 0.

    PYTHONPATH=. python benchmarks/hostile_audit.py --work /tmp/hostile-audit [--kills 8] [--subprocess]

Counts: tracebacks (any "Traceback" on stderr of a command given bad input), code executions (marker
files written by planted pickles / remote tokenizer code), writes outside --out (new files anywhere
under WORK but the command's --out), orphans (processes of a SIGKILLed benchmark alive 5 s later),
results written after the parent died, corrupt results (result files that fail validation), jobs
computed twice by two concurrent --resume runs, jobs left unfinished after a final --resume.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmark.cli import main as cli_main
from benchmark.hostile import (
    TAKES_OUT,
    bad_command_lines,
    bad_configs,
    bad_result_docs,
    encode,
)
from core import results
from training import model_files
from training.trainer import load_checkpoint_file

ROOT = Path(__file__).resolve().parent.parent

CASES = ["toy", "3", "4", "6", "7"]
SLOW = "benchmark.hostile:Slow"


def env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **extra}


def session_processes(sid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
            pids.append(int(stat.parent.name))
    return pids


def results_under(out: Path) -> set[str]:
    return {str(p) for p in out.rglob("result.json")} if out.exists() else set()


def benchmark_argv(out: Path, workers: int, resume: bool = True) -> list[str]:
    return [sys.executable, str(ROOT / "main.py"), "benchmark", "--cases", *CASES, "--methods", SLOW, "random",
            "--workers", str(workers), "--out", str(out), "-n", "8"] + (["--resume"] if resume else [])


# ---------------------------------------------------------------------------------------------------

def audit_kills(work: Path, kills: int, rng: random.Random) -> dict:
    out = work / "kill" / "res"
    ref = work / "kill" / "reference"
    subprocess.run(benchmark_argv(ref, 1, resume=False), env=env(HOSTILE_SLEEP="0"), cwd=ROOT,
                   capture_output=True, check=True)
    counts = {"kills": 0, "orphans": 0, "written_after_parent_died": 0, "corrupt_results": 0, "tracebacks": 0}
    for i in range(kills):
        workers = 2 if i % 2 else 1
        p = subprocess.Popen(benchmark_argv(out, workers), env=env(HOSTILE_SLEEP="1"), cwd=ROOT,
                             start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(3, 25))
        if p.poll() is not None:  # finished before the kill: start the next round from scratch
            shutil.rmtree(out, ignore_errors=True)
            continue
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        err = p.stderr.read().decode(errors="replace")
        counts["tracebacks"] += "Traceback" in err
        counts["kills"] += 1
        at_kill = results_under(out)
        time.sleep(5)
        alive = session_processes(p.pid)
        counts["orphans"] += len(alive)
        for pid in alive:
            os.kill(pid, signal.SIGKILL)
        counts["written_after_parent_died"] += len(results_under(out) - at_kill)
        for path in results_under(out):
            try:
                results.load_result(path)
            except ValueError:
                counts["corrupt_results"] += 1
    final = subprocess.run(benchmark_argv(out, 2), env=env(HOSTILE_SLEEP="0"), cwd=ROOT, capture_output=True,
                           text=True)
    counts["tracebacks"] += "Traceback" in final.stderr
    docs = {Path(p).relative_to(out): results.load_result(p) for p in results_under(out)}
    refs = {Path(p).relative_to(ref): results.load_result(p) for p in results_under(ref)}
    counts["final_resume_exit"] = final.returncode
    counts["unfinished_after_resume"] = len(set(refs) - set(docs)) + sum(d["status"] != "ok" for d in docs.values())
    counts["differ_from_clean_run"] = sum(docs.get(k, {}).get("scores") != v.get("scores") for k, v in refs.items())
    counts["locks_left"] = len(list(out.rglob("lock")))
    return counts


def audit_concurrent(work: Path, rounds: int) -> dict:
    counts = {"rounds": rounds, "jobs": 0, "computed": 0, "computed_twice": 0, "nonzero_exits": 0}
    for r in range(rounds):
        out, log = work / f"concurrent{r}" / "res", work / f"concurrent{r}" / "computed.log"
        out.parent.mkdir(parents=True, exist_ok=True)
        e = env(HOSTILE_SLEEP="1", HOSTILE_LOG=str(log))
        procs = [subprocess.Popen(benchmark_argv(out, 1), env=e, cwd=ROOT, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for _ in range(2)]
        counts["nonzero_exits"] += sum(p.wait() != 0 for p in procs)
        lines = log.read_text().splitlines() if log.exists() else []
        counts["jobs"] += len(CASES)
        counts["computed"] += len(lines)
        counts["computed_twice"] += len(lines) - len({ln.split()[0] for ln in lines})
    return counts


# ---------------------------------------------------------------------------------------------------

class Tally:
    def __init__(self, work: Path, markers: Path):
        self.work, self.markers = work, markers
        self.inputs = 0
        self.tracebacks = 0
        self.outside = 0
        self.wrong_exit = 0
        self.examples: list[str] = []

    def snapshot(self, out: Path | None) -> set[Path]:
        return {p for p in self.work.rglob("*") if out is None or (p != out and out not in p.parents)}

    def cli(self, argv: list, expect: set[int], out: Path | None = None, subprocess_: bool = False,
            extra_env: dict | None = None, label: str = "") -> None:
        before = self.snapshot(out)
        if subprocess_:
            p = subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, argv)], capture_output=True,
                               text=True, env=env(**(extra_env or {})), cwd=self.work)
            rc, err = p.returncode, p.stderr
        else:
            buf_err, buf_out = io.StringIO(), io.StringIO()
            old = {k: os.environ.get(k) for k in (extra_env or {})}
            os.environ.update(extra_env or {})
            try:
                with contextlib.redirect_stderr(buf_err), contextlib.redirect_stdout(buf_out):
                    try:
                        rc = cli_main([str(a) for a in argv])
                    except BaseException as exc:  # noqa: BLE001 -- an escaped exception is a finding
                        import traceback
                        traceback.print_exc()
                        rc = f"raised {type(exc).__name__}"
            finally:
                for k, v in old.items():
                    os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
            err = buf_err.getvalue()
        self.inputs += 1
        new = self.snapshot(out) - before
        new = {p for p in new if not p.is_relative_to(self.markers) and not (out is not None and p in out.parents)}
        bad = []
        if "Traceback" in err:
            self.tracebacks += 1
            bad.append("traceback")
        if new:
            self.outside += 1
            bad.append(f"wrote outside --out: {sorted(map(str, new))[:3]}")
        if rc not in expect:
            self.wrong_exit += 1
            bad.append(f"exit {rc}")
        if bad and len(self.examples) < 20:
            self.examples.append(f"{label or argv}: {'; '.join(bad)}: {err.strip().splitlines()[-1:] }")


def audit_inputs(work: Path, use_subprocess: bool) -> dict:
    import torch

    markers = work / "markers"
    markers.mkdir(parents=True, exist_ok=True)
    t = Tally(work, markers)
    counts: dict = {}

    # result files: a tree with one good result and every mutation; then each bad file on its own
    good_out = work / "inputs" / "good"
    t.cli(["run", "random", "-i", "toy", "--out", good_out, "-n", "8"], {0}, out=good_out)
    (good,) = list(good_out.rglob("result.json"))
    gdoc = json.loads(good.read_text())
    table = bad_result_docs(gdoc)
    tree = work / "inputs" / "results"
    shutil.copytree(good_out, tree)
    files = []
    for i, content in enumerate(table.values()):
        p = tree / "toy" / "toy" / "random" / f"run-bad{i:03d}" / "result.json"
        p.parent.mkdir(parents=True)
        p.write_bytes(encode(content))
        files.append(p)
    invalid = [p for p in files if _invalid(results, p)]
    for argv in (["leaderboard", "--out", tree], ["leaderboard", "--out", tree, "--format", "html"],
                 ["eval", "roc", tree, "--out", tree]):
        t.cli(argv, {0}, out=tree, subprocess_=use_subprocess)
    for p in invalid:
        t.cli(["eval", "roc", p, "--out", work / "inputs" / "plots"], {2}, out=work / "inputs" / "plots",
              label=f"eval roc {p.parent.name}")
    counts["result_files"] = len(files)
    counts["result_files_invalid"] = len(invalid)

    # model configs: every mutation through the loader; the remote-code attack through the CLI

    src = ROOT / "cases" / "siit" / "models" / "11" / "siit"
    cfgs = bad_configs(json.loads((src / "config.json").read_text()))
    d = work / "inputs" / "models" / "11" / "siit"
    shutil.copytree(src, d)
    rejected = 0
    for bad in cfgs.values():
        (d / "config.json").write_text(json.dumps(bad, allow_nan=True))
        t.inputs += 1
        try:
            model_files.load_model_dir(d)
        except ValueError as err:
            rejected += "config.json" in str(err) and "\n" not in str(err)
        except Exception:  # noqa: BLE001 -- anything else escaping the check is a finding
            t.tracebacks += 1
    counts["configs"], counts["configs_rejected"] = len(cfgs), rejected
    tok = work / "inputs" / "tok"
    tok.mkdir(parents=True, exist_ok=True)
    (tok / "tokenizer_config.json").write_text(json.dumps({"auto_map": {"AutoTokenizer": ["evil.Tok", None]}}))
    (tok / "config.json").write_text(json.dumps({"auto_map": {"AutoTokenizer": ["evil.Tok", None]}}))
    (tok / "evil.py").write_text(f"open({str(markers / 'tokenizer')!r}, 'w').write('ran')\nclass Tok: pass\n")
    cfg = json.loads((src / "config.json").read_text())
    (d / "config.json").write_text(json.dumps(dict(cfg, tokenizer_name=str(tok), trust_remote_code=True)))
    res = work / "inputs" / "run-res"
    t.cli(["run", "eap", "-i", "11", "--model", "siit", "--out", res, "-n", "8"], {1}, out=res, subprocess_=True,
          extra_env={"CIRCUIT_BENCH_MODELS": str(work / "inputs" / "models")}, label="remote tokenizer config")

    # checkpoints: planted pickles through every loader

    class Planted:
        def __init__(self, name):
            self.name = name

        def __reduce__(self):
            return (exec, (f"open({str(markers / self.name)!r}, 'w').write('ran')",))

    import pickle
    ck_dir = work / "inputs" / "ckpt"
    ck_dir.mkdir(parents=True, exist_ok=True)
    planted = {"torch-exec": lambda p: torch.save({"model": Planted("torch-exec"), "config": {}}, p),
               "plain-pickle": lambda p: p.write_bytes(pickle.dumps(Planted("plain-pickle"))),
               "garbage": lambda p: p.write_bytes(os.urandom(256)), "empty": lambda p: p.write_bytes(b""),
               "list": lambda p: torch.save([1, 2], p), "no-keys": lambda p: torch.save({"x": torch.ones(1)}, p)}
    for name, make in planted.items():
        p = ck_dir / f"{name}.pt"
        make(p)
        t.inputs += 1
        try:
            load_checkpoint_file(p)
        except ValueError:
            pass
        except Exception:  # noqa: BLE001
            t.tracebacks += 1
    iit_out = work / "inputs" / "train-out"
    torch.save({"model": Planted("train-iit"), "config": {}}, _mk(iit_out / "3" / "iit" / "checkpoint.pt"))
    t.cli(["train", "iit", "-i", "3", "--model-kind", "iit", "--out", iit_out, "--resume", "--epochs", "1",
           "--num-samples", "100", "--no-progress"], {2}, out=iit_out, subprocess_=True, label="train iit --resume planted")
    ioi_ck = ck_dir / "ioi.pt"
    torch.save({"model": Planted("train-ioi"), "config": {}}, ioi_ck)
    t.cli(["train", "ioi", "--checkpoint", ioi_ck, "--out", work / "inputs" / "ioi-out", "--epochs", "1"], {2},
          out=work / "inputs" / "ioi-out", subprocess_=True, label="train ioi --checkpoint planted")
    counts["checkpoints"] = len(planted) + 2

    # command lines
    lines = bad_command_lines()
    for argv in lines:
        o = work / "inputs" / "flags-out"
        full = argv + (["--out", o] if argv[0] in TAKES_OUT and argv[0] != "eval" else [])
        t.cli(full, {2}, out=o, subprocess_=use_subprocess)
    counts["command_lines"] = len(lines)
    # the other run-level failures: bad method outputs fail their own run (exit 1), the command goes on
    for m in ("NaNScores", "InfScores", "Exits"):
        o = work / "inputs" / f"out-{m}"
        t.cli(["benchmark", "--cases", "toy", "--methods", f"benchmark.hostile:{m}", "random", "--out", o,
               "-n", "8"], {1}, out=o, subprocess_=use_subprocess)
    counts["bad_method_outputs"] = 3
    # unusable --out
    f = work / "inputs" / "a-file"
    f.write_text("x")
    for argv in (["run", "random", "-i", "toy", "--out", f], ["benchmark", "--cases", "toy", "--out", f],
                 ["run", "random", "-i", "toy", "--out", "/proc/circuit-bench-audit"]):
        t.cli(argv, {2}, out=None, subprocess_=use_subprocess)
    counts["unusable_out"] = 3

    counts.update(inputs=t.inputs, tracebacks=t.tracebacks, writes_outside_out=t.outside, wrong_exit=t.wrong_exit,
                  code_executions=len(list(markers.iterdir())), examples=t.examples)
    return counts


def _mk(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def _invalid(results, p: Path) -> bool:
    try:
        results.load_result(p)
    except ValueError:
        return True
    return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/hostile-audit")
    ap.add_argument("--kills", type=int, default=8)
    ap.add_argument("--concurrent-rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--subprocess", action="store_true", help="bad command lines through real processes too")
    ap.add_argument("--only", choices=["kills", "concurrent", "inputs"], nargs="+")
    args = ap.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch
    torch.set_num_threads(1)
    t0 = time.time()
    only = set(args.only or ["kills", "concurrent", "inputs"])
    summary = {"command": " ".join(sys.argv), "machine": f"{platform.node()} {platform.machine()} "
               f"{os.cpu_count()} CPUs", "load_average_start": os.getloadavg()}
    if "inputs" in only:
        summary["inputs"] = audit_inputs(work, args.subprocess)
    if "concurrent" in only:
        summary["concurrent"] = audit_concurrent(work, args.concurrent_rounds)
    if "kills" in only:
        summary["kills"] = audit_kills(work, args.kills, random.Random(args.seed))
    inp, con, kil = summary.get("inputs", {}), summary.get("concurrent", {}), summary.get("kills", {})
    summary["defects"] = {
        "tracebacks": inp.get("tracebacks", 0) + kil.get("tracebacks", 0),
        "code_executions": inp.get("code_executions", 0),
        "writes_outside_out": inp.get("writes_outside_out", 0),
        "wrong_exit_status": inp.get("wrong_exit", 0),
        "orphans": kil.get("orphans", 0),
        "written_after_parent_died": kil.get("written_after_parent_died", 0),
        "corrupt_results": kil.get("corrupt_results", 0),
        "unfinished_after_resume": kil.get("unfinished_after_resume", 0),
        "differ_from_clean_run": kil.get("differ_from_clean_run", 0),
        "computed_twice_concurrent": con.get("computed_twice", 0),
    }
    summary["seconds"] = round(time.time() - t0, 1)
    summary["load_average_end"] = os.getloadavg()
    text = json.dumps(summary, indent=1, default=str)
    (work / "audit.json").write_text(text)
    print(text)
    return 0 if not any(summary["defects"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
