"""Hostile inputs for the fuzz tests and the audit (issue 27): tables of malformed result files, model
configs and command lines, and plug-in methods that misbehave (NaN/inf scores, exiting, sleeping).
Used by tests/benchmark/test_hostile.py and benchmarks/hostile_audit.py; the methods load as plug-ins,
e.g. ``--methods benchmark.hostile:Slow``."""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from typing import Any

from core.protocols import Method, MethodOutput

# values that are wrong for almost any field
ODD_VALUES = {"none": None, "str": "x", "list": [], "dict": {}, "neg": -1, "huge": 10 ** 400, "float": 1.5,
              "bool": True, "dotdot": "..", "slash": "a/b", "nan": float("nan"), "inf": float("inf")}

RAW_RESULTS = {  # files that are not JSON objects at all
    "raw-list": "[1, 2]", "raw-string": '"result"', "raw-number": "3", "raw-null": "null", "raw-not-json": "{not json",
    "raw-empty": "", "raw-binary": b"\xff\xfe\x00garbage", "raw-deep": "[" * 5000 + "]" * 5000,
    "raw-truncated": '{"schema": 1, "case": "toy", "status": "ok", "roc": {"edges": {"auroc": 0.5',
    "raw-nan-token": '{"schema": 1, "case": "toy", "model": "toy", "method": "x", "status": "ok", "roc": '
                     '{"edges": {"auroc": NaN}, "nodes": {}}, "timing": {"seconds": Infinity}}',
}


def bad_result_docs(good: dict[str, Any]) -> dict[str, Any]:
    """Mutations of a valid result document: each top-level key removed, or set to each odd value;
    the ROC and timing blocks' fields set to odd values; plus the raw non-objects."""
    out: dict[str, Any] = dict(RAW_RESULTS)
    for key in ("schema", "case", "model", "method", "status", "roc", "timing", "params", "scores", "sweep"):
        if key in good:
            out[f"drop-{key}"] = {k: v for k, v in good.items() if k != key}
        for vname, v in ODD_VALUES.items():
            out[f"{key}={vname}"] = dict(good, **{key: v})
    for level in ("edges", "nodes"):
        for field in ("auroc", "pessimistic_auc", "fpr", "tpr"):
            for vname in ("str", "huge", "nan", "inf", "neg", "dict"):
                doc = copy.deepcopy(good)
                doc.setdefault("roc", {}).setdefault(level, {})[field] = ODD_VALUES[vname]
                out[f"roc.{level}.{field}={vname}"] = doc
    for vname in ("str", "huge", "nan", "none"):
        out[f"timing.seconds={vname}"] = dict(good, timing={"seconds": ODD_VALUES[vname]})
    return out


def encode(content: Any) -> bytes:
    """What to write for a table entry (JSON with NaN/Infinity tokens allowed, as a hand-edited file may be)."""
    if isinstance(content, bytes):
        return content
    if isinstance(content, str):
        return content.encode()
    return json.dumps(content, allow_nan=True).encode()


def bad_configs(cfg: dict[str, Any]) -> dict[str, dict]:
    """Mutations of a valid model config.json: code-loading fields, unknown fields, wrong types and ranges."""
    out = {
        "tokenizer_name": dict(cfg, tokenizer_name="gpt2"),
        "trust_remote_code": dict(cfg, trust_remote_code=True),
        "tokenizer+remote": dict(cfg, tokenizer_name="/tmp/somewhere", trust_remote_code=True),
        "load_in_4bit": dict(cfg, load_in_4bit=True), "quantization_method": dict(cfg, quantization_method="gptq"),
        "from_checkpoint": dict(cfg, from_checkpoint=True), "checkpoint_label_type": dict(cfg, checkpoint_label_type="step"),
        "unknown_field": dict(cfg, auto_map={"AutoTokenizer": "evil.Tok"}), "device": dict(cfg, device="cuda:7"),
        "dtype": dict(cfg, dtype="torch.float16"), "n_devices": dict(cfg, n_devices=8),
        "not-object": [cfg], "act_fn=exec": dict(cfg, act_fn="exec"), "attn_types=bad": dict(cfg, attn_types=["x"]),
        "model_name=long": dict(cfg, model_name="x" * 1000),
    }
    for field in ("d_model", "n_layers", "n_heads", "d_head", "n_ctx", "d_vocab", "d_mlp", "eps", "act_fn",
                  "normalization_type", "use_attn_result", "attn_only", "positional_embedding_type", "seed"):
        for vname in ("str", "list", "dict", "huge", "neg", "nan", "float", "bool"):
            v = ODD_VALUES[vname]
            if field in ("eps",) and vname in ("neg", "float"):
                continue  # valid numbers for a float field
            if (field == "act_fn" and vname == "str") or (field in ("use_attn_result", "attn_only") and vname == "bool"):
                continue  # valid values
            out[f"{field}={vname}"] = dict(cfg, **{field: v})
    for field in ("d_model", "n_layers", "n_ctx", "d_vocab"):
        out[f"missing-{field}"] = {k: v for k, v in cfg.items() if k != field}
    return out


def bad_command_lines() -> list[list[str]]:
    """Command lines that must be a one-line error, exit 2, before any work (``--out OUT`` is appended
    by the caller where a command takes one)."""
    run = ["run", "random", "-i", "toy"]
    return [
        run + ["-n", "0"], run + ["-n", "-5"], run + ["-n", "abc"], run + ["-n", "1e3"], run + ["--seed", "-1"],
        run + ["--seed", "x"], run + ["--ablation", "bogus"], run + ["--device", "tpu"], run + ["--metric", "x"],
        run + ["--bogus-flag"], ["run", "random", "-i", "IOI"], ["run", "random", "-i", "../3"],
        ["run", "random", "-i", ""], ["run", "nosuchmethod", "-i", "toy"], ["run", "no.such.module:M", "-i", "toy"],
        ["run", "acdc", "-i", "toy", "--threshold", "nan"], ["run", "acdc", "-i", "toy", "--threshold", "inf"],
        ["run", "acdc", "-i", "toy", "--threshold", "-inf"], ["run", "acdc", "-i", "toy", "--threshold", "x"],
        ["run", "sp", "-i", "toy", "--lambda-reg", "nan"], ["run", "eap", "-i", "toy", "--bogus", "1"],
        ["benchmark", "--cases", "toy", "-n", "0"], ["benchmark", "--cases", "toy", "--seed", "-3"],
        ["benchmark", "--cases", "toy", "--workers", "0"], ["benchmark", "--cases", "toy", "--workers", "-2"],
        ["benchmark", "--cases", "nosuchcase"], ["benchmark", "--cases", "toy", "--methods", "nosuch"],
        ["benchmark", "--cases", "toy", "--executor", "dask"],
        ["eval", "roc"], ["eval", "roc", "/nonexistent/result.json"], ["eval", "nosuch"],
        ["eval", "ig-steps", "-i", "toy", "--steps", "0"], ["eval", "iit", "-i", "toy", "-n", "0"],
        ["eval", "iit", "-i", "toy", "--seed", "-1"], ["eval", "node_realism", "-i", "toy"],
        ["leaderboard", "--format", "pdf"], ["cases", "show", "nosuch"], ["cases", "bogus"],
        ["train", "iit", "-i", "3", "--seed", "-1"], ["train", "iit", "-i", "3", "-d", "tpu"],
        ["train", "iit", "-i", "3", "--epochs", "0"], ["train", "iit", "-i", "nosuch"],
        ["train", "ioi", "--epochs", "0"], ["train", "nosuch"], ["nosuchcommand"],
    ]


TAKES_OUT = ("run", "benchmark", "eval", "train")


# plug-in methods that misbehave
class NaNScores(Method):
    name = "nan-scores"

    def discover(self, problem):
        return MethodOutput(edge_scores={e: float("nan") for e in problem.graph.edges})


class InfScores(Method):
    name = "inf-scores"

    def discover(self, problem):
        return MethodOutput(edge_scores={e: float("inf") for e in problem.graph.edges})


class Exits(Method):
    name = "exits"

    def discover(self, problem):
        sys.exit(3)


class Slow(Method):
    """Sleeps, appends one line to $HOSTILE_LOG per call (to count computations), then scores edges."""

    name = "slow"

    def __init__(self, seconds: float = 0.0):
        self.seconds = seconds

    def discover(self, problem):
        time.sleep(float(os.environ.get("HOSTILE_SLEEP", self.seconds)))
        log = os.environ.get("HOSTILE_LOG")
        if log:
            with open(log, "a") as f:
                f.write(f"{problem.case_id} {os.getpid()}\n")
        return MethodOutput(edge_scores={e: float(i) for i, e in enumerate(problem.graph.edges)})
