"""Optional experiment tracking with Weights & Biases (``benchmark --wandb-project NAME``).

Off by default; ``wandb`` is imported only when a project is given (it is the optional extra
``circuit-bench[wandb]``). Each finished job becomes one W&B run in that project: its config is the
job (case, model, method, hyper-parameters, seed, data), its summary the outcome (status, AUROCs,
timing). Runs are logged **offline** unless the user asks otherwise with ``WANDB_MODE=online`` (or
``disabled``); offline runs land under ``OUT/wandb/`` (or ``$WANDB_DIR``) and can be uploaded later
with ``wandb sync``. A tracking failure never fails the benchmark: it is reported once and tracking
stops.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

WANDB_MISSING = "--wandb-project needs wandb, an optional extra: pip install 'circuit-bench[wandb]'"
MODES = ("offline", "online", "disabled")


def _warn(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _finite(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def job_config(doc: dict[str, Any]) -> dict[str, Any]:
    """What determined a run (its W&B config)."""
    return {"case": str(doc.get("case")), "model": doc.get("model"), "method": doc.get("method"),
            "params": doc.get("params") or {}, "seed": doc.get("seed"), "data": doc.get("data") or {},
            "run_id": doc.get("run_id"), "versions": doc.get("versions") or {}}


def job_summary(doc: dict[str, Any]) -> dict[str, Any]:
    """The outcome of a run (its W&B summary): status, AUROCs, timing, graph size, result path."""
    roc = doc.get("roc") or {}
    timing = doc.get("timing") or {}
    out: dict[str, Any] = {"status": doc.get("status"), "error": doc.get("error"), "path": doc.get("path")}
    for level in ("edges", "nodes", "nodes_no_endpoints", "edges_from_scores"):
        block = roc.get(level) or {}
        for key in ("auroc", "pessimistic_auc"):
            if key in block:
                out[f"{level}_{key}"] = _finite(block.get(key))
    for key in ("seconds", "setup_seconds", "method_seconds"):
        if key in timing:
            out[key] = _finite(timing.get(key))
    graph = doc.get("graph") or {}
    for key in ("n_nodes", "n_edges"):
        if key in graph:
            out[key] = graph[key]
    return out


class WandbTracker:
    """Logs each finished job of a benchmark as one W&B run (see the module docstring)."""

    def __init__(self, project: str, out: str | Path = "results", mode: str | None = None):
        """ImportError (with the install hint) without wandb, ValueError for an unknown ``WANDB_MODE``."""
        try:
            import wandb
        except ImportError:
            raise ImportError(WANDB_MISSING) from None
        self.wandb = wandb
        self.project = project
        self.mode = mode or os.environ.get("WANDB_MODE", "offline")
        if self.mode not in MODES:
            raise ValueError(f"WANDB_MODE={self.mode!r} is not one of {', '.join(MODES)}")
        self.dir = os.environ.get("WANDB_DIR") or str(out)
        self.enabled = True
        self.logged = 0

    def log_result(self, doc: dict[str, Any]) -> None:
        """One W&B run for one finished job; resumed (skipped) jobs were logged when they ran."""
        if not self.enabled or doc.get("skipped"):
            return
        name = f"{doc.get('case')}/{doc.get('model')}/{doc.get('method')}"
        try:
            Path(self.dir).mkdir(parents=True, exist_ok=True)
            run = self.wandb.init(project=self.project, mode=self.mode, reinit=True, dir=self.dir, name=name,
                                  group=str(doc.get("method")), job_type="benchmark", config=job_config(doc),
                                  tags=[f"case:{doc.get('case')}", f"model:{doc.get('model')}"])
            summary = job_summary(doc)
            run.log({k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
            run.summary.update(summary)
            run.finish()
            self.logged += 1
        except Exception as err:  # noqa: BLE001 -- tracking is best-effort, the benchmark goes on
            self.enabled = False
            _warn(f"wandb: tracking stopped after {self.logged} run(s): {type(err).__name__}: {err}")

    def close(self) -> None:
        if self.logged:
            where = f" (offline, under {self.dir}/wandb; upload with `wandb sync`)" if self.mode == "offline" else ""
            _warn(f"wandb: logged {self.logged} run(s) to project {self.project!r}{where}")
