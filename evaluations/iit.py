"""``eval iit``: the effect of ablating each node alone, split into circuit / non-circuit nodes.

For every head and MLP n and every ablation (``resample`` = the engine's ``corrupted``: n's output
taken from the paired corrupted input; ``mean``; ``zero``), n's outgoing edges are all ablated and
the clean input is run (one batched pass per ablation, no N^2 pairs):

* ``{ablation}_ablate_effect``: fraction of scored positions whose output changes versus the full
  model (categorical: argmax differs; numerical: ``|delta| > atol``);
* ``{ablation}_loss_change``: engine default loss (KL / MSE to the clean model) of the ablated run
  minus that of the full model;
* ``resample_effect_label_changed``: InterpBench's resample effect, the same fraction restricted to
  positions where the clean and corrupted labels differ (NaN if there are none);
* ``iia``: with ``hl_intervene(node, base_idx, source_idx) -> expected labels [len(base_idx), seq]``
  (base rows are ``data.clean``, source rows ``data.corrupted``; ``None`` = the high-level output is
  unchanged, i.e. the clean labels), the accuracy of the resample-ablated run against the expected
  labels. Without ``hl_intervene`` it is NaN and the summary says why.

Summary: ``accuracy`` (full model vs clean labels), ``iia`` (mean per-node IIA over circuit nodes),
``strict_accuracy`` (SIIT: mean over non-circuit nodes of the resample-ablated accuracy against the
clean labels; 1.0 if there are none; it needs no high-level model), mean effects per status.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from core import metrics
from core.circuit import Circuit
from core.naming import INPUT, POS, NodeLoc
from core.patching import PatchEngine, StrictAccuracy, capture, strict_accuracy
from core.results import atomic_write, finite

ABLATION_NAMES = {"corrupted": "resample", "mean": "mean", "zero": "zero"}
HLIntervene = Callable[[str, torch.Tensor, torch.Tensor], "torch.Tensor | None"]


@dataclass
class IITReport:
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    reasons: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return finite({"rows": self.rows, "summary": self.summary, "reasons": self.reasons})




def _changed(engine, logits: torch.Tensor, atol: float) -> torch.Tensor:
    ref = engine.clean_logits.unsqueeze(0)
    if engine.output_type == "numerical":
        return ((logits.float() - ref.float()).abs() > atol).any(-1)
    return logits.argmax(-1) != ref.argmax(-1)


def _accuracy(engine, logits: torch.Tensor, labels: torch.Tensor, atol: float) -> torch.Tensor:
    if engine.output_type == "numerical":
        return metrics.atol_accuracy(logits, labels, engine.mask, atol)
    return metrics.accuracy(logits, labels, engine.mask)


def _frac(x: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    w = where.float()
    return (x.float() * w).sum((-2, -1)) / w.sum() if w.sum() > 0 else torch.full(x.shape[:-2], math.nan)


def resample_strict_accuracy(engine, nodes: Sequence[str], atol: float = 0.05) -> StrictAccuracy:
    """:func:`core.patching.strict_accuracy` of ``nodes`` on the engine's pairs: base = the clean
    inputs, source = the corrupted ones (their run as the engine's, position scrambling included),
    target = the clean labels on the scored positions."""
    labels = engine.data.clean_labels.to(engine.device)
    locs = {r.name: NodeLoc(r.hook, r.head) for r in engine.graph.sender_records if r.name in set(nodes)}
    _, source = capture(engine.model, engine.data.corrupted.to(engine.device), [loc.hook for loc in locs.values()],
                        patches=engine.corrupted_run_patches())
    if engine.output_type == "numerical":
        scored = engine.mask & ~torch.isnan(labels)
        agree = lambda out, t: (out[..., 0] - t).abs() < atol  # noqa: E731  (outputs [n, seq, 1])
    else:
        scored = engine.mask & (labels != metrics.IGNORE)
        agree = lambda out, t: out.argmax(-1) == t  # noqa: E731
    return strict_accuracy(engine.model, engine.clean, source, locs, agree, labels, scored,
                           chunk=engine.clean.shape[0])


def model_accuracy(engine, atol: float = 0.05) -> float:
    labels = engine.data.clean_labels.to(engine.device)
    return float(_accuracy(engine, engine.clean_logits.unsqueeze(0), labels, atol)[0])


@torch.no_grad()
def node_effects(engine, nodes: Sequence[str], atol: float = 0.05,
                 hl_intervene: HLIntervene | None = None) -> list[dict[str, float]]:
    """Per node (ablated alone, with the engine's ablation): effect, loss change, label-changed
    effect and, for resample ablation with ``hl_intervene``, IIA and accuracy vs the clean labels."""
    graph = engine.graph
    senders, _ = graph.edge_sender_receiver()
    masks = torch.ones(len(nodes), graph.n_edges)
    for i, n in enumerate(nodes):
        if n not in graph.sender_index:
            raise ValueError(f"{n!r} is not a sender of the graph")
        masks[i, [e for e, s in enumerate(senders) if s == n]] = 0.0
    loss = engine.default_loss()
    base_loss = float(loss(engine.clean_logits.unsqueeze(0))[0])
    labels = engine.data.clean_labels.to(engine.device)
    corr = engine.data.corrupted_labels.to(engine.device)
    scored = engine.mask & (~torch.isnan(labels) if engine.output_type == "numerical" else labels != metrics.IGNORE)
    label_changed = scored & ((corr - labels).abs() > atol if engine.output_type == "numerical" else corr != labels)
    n_rows = engine.clean.shape[0]
    idx = torch.arange(n_rows)
    rows: list[dict[str, float]] = []
    chunk = engine.chunk_size()
    for start in range(0, len(nodes), chunk):
        logits = engine.run(masks[start:start + chunk])
        ch = _changed(engine, logits, atol)
        eff, eff_lc = _frac(ch, scored), _frac(ch, label_changed)
        dl = loss(logits).float() - base_loss
        acc = _accuracy(engine, logits, labels, atol)
        for k in range(logits.shape[0]):
            node = nodes[start + k]
            row = {"effect": float(eff[k]), "loss_change": float(dl[k]), "effect_label_changed": float(eff_lc[k]),
                   "accuracy": float(acc[k]), "iia": math.nan}
            if hl_intervene is not None and engine.ablation == "corrupted":
                expected = hl_intervene(node, idx, idx)
                expected = labels if expected is None else torch.as_tensor(expected).to(engine.device)
                row["iia"] = float(_accuracy(engine, logits[k:k + 1], expected, atol)[0])
            rows.append(row)
    return rows


def iit_report(model, graph, data, output_type: str, truth: Circuit,
               ablations: Sequence[str] = ("corrupted", "mean", "zero"), atol: float = 0.05,
               hl_intervene: HLIntervene | None = None, engines: dict | None = None) -> IITReport:
    """Node effects of every head and MLP under each ablation, with status in/not in ``truth``.

    ``engines``: ready :class:`core.patching.PatchEngine` objects by ablation (built if missing).
    """
    engines = dict(engines or {})
    for a in ablations:
        if a not in ABLATION_NAMES:
            raise ValueError(f"unknown ablation {a!r}; expected one of {', '.join(ABLATION_NAMES)}")
        if a not in engines:
            engines[a] = PatchEngine(model, graph, data, output_type, ablation=a)
    nodes = [s for s in graph.senders if s not in (INPUT, POS)]
    in_circuit = set(truth.nodes)
    rows = [{"node": n, "status": "in_circuit" if n in in_circuit else "not_in_circuit"} for n in nodes]
    reasons: dict[str, str] = {}
    strict, iia = math.nan, math.nan
    for a in ablations:
        name = ABLATION_NAMES[a]
        eff = node_effects(engines[a], nodes, atol, hl_intervene if a == "corrupted" else None)
        for row, e in zip(rows, eff):
            row[f"{name}_ablate_effect"] = e["effect"]
            row[f"{name}_loss_change"] = e["loss_change"]
            if a == "corrupted":
                row["resample_effect_label_changed"] = e["effect_label_changed"]
                row["resample_accuracy"] = e["accuracy"]
                row["iia"] = e["iia"] if row["status"] == "in_circuit" else math.nan
        if a == "corrupted":
            strict = resample_strict_accuracy(engines[a], [r["node"] for r in rows if r["status"] == "not_in_circuit"],
                                              atol).mean
            if hl_intervene is not None:
                vals = [r["iia"] for r in rows if r["status"] == "in_circuit"]
                iia = sum(vals) / len(vals) if vals else math.nan
                if not vals:
                    reasons["iia"] = "no circuit node among the graph's heads and MLPs"
    if "corrupted" not in ablations:
        reasons["strict_accuracy"] = reasons["iia"] = "needs resample (corrupted) ablation"
    elif hl_intervene is None:
        reasons["iia"] = "no high-level model: pass hl_intervene(node, base_idx, source_idx) -> labels"
    first = engines[ablations[0]] if ablations else PatchEngine(model, graph, data, output_type)
    summary: dict[str, Any] = {"accuracy": model_accuracy(first, atol), "iia": iia, "strict_accuracy": strict,
                               "n_nodes": len(nodes), "n_in_circuit": sum(r["status"] == "in_circuit" for r in rows),
                               "atol": atol}
    for a in ablations:
        col = f"{ABLATION_NAMES[a]}_ablate_effect"
        for status in ("in_circuit", "not_in_circuit"):
            vals = [r[col] for r in rows if r["status"] == status and not math.isnan(r[col])]
            summary[f"mean_{col}_{status}"] = sum(vals) / len(vals) if vals else math.nan
    return IITReport(rows, summary, reasons)


def to_csv(rows: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write rows (dicts; columns = union of keys in first-seen order) as CSV, atomically. NaN -> empty."""
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()})
    return atomic_write(path, lambda tmp: Path(tmp).write_text(buf.getvalue()))


def to_json(doc: Any, path: str | os.PathLike) -> Path:
    """Write a JSON document (NaN -> null), atomically."""
    doc = doc.to_json() if hasattr(doc, "to_json") else finite(doc)
    text = json.dumps(doc, indent=1, allow_nan=False) + "\n"
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))
