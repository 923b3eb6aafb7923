"""Faithfulness study (issue 10): EAP vs EAP-IG vs exact patching.

Four studies, each a library function that writes ``<name>.json`` and ``<name>.png`` atomically and
returns the JSON document, plus a ``cmd_eval_*`` wrapper for the ``eval`` CLI:

* :func:`pareto`: faithfulness against the number of edges kept (after pruning), one curve per method;
  exact patching is always added as the reference curve.
* :func:`agreement`: per-edge agreement of each method's scores with exact patching
  (:func:`evaluations.agreement.score_agreement`: top-k overlap first, then Pearson/Spearman/Kendall).
* :func:`ig_steps`: EAP-IG agreement with exact patching, CPR and CMD, and method time, per step count.
* :func:`cross_case`: circuits found on one setting evaluated on another (faithfulness and renormalised
  faithfulness heatmaps) and their edge/node IoU.

Definitions
-----------
*Faithfulness* of a circuit C (an edge mask) is the reference's normalised faithfulness
``f(C) = (v(C) - v(empty)) / (v(full) - v(empty))`` (reference §1.5), not clipped, where ``v`` is the
engine's default loss (KL to the clean model for categorical outputs, MSE for numerical ones; the
value is the same for a metric, because negating v leaves f unchanged) or, with ``metric=``,
``accuracy`` / ``logit_diff`` (``evaluations.faithfulness.task_metric``). ``empty`` ablates every edge
(for ``corrupted`` ablation: the corrupted run) and ``full`` keeps every edge, so f(full) = 1 and
f(empty) = 0 by construction.

*Selection* (``policy``): ``greedy`` (default; reference §1.5 ``apply_greedy``: grow from ``logits``,
repeatedly adding the highest-|score| edge whose receiver is already in the circuit; the circuit at
budget n is the first n edges of that order), ``topk-abs`` (global top-n by |score|, MIB) or
``topk-signed``. Every circuit is then pruned (``Graph.prune``: edges not reachable from the input or
not reaching the logits are dropped) and curves are plotted against the number of edges **kept after
pruning** (reference: "edges are counted after pruning").

*Budgets*: every n in 0..E for graphs with at most 128 edges, otherwise 0, E and 40 log-spaced
values. CPR / CMD (reported by :func:`pareto` and :func:`ig_steps`) are the MIB areas under f and
|1 - f| over the *requested* fractions ``evaluations.faithfulness.MIB_FRACTIONS`` on a linear axis,
with the chosen policy (with ``policy="topk-abs"`` they equal ``eval faithfulness``'s CPR / CMD).

*Scores*: every method runs through ``get_method(name, **params).discover(problem)`` on the same
problem (same model, data, ablation). Gradient methods and ``exact`` share the attribution metric
(``attribution_metric="auto"``: CE to the clean argmax for categorical outputs, the logit-direction
metric for numerical ones), so their scores are on one scale. A method spec is ``NAME`` or
``NAME[key=value,...]``, e.g. ``eap-ig[integrated_grad_steps=20,ig_variant=activations]``.

*Caching*: within a process every (setting, method) is run once (so the exact-patching reference is
shared by the studies); with ``cache=True`` (the CLI wrappers) scores are also stored under
``OUT/<case>/<model>/study/cache/`` keyed by setting, method parameters and the method module's source.

Cross-case restriction: a circuit is a set of edge *names*; it can be evaluated on another setting
only when both settings have the same graph (same layers, heads, MLPs, q/k/v split and position
handling). This always holds for one case with different data seeds or sizes (``CASE@SEED``), and
for different cases whose models have the same shape (then the transfer is by component name and is
meaningful only where the components correspond, e.g. SIIT models trained on one correspondence).
Settings whose graphs differ are rejected with a UsageError naming the groups.
"""

from __future__ import annotations

import ast
import heapq
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from benchmark.console import UsageError, emit, json_stdout, log
from core import results

POLICIES = ("greedy", "topk-abs", "topk-signed")
DEFAULT_METHODS = ("eap", "eap-ig")
DEFAULT_STEPS = (1, 2, 5, 10, 20, 50)
REFERENCE = "exact"
SMALL_GRAPH = 128
N_BUDGETS = 40


# ---- settings, problems and scores (cached per process) -------------------------------------------------
@dataclass(frozen=True)
class Setting:
    case: str
    model: str | None = None
    seed: int = 0
    n: int = 200
    ablation: str = "corrupted"

    @property
    def label(self) -> str:
        return f"{self.case}:{self.model}@{self.seed}" + (f"/n={self.n}" if self.n != 200 else "")


_PROBLEMS: dict[Setting, Any] = {}
_SETUP_SECONDS: dict[Setting, float] = {}
_SCORES: dict[tuple, dict] = {}


def clear_cache() -> None:
    _PROBLEMS.clear()
    _SETUP_SECONDS.clear()
    _SCORES.clear()


def _resolve(case_id: str, model: str | None):
    from cases import get_case
    from core.registry import UnknownNameError

    try:
        case = get_case(str(case_id))
    except UnknownNameError as err:
        raise UsageError(str(err)) from None
    try:
        return case, case.resolve_model(model)
    except ValueError as err:
        raise UsageError(str(err)) from None


def setting_problem(s: Setting):
    """(case, resolved setting, Problem) for a setting; the problem and its patching engine (clean and
    ablated activations) are built here, timed (``setup_seconds``: never charged to the first method) and
    cached."""
    from benchmark.runner import Job, build_problem

    case, kind = _resolve(s.case, s.model)
    s = Setting(str(case.id), kind, int(s.seed), int(s.n), s.ablation)
    if s not in _PROBLEMS:
        t0 = time.perf_counter()
        job = Job(case=s.case, method="none", model=kind, seed=s.seed, n=s.n, ablation=s.ablation)
        problem = build_problem(job, case, kind)
        problem.engine()
        _PROBLEMS[s], _SETUP_SECONDS[s] = problem, time.perf_counter() - t0
    return case, s, _PROBLEMS[s]


def parse_method(spec: str) -> tuple[str, dict[str, Any]]:
    """``NAME`` or ``NAME[k=v,...]`` -> (name, params); unknown names raise UsageError."""
    from core.registry import UnknownNameError
    from methods import method_class

    m = re.fullmatch(r"\s*([^\[\]\s]+)\s*(?:\[(.*)\])?\s*", spec)
    if not m:
        raise UsageError(f"bad method spec {spec!r}; expected NAME or NAME[key=value,...]")
    name, body = m.group(1), m.group(2)
    params: dict[str, Any] = {}
    for item in filter(None, (x.strip() for x in (body or "").split(","))):
        key, eq, val = item.partition("=")
        if not eq:
            raise UsageError(f"bad method parameter {item!r} in {spec!r}; expected key=value")
        try:
            params[key.strip().replace("-", "_")] = ast.literal_eval(val.strip())
        except (ValueError, SyntaxError):
            params[key.strip().replace("-", "_")] = val.strip()
    try:
        method_class(name)
    except UnknownNameError as err:
        raise UsageError(str(err)) from None
    return name, params


def _check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise UsageError(f"unknown selection policy {policy!r}; expected one of {', '.join(POLICIES)}")


def _cache_file(cache_dir: str | Path, s: Setting, name: str, params: dict, cls) -> Path:
    """``cache_dir/<case>/<model>/study/cache/<method>-<hash>.json``; the hash covers the setting, the
    method's full parameters and the source of the method's module, so edited code is never reused."""
    import hashlib
    import inspect

    try:
        src = Path(inspect.getsourcefile(cls)).read_bytes()
    except (TypeError, OSError):
        src = b""
    key = results.dumps({"setting": [s.case, s.model, s.seed, s.n, s.ablation], "method": name, "params": params},
                        indent=None).encode() + hashlib.sha256(src).digest()
    return (_study_dir(cache_dir, s) / "cache" /
            f"{results.safe_component(name)}-{hashlib.sha256(key).hexdigest()[:16]}.json")


def method_scores(s: Setting, spec: str, cache_dir: str | Path | None = None) -> dict[str, Any]:
    """Run one method on a setting (cached in memory; on disk under ``cache_dir`` when given):
    ``{"scores": [E] ranking scores (NaN = unscored) or None, "signed": [E] signed scores (or the ranking
    scores), "sweep": [(param, mask)] or None, "method_seconds" (``discover`` alone; the setting's set-up is
    the setting's ``setup_seconds``), "params"}``."""
    from methods import get_method

    name, params = parse_method(spec)
    _, s, problem = setting_problem(s)
    key = (s, name, tuple(sorted((k, repr(v)) for k, v in params.items())))
    if key in _SCORES:
        return _SCORES[key]
    try:
        method = get_method(name, **params)
    except TypeError as err:
        raise UsageError(str(err)) from None
    path = _cache_file(cache_dir, s, name, method.params(), type(method)) if cache_dir else None
    if path is not None and path.is_file():
        import json

        d = json.loads(path.read_text())
        nan = lambda v: np.array([math.nan if x is None else x for x in v], dtype=np.float64)  # noqa: E731
        doc = {"method": name, "spec": spec, "params": d["params"], "scores": nan(d["scores"]),
               "signed": nan(d["signed"]), "sweep": None, "method_seconds": d["seconds"], "cached": str(path)}
        _SCORES[key] = doc
        return doc
    torch.manual_seed(s.seed)
    t0 = time.perf_counter()
    out = method.discover(problem)
    seconds = time.perf_counter() - t0
    edges = problem.graph.edges
    scores = signed = None
    if out.edge_scores:
        from evaluations.faithfulness import edge_score_vector

        scores = edge_score_vector(problem.graph, out.edge_scores).numpy()
        sig = (out.info or {}).get("signed")
        signed = np.array([float(sig.get(e, math.nan)) for e in edges]) if isinstance(sig, dict) else scores
    sweep = None
    if out.sweep:
        sweep = [(float(p), problem.graph.mask_for(c)) for p, c in out.sweep]
    doc = {"method": name, "spec": spec, "params": method.params(), "scores": scores, "signed": signed,
           "sweep": sweep, "method_seconds": seconds}
    if path is not None and scores is not None and sweep is None:
        results.write_json_atomic(path, {"case": s.case, "model": s.model, "seed": s.seed, "n": s.n,
                                         "ablation": s.ablation, "method": name, "params": doc["params"],
                                         "seconds": seconds, "edges": edges, "scores": scores, "signed": signed})
    _SCORES[key] = doc
    return doc


# ---- selection and evaluation ----------------------------------------------------------------------------
def greedy_order(graph, scores: np.ndarray) -> list[int]:
    """Edge indices in the order the reference's ``apply_greedy`` adds them: start at ``logits``, always
    take the highest-|score| candidate edge whose receiver node is in the circuit; a sender that enters
    makes its own input edges candidates. NaN scores come last; ties by edge order."""
    senders, receivers = graph.edge_sender_receiver()
    into: dict[str, list[int]] = {}
    for e, r in enumerate(receivers):
        into.setdefault(r, []).append(e)
    key = np.where(np.isnan(scores), -np.inf, np.abs(scores))
    heap = [(-key[e], e) for e in into.get("logits", [])]
    heapq.heapify(heap)
    inside, order = {"logits"}, []
    while heap:
        _, e = heapq.heappop(heap)
        order.append(e)
        s = senders[e]
        if s not in inside:
            inside.add(s)
            for e2 in into.get(s, []):
                heapq.heappush(heap, (-key[e2], e2))
    return order


def budgets_for(n_edges: int, n_points: int = N_BUDGETS) -> list[int]:
    if n_edges <= SMALL_GRAPH:
        return list(range(n_edges + 1))
    grid = np.unique(np.round(np.geomspace(1, n_edges, n_points)).astype(int))
    return sorted({0, n_edges, *grid.tolist()})


def circuit_masks(graph, scores: np.ndarray, budgets: Sequence[int], policy: str = "greedy",
                  prune: bool = True) -> list[torch.Tensor]:
    """One 0/1 edge mask per requested budget (pruned unless ``prune=False``)."""
    from evaluations.faithfulness import select_top

    _check_policy(policy)
    E = graph.n_edges
    vec = torch.as_tensor(np.asarray(scores, dtype=np.float64))
    order = greedy_order(graph, np.asarray(scores, dtype=np.float64)) if policy == "greedy" else None
    masks = []
    for n in budgets:
        if order is not None:
            m = torch.zeros(E)
            m[order[:max(0, min(int(n), E))]] = 1.0
        else:
            m = select_top(vec, int(n), policy)
        masks.append(graph.prune(m) if prune else m)
    return masks


def evaluate_masks(engine, masks: Sequence[torch.Tensor], metric: str = "loss") -> dict[str, Any]:
    """Normalised faithfulness of each mask, in one batched run together with the full and empty masks."""
    from evaluations.faithfulness import _normalise, task_metric

    E = engine.graph.n_edges
    allm = torch.stack([m.float() for m in masks] + [torch.ones(E), torch.zeros(E)]).to(engine.device)
    v = engine.evaluate(allm, task_metric(engine, metric)).double().cpu()
    f, reason = _normalise(v[:-2], float(v[-2]), float(v[-1]))
    return {"f": f, "values": v[:-2].tolist(), "v_full": float(v[-2]), "v_empty": float(v[-1]), "reason": reason}


def _trapezoid(x, y) -> float:
    if any(not math.isfinite(v) for v in y):
        return math.nan
    return float(sum((x[i + 1] - x[i]) * (y[i] + y[i + 1]) / 2 for i in range(len(x) - 1)))


def cpr_cmd(engine, graph, scores: np.ndarray, policy: str, metric: str = "loss") -> dict[str, Any]:
    """MIB's CPR / CMD over ``MIB_FRACTIONS`` (requested fractions, linear axis) with ``policy``."""
    from evaluations.faithfulness import MIB_FRACTIONS

    E = graph.n_edges
    req = [int(p * E) for p in MIB_FRACTIONS]
    ev = evaluate_masks(engine, circuit_masks(graph, scores, req, policy), metric)
    return {"fractions": list(MIB_FRACTIONS), "f": ev["f"], "cpr": _trapezoid(MIB_FRACTIONS, ev["f"]),
            "cmd": _trapezoid(MIB_FRACTIONS, [abs(1 - x) for x in ev["f"]])}


def edges_to_reach(kept: Sequence[int], f: Sequence[float], target: float) -> int | None:
    """Fewest kept edges among the curve's points with f >= target (None if never)."""
    hits = [k for k, x in zip(kept, f) if math.isfinite(x) and x >= target]
    return min(hits) if hits else None


# ---- output helpers ----------------------------------------------------------------------------------------
def _study_dir(out_dir: str | Path | None, s: Setting) -> Path:
    return Path(out_dir or "results") / results.safe_component(s.case) / results.safe_component(str(s.model)) / "study"


def _write(doc: dict, json_path: Path) -> None:
    results.write_json_atomic(json_path, doc)


def _plt():
    from evaluations.plots import _plt as plt

    return plt()


def _save(fig, path: Path) -> str:
    from evaluations.plots import _save as save

    return str(save(fig, path))


def _methods_with_reference(methods: Sequence[str] | None) -> list[str]:
    specs = [REFERENCE] + [m for m in (methods or DEFAULT_METHODS) if m != REFERENCE]
    for m in specs:
        parse_method(m)
    return list(dict.fromkeys(specs))


def _base(s: Setting, problem, **extra) -> dict[str, Any]:
    """The study document's head. ``setup_seconds``: building the setting's model, data and patching
    engine (once per process); every ``method_seconds`` is the method's ``discover`` alone."""
    return {"schema": results.SCHEMA, "case": s.case, "model": s.model, "n": s.n, "seed": s.seed,
            "ablation": s.ablation, "n_edges": problem.graph.n_edges, "setup_seconds": _SETUP_SECONDS.get(s),
            **extra}


# ---- pareto ---------------------------------------------------------------------------------------------------
def pareto(case_id: str, model: str | None = None, methods: Sequence[str] | None = DEFAULT_METHODS, n: int = 200,
           seed: int = 0, ablation: str = "corrupted", out_dir: str | Path | None = "results",
           policy: str = "greedy", metric: str = "loss", budgets: Sequence[int] | None = None,
           write: bool = True, cache: bool = False) -> dict[str, Any]:
    """Faithfulness vs edges kept (after pruning) for each method, exact patching always included.

    Returns (and writes as ``pareto.json``, with ``pareto.png``) ``{"methods": {spec: {"requested",
    "kept", "faithfulness", "cpr", "cmd", "edges_for_f80", "edges_for_f90", "method_seconds", ...}},
    "ground_truth": {"kept", "faithfulness"}, "v_full", "v_empty", ...}``. Methods with only a sweep of
    circuits (ACDC, SP) get one point per circuit under ``"points"``.
    """
    _check_policy(policy)
    specs = _methods_with_reference(methods)
    case, s, problem = setting_problem(Setting(str(case_id), model, seed, n, ablation))
    graph, engine = problem.graph, problem.engine()
    budgets = list(budgets) if budgets is not None else budgets_for(graph.n_edges)
    doc = _base(s, problem, policy=policy, metric=metric, budgets=budgets, methods={})
    for spec in specs:
        log(f"pareto: {spec} on case {s.case} ({s.model})")
        sc = method_scores(s, spec, out_dir if cache else None)
        row: dict[str, Any] = {"params": sc["params"], "method_seconds": sc["method_seconds"]}
        if sc["scores"] is not None:
            masks = circuit_masks(graph, sc["scores"], budgets, policy)
            ev = evaluate_masks(engine, masks, metric)
            kept = [int(m.sum()) for m in masks]
            mib = cpr_cmd(engine, graph, sc["scores"], policy, metric)
            row.update(requested=budgets, kept=kept, faithfulness=ev["f"], values=ev["values"], cpr=mib["cpr"],
                       cmd=mib["cmd"], edges_for_f80=edges_to_reach(kept, ev["f"], 0.8),
                       edges_for_f90=edges_to_reach(kept, ev["f"], 0.9))
            doc.update(v_full=ev["v_full"], v_empty=ev["v_empty"], reason=ev["reason"])
        if sc["sweep"]:
            masks = [graph.prune(m) for _, m in sc["sweep"]]
            ev = evaluate_masks(engine, masks, metric)
            row["points"] = [{"param": p, "kept": int(m.sum()), "faithfulness": f}
                             for (p, _), m, f in zip(sc["sweep"], masks, ev["f"])]
        doc["methods"][spec] = row
    try:
        gt = graph.prune(graph.mask_for(case.ground_truth(s.model)))
        doc["ground_truth"] = {"kept": int(gt.sum()), "faithfulness": evaluate_masks(engine, [gt], metric)["f"][0]}
    except Exception as err:  # noqa: BLE001 -- a case without a usable ground truth still gets its curves
        doc["ground_truth"] = {"kept": None, "faithfulness": None, "reason": f"{type(err).__name__}: {err}"}
    if write:
        _write_study(doc, _study_dir(out_dir, s), "pareto", plot_pareto)
    return doc


def _write_study(doc: dict, where: Path, name: str, plot) -> None:
    """Write ``NAME.png`` (via ``plot(doc, path)``) and ``NAME.json`` into ``where``; paths go in the doc."""
    doc["paths"] = {"json": str(where / f"{name}.json"), "png": str(where / f"{name}.png")}
    plot(doc, where / f"{name}.png")
    _write(doc, where / f"{name}.json")


def plot_pareto(doc: dict, path: Path) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.axhline(1.0, ls=":", color="grey", lw=1)
    ax.axhline(0.0, ls=":", color="grey", lw=1)
    for spec, row in doc["methods"].items():
        if "kept" in row:
            pts = sorted(zip(row["kept"], row["faithfulness"]))
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=2.5, lw=1.8 if spec == REFERENCE else 1.2,
                    ls="--" if spec == REFERENCE else "-",
                    label=f"{spec} (CPR {_fmt(row.get('cpr'))}, CMD {_fmt(row.get('cmd'))})")
        if row.get("points"):
            ax.scatter([p["kept"] for p in row["points"]], [p["faithfulness"] for p in row["points"]], s=14,
                       label=f"{spec} (sweep)")
    gt = doc.get("ground_truth") or {}
    if gt.get("kept") is not None:
        ax.scatter([gt["kept"]], [gt["faithfulness"]], marker="*", s=120, color="black", zorder=5, label="ground truth")
    if doc["n_edges"] > SMALL_GRAPH:
        ax.set_xscale("symlog", linthresh=1)
    ax.set(xlabel="edges kept (after pruning)", ylabel="normalised faithfulness f",
           title=f"case {doc['case']} ({doc['model']}): {doc['policy']} selection, {doc['metric']}")
    ax.legend(fontsize=7)
    return _save(fig, path)


def _fmt(x) -> str:
    return "nan" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.3f}"


# ---- agreement ------------------------------------------------------------------------------------------------
def agreement(case_id: str, model: str | None = None, methods: Sequence[str] | None = DEFAULT_METHODS, n: int = 200,
              seed: int = 0, ablation: str = "corrupted", out_dir: str | Path | None = "results",
              signed: bool = False, write: bool = True, cache: bool = False, **kw) -> dict[str, Any]:
    """Agreement of each method's edge scores with exact patching (``evaluations.agreement``);
    ``agreement.json`` + ``agreement.png`` (bars of the statistics, scatter of |score| vs |exact|)."""
    from evaluations.agreement import score_agreement

    specs = [m for m in _methods_with_reference(methods) if m != REFERENCE]
    _, s, problem = setting_problem(Setting(str(case_id), model, seed, n, ablation))
    ref = method_scores(s, REFERENCE, out_dir if cache else None)
    doc = _base(s, problem, signed=signed, reference=REFERENCE,
                reference_method_seconds=ref["method_seconds"], methods={})
    scatter = {}
    for spec in specs:
        log(f"agreement: {spec} on case {s.case} ({s.model})")
        sc = method_scores(s, spec, out_dir if cache else None)
        if sc["signed"] is None:
            doc["methods"][spec] = {"reason": "the method gives no edge scores (circuits only)",
                                    "method_seconds": sc["method_seconds"]}
            continue
        row = score_agreement(sc["signed"], ref["signed"], signed=signed, **kw)
        row.update(method_seconds=sc["method_seconds"], params=sc["params"])
        doc["methods"][spec] = row
        scatter[spec] = sc["signed"]
    if write:
        _write_study(doc, _study_dir(out_dir, s), "agreement",
              lambda d, path: plot_agreement(d, scatter, ref["signed"], path))
    return doc


AGREEMENT_BARS = (("topk_eff", "top-k_eff"), ("ao_eff", "AO@k_eff"), ("top5", "top-5%"), ("pearson", "Pearson"),
                  ("spearman", "Spearman"), ("kendall", "Kendall τ-b"))


def _bar_value(row: dict, key: str) -> float:
    if key == "top5":
        v = next((t["overlap"] for t in row.get("topk", []) if abs(t["fraction"] - 0.05) < 1e-9), math.nan)
    else:
        v = row.get(key, math.nan)
    return math.nan if v is None else v


def plot_agreement(doc: dict, scatter: dict, exact: np.ndarray, path: Path) -> str:
    plt = _plt()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    names = [m for m, r in doc["methods"].items() if "pearson" in r]
    width = 0.8 / max(1, len(names))
    for i, m in enumerate(names):
        vals = [_bar_value(doc["methods"][m], k) for k, _ in AGREEMENT_BARS]
        ax.bar(np.arange(len(AGREEMENT_BARS)) + i * width, np.nan_to_num(vals), width, label=m)
    ax.set_xticks(np.arange(len(AGREEMENT_BARS)) + width * (len(names) - 1) / 2)
    ax.set_xticklabels([lab for _, lab in AGREEMENT_BARS], fontsize=8)
    ax.set(ylim=(-0.2, 1.05), ylabel="agreement with exact patching",
           title=f"case {doc['case']} ({doc['model']}), {'signed' if doc['signed'] else '|scores|'}")
    ax.axhline(0, color="grey", lw=0.8)  # legend: the scatter's (same colours, same order)
    tr = (lambda x: x) if doc["signed"] else np.abs
    for m, vec in scatter.items():
        ax2.scatter(tr(exact), tr(vec), s=8, alpha=0.6, label=m)
    lim = [np.nanmin(tr(exact)), np.nanmax(tr(exact))]
    ax2.plot(lim, lim, ls=":", color="grey", lw=1)
    ax2.set(xlabel="exact patching score" + ("" if doc["signed"] else " (abs)"),
            ylabel="method score" + ("" if doc["signed"] else " (abs)"), title="per-edge scores")
    ax2.legend(fontsize=7)
    return _save(fig, path)


# ---- IG steps -------------------------------------------------------------------------------------------------
def ig_steps(case_id: str, model: str | None = None, steps: Sequence[int] = DEFAULT_STEPS, n: int = 200, seed: int = 0,
             ablation: str = "corrupted", out_dir: str | Path | None = "results", variant: str = "inputs",
             policy: str = "greedy", metric: str = "loss", write: bool = True,
             cache: bool = False) -> dict[str, Any]:
    """EAP-IG (``variant``) per step count: agreement with exact patching, CPR / CMD, wall time; plain EAP
    as the step-0 baseline. ``ig_steps.json`` + ``ig_steps.png``."""
    from evaluations.agreement import score_agreement
    from methods.attribution import IG_VARIANTS

    _check_policy(policy)
    if variant not in IG_VARIANTS:
        raise UsageError(f"unknown IG variant {variant!r}; expected one of {', '.join(IG_VARIANTS)}")
    steps = [int(x) for x in steps]
    if not steps or min(steps) < 1:
        raise UsageError("--steps needs positive integers (e.g. 1 2 5 10 20 50)")
    _, s, problem = setting_problem(Setting(str(case_id), model, seed, n, ablation))
    graph, engine = problem.graph, problem.engine()
    ref = method_scores(s, REFERENCE, out_dir if cache else None)
    doc = _base(s, problem, variant=variant, policy=policy, metric=metric,
                reference_method_seconds=ref["method_seconds"], rows=[])
    ref_mib = cpr_cmd(engine, graph, ref["scores"], policy, metric)
    doc["reference"] = {"cpr": ref_mib["cpr"], "cmd": ref_mib["cmd"], "method_seconds": ref["method_seconds"]}
    for m in [0] + steps:
        spec = "eap" if m == 0 else f"eap-ig[ig_variant={variant!r},integrated_grad_steps={m}]"
        log(f"ig-steps: {spec} on case {s.case} ({s.model})")
        sc = method_scores(s, spec, out_dir if cache else None)
        ag = score_agreement(sc["signed"], ref["signed"])
        mib = cpr_cmd(engine, graph, sc["scores"], policy, metric)
        top5 = _bar_value(ag, "top5")
        doc["rows"].append({"method": "eap" if m == 0 else "eap-ig", "steps": m,
                            "method_seconds": sc["method_seconds"],
                            "pearson": ag["pearson"], "spearman": ag["spearman"], "kendall": ag["kendall"],
                            "topk_eff": ag["topk_eff"], "ao_eff": ag["ao_eff"], "k_eff": ag["k_eff"], "top5": top5,
                            "cpr": mib["cpr"], "cmd": mib["cmd"], "f": mib["f"], "reasons": ag["reasons"]})
    if write:
        _write_study(doc, _study_dir(out_dir, s), "ig_steps", plot_ig_steps)
    return doc


def _step_axis(ax, steps) -> None:
    from matplotlib.ticker import NullLocator

    ax.set_xscale("log")
    ax.set_xticks(steps)
    ax.set_xticklabels([str(x) for x in steps])
    ax.xaxis.set_minor_locator(NullLocator())


def plot_ig_steps(doc: dict, path: Path) -> str:
    plt = _plt()
    rows = [r for r in doc["rows"] if r["steps"] > 0]
    eap = next((r for r in doc["rows"] if r["steps"] == 0), None)
    x = [r["steps"] for r in rows]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for key, lab in (("topk_eff", "top-k_eff overlap"), ("ao_eff", "AO@k_eff"), ("pearson", "Pearson |s|"),
                     ("kendall", "Kendall τ-b |s|")):
        line, = ax.plot(x, [np.nan if r[key] is None else r[key] for r in rows], marker="o", label=lab)
        if eap and eap[key] is not None:
            ax.axhline(eap[key], color=line.get_color(), ls=":", lw=1)
    _step_axis(ax, x)
    ax.set(xlabel="integrated-gradient steps", ylabel="agreement with exact patching", ylim=(-0.2, 1.05),
           title=f"case {doc['case']} ({doc['model']}), EAP-IG {doc['variant']} (dotted: EAP)")
    ax.legend(fontsize=7)
    ax2.plot(x, [r["cpr"] for r in rows], marker="o", label="CPR")
    ax2.plot(x, [r["cmd"] for r in rows], marker="s", label="CMD")
    ref = doc.get("reference") or {}
    if ref.get("cpr") is not None:
        ax2.axhline(ref["cpr"], color="black", ls="--", lw=1, label="exact CPR")
    for r in rows:
        ax2.annotate(f"{r['method_seconds']:.1f}s", (r["steps"], r["cpr"] if r["cpr"] is not None else 0), fontsize=6,
                     textcoords="offset points", xytext=(0, 5))
    _step_axis(ax2, x)
    ax2.set(xlabel="integrated-gradient steps", ylabel="area", title=f"CPR / CMD ({doc['policy']}, method seconds)")
    ax2.legend(fontsize=7)
    return _save(fig, path)


# ---- cross-case overlap ----------------------------------------------------------------------------------------
def parse_setting(text: str, model: str | None = None, seed: int = 0, n: int = 200,
                  ablation: str = "corrupted") -> Setting:
    """``CASE[:MODEL][@SEED]`` (e.g. ``3``, ``3:siit``, ``ioi:natural@1``)."""
    m = re.fullmatch(r"([^:@\s]+)(?::([^:@\s]+))?(?:@(\d+))?", text.strip())
    if not m:
        raise UsageError(f"bad case spec {text!r}; expected CASE[:MODEL][@SEED], e.g. 3:siit@1")
    return Setting(m.group(1), m.group(2) or model, int(m.group(3)) if m.group(3) else seed, n, ablation)


def cross_case(settings: Sequence[str | Setting], model: str | None = None, method: str = "eap-ig", n: int = 200,
               seed: int = 0, ablation: str = "corrupted", out_dir: str | Path | None = "results",
               policy: str = "greedy", target: float = 0.85, budget: int | None = None, metric: str = "loss",
               write: bool = True, cache: bool = False) -> dict[str, Any]:
    """Circuits of ``method`` found on each setting, evaluated on every other setting (same graph only).

    Each setting's circuit is the smallest on the budget grid whose own f >= ``target`` (reference §1.8
    chose budgets for ~85 %), or exactly ``budget`` requested edges; then pruned. ``F[i][j]`` = f on
    setting i of the circuit found on setting j; ``F_renorm[i][j] = F[i][j] / F[i][i]``; ``edge_iou``,
    ``node_iou``, ``recall[i][j] = |C_i ∩ C_j| / |C_i|`` and hypergeometric ``p_value``.
    ``overlap.json`` + ``overlap.png`` under ``OUT/overlap/<method>/<settings>/``.
    """
    from evaluations.agreement import circuit_overlap

    _check_policy(policy)
    parse_method(method)
    sets = [parse_setting(x, model, seed, n, ablation) if isinstance(x, str) else x for x in settings]
    if len(sets) < 2:
        raise UsageError("overlap needs at least two settings (--cases A B ..., e.g. 3:siit@0 3:siit@1)")
    resolved = []
    for st in sets:
        _, r, problem = setting_problem(st)
        resolved.append((r, problem))
    shapes: dict[tuple, list[str]] = {}
    for r, p in resolved:
        shapes.setdefault(tuple(p.graph.edges), []).append(r.label)
    if len(shapes) > 1:
        groups = "; ".join(f"[{', '.join(v)}] ({len(k)} edges)" for k, v in shapes.items())
        raise UsageError(f"overlap needs settings whose models have the same graph; got groups {groups}")
    graph = resolved[0][1].graph
    labels = [r.label for r, _ in resolved]
    if len(set(labels)) != len(labels):
        raise UsageError(f"duplicate settings: {' '.join(labels)}")
    circuits = []
    for r, p in resolved:
        sc = method_scores(r, method, out_dir if cache else None)
        if sc["scores"] is None:
            raise UsageError(f"method {method!r} gives no edge scores; overlap needs a scoring method")
        if budget is not None:
            mask = circuit_masks(graph, sc["scores"], [int(budget)], policy)[0]
        else:
            grid = budgets_for(graph.n_edges)
            masks = circuit_masks(graph, sc["scores"], grid, policy)
            f = evaluate_masks(p.engine(), masks, metric)["f"]
            pick = next((i for i, x in enumerate(f) if math.isfinite(x) and x >= target), len(grid) - 1)
            mask = masks[pick]
        circuits.append(mask)
    k = len(resolved)
    F = [[math.nan] * k for _ in range(k)]
    values = []
    for i, (r, p) in enumerate(resolved):
        ev = evaluate_masks(p.engine(), circuits, metric)
        F[i] = ev["f"]
        values.append({"v_full": ev["v_full"], "v_empty": ev["v_empty"], "reason": ev["reason"]})
    Fr = [[F[i][j] / F[i][i] if F[i][i] and math.isfinite(F[i][i]) else math.nan for j in range(k)] for i in range(k)]
    circ = [graph.circuit_from_mask(m) for m in circuits]
    ov = [[circuit_overlap(circ[i], circ[j], graph.n_edges) for j in range(k)] for i in range(k)]
    doc = {"schema": results.SCHEMA, "method": method, "policy": policy, "metric": metric, "target": target,
           "budget": budget, "settings": labels, "n_edges": graph.n_edges,
           "circuit_edges": [len(c.edges) for c in circ], "F": F, "F_renorm": Fr,
           "edge_iou": [[o["edge_iou"] for o in row] for row in ov],
           "node_iou": [[o["node_iou"] for o in row] for row in ov],
           "recall": [[o["recall_a"] for o in row] for row in ov],
           "p_value": [[o["p_value"] for o in row] for row in ov], "baselines": values,
           "circuits": [sorted(c.edges) for c in circ],
           "note": "F[i][j]: circuit found on settings[j] evaluated on settings[i]"}
    if write:
        _write_study(doc, Path(out_dir or "results") / "overlap" / results.safe_component(method) / _settings_tag(labels),
              "overlap", plot_overlap)
    return doc


def _settings_tag(labels: Sequence[str]) -> str:
    import hashlib

    tag = results.safe_component("+".join(labels))
    return tag if len(tag) <= 80 else tag[:60] + "-" + hashlib.sha256(tag.encode()).hexdigest()[:12]


def plot_overlap(doc: dict, path: Path) -> str:
    plt = _plt()
    labels = doc["settings"]
    k = len(labels)
    fig, axes = plt.subplots(1, 2, figsize=(5 + 1.1 * k, 2.5 + 0.5 * k))
    for ax, key, title in ((axes[0], "F", "faithfulness F[eval][circuit]"), (axes[1], "edge_iou", "edge IoU")):
        M = np.array([[np.nan if v is None else v for v in row] for row in doc[key]], dtype=float)
        finite = np.isfinite(M).any()
        im = ax.imshow(M, vmin=min(0.0, np.nanmin(M)) if finite else 0, vmax=max(1.0, np.nanmax(M)) if finite else 1,
                       cmap="viridis")
        for i in range(k):
            for j in range(k):
                ax.text(j, i, _fmt(float(M[i, j])), ha="center", va="center", fontsize=7,
                        color="black" if np.isfinite(M[i, j]) and M[i, j] > 0.6 else "white")
        ax.set_xticks(range(k))
        ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(k))
        ax.set_yticklabels(labels if key == "F" else [], fontsize=7)
        ax.set(xlabel="circuit found on", ylabel="evaluated on" if key == "F" else "", title=title)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"{doc['method']} circuits ({doc['policy']}, target f {doc['target']})", fontsize=9)
    return _save(fig, path)


# ---- CLI wrappers ------------------------------------------------------------------------------------------------
def _common(args) -> dict[str, Any]:
    from benchmark.console import _setup_torch
    from benchmark.runner import DEFAULT_N

    _setup_torch(getattr(args, "device", "cpu") or "cpu")
    return {"model": getattr(args, "model", None), "n": getattr(args, "n", None) or DEFAULT_N,
            "seed": getattr(args, "seed", 0) or 0, "ablation": getattr(args, "ablation", None) or "corrupted",
            "out_dir": getattr(args, "out", None) or "results", "cache": True}


def _need_case(args, what: str) -> str:
    case = getattr(args, "case", None)
    if not case:
        raise UsageError(f"eval {what} needs a case: -i ID")
    return str(case)


def _policy(args) -> str:
    p = getattr(args, "policy", None)
    return p if p in POLICIES else "greedy"  # eval faithfulness' --policy choices lack greedy; topk-* pass through


def _print(args, doc: dict, lines: list[str]) -> int:
    with json_stdout(getattr(args, "json", False)) as out:
        if getattr(args, "json", False):
            emit(doc, out)
        else:
            for line in lines:
                print(line, file=out)
            for k, v in (doc.get("paths") or {}).items():
                print(f"  {k}: {v}", file=out)
    return 0


def cmd_eval_pareto(args) -> int:
    case = _need_case(args, "pareto")
    doc = pareto(case, methods=getattr(args, "methods", None) or DEFAULT_METHODS, policy=_policy(args), **_common(args))
    lines = [f"case {doc['case']} ({doc['model']}), {doc['n_edges']} edges, {doc['policy']} selection"]
    for spec, r in doc["methods"].items():
        lines.append(f"  {spec:<40} CPR {_fmt(r.get('cpr'))}  CMD {_fmt(r.get('cmd'))}  edges for f>=0.8: "
                     f"{r.get('edges_for_f80')}  f>=0.9: {r.get('edges_for_f90')}  (method {r['method_seconds']:.1f}s)")
    gt = doc.get("ground_truth") or {}
    lines.append(f"  ground truth: {gt.get('kept')} edges, f = {_fmt(gt.get('faithfulness'))}")
    return _print(args, doc, lines)


def cmd_eval_agreement(args) -> int:
    case = _need_case(args, "agreement")
    doc = agreement(case, methods=getattr(args, "methods", None) or DEFAULT_METHODS, **_common(args))
    lines = [f"case {doc['case']} ({doc['model']}), {doc['n_edges']} edges, vs exact patching "
             f"(method {doc['reference_method_seconds']:.1f}s; set-up {doc['setup_seconds']:.1f}s)"]
    for spec, r in doc["methods"].items():
        if "pearson" not in r:
            lines.append(f"  {spec:<40} {r.get('reason')}")
            continue
        lines.append(f"  {spec:<40} top-k_eff {_fmt(r['topk_eff'])} (k={r['k_eff']})  AO {_fmt(r['ao_eff'])}  "
                     f"top-5% {_fmt(_bar_value(r, 'top5'))}  Pearson {_fmt(r['pearson'])}  Spearman "
                     f"{_fmt(r['spearman'])}  Kendall {_fmt(r['kendall'])}")
    return _print(args, doc, lines)


def cmd_eval_ig_steps(args) -> int:
    case = _need_case(args, "ig-steps")
    steps = getattr(args, "steps", None) or DEFAULT_STEPS
    variant = getattr(args, "ig_variant", None) or "inputs"
    doc = ig_steps(case, steps=steps, variant=variant, policy=_policy(args), **_common(args))
    lines = [f"case {doc['case']} ({doc['model']}), EAP-IG {doc['variant']}; exact CPR "
             f"{_fmt(doc['reference']['cpr'])} CMD {_fmt(doc['reference']['cmd'])}"]
    for r in doc["rows"]:
        lines.append(f"  steps {r['steps']:>3}  top-k_eff {_fmt(r['topk_eff'])}  Pearson {_fmt(r['pearson'])}  "
                     f"Kendall {_fmt(r['kendall'])}  CPR {_fmt(r['cpr'])}  CMD {_fmt(r['cmd'])}  "
                     f"method {r['method_seconds']:.2f}s")
    return _print(args, doc, lines)


def cmd_eval_overlap(args) -> int:
    c = _common(args)
    cases = list(getattr(args, "cases", None) or [])
    if not cases and getattr(args, "case", None):
        cases = [f"{args.case}@{c['seed']}", f"{args.case}@{c['seed'] + 1}"]  # one case, two data seeds
    methods = getattr(args, "methods", None) or ["eap-ig"]
    if len(methods) != 1:
        raise UsageError(f"eval overlap takes one method, got {len(methods)}: {' '.join(methods)}")
    doc = cross_case(cases, method=methods[0], policy=_policy(args), **c)
    w = max(len(s) for s in doc["settings"])
    lines = [f"{doc['method']} circuits ({doc['policy']}, target f {doc['target']}); rows: evaluated on, "
             f"columns: circuit from"]
    lines.append(" " * (w + 2) + "  ".join(f"{s:>{w}}" for s in doc["settings"]) + "   | edge IoU")
    for i, s in enumerate(doc["settings"]):
        lines.append(f"  {s:<{w}}  " + "  ".join(f"{_fmt(x):>{w}}" for x in doc["F"][i]) + "   | "
                     + " ".join(_fmt(x) for x in doc["edge_iou"][i]))
    return _print(args, doc, lines)
