"""Faithfulness study (issue 10): EAP vs EAP-IG vs exact patching.

Four studies, each a library function that writes ``<name>.json`` and ``<name>.png`` atomically and
returns a small frozen dataclass (:class:`ParetoStudy`, :class:`AgreementStudy`, :class:`IgStepsStudy`,
:class:`OverlapStudy`) whose ``to_json()`` is the document written (their ``eval`` CLI wrappers,
``benchmark.study_cli``, print it); selection and
faithfulness come from ``evaluations.selection`` / ``evaluations.faithfulness``, the plots from
``evaluations.plots``:

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
Settings whose graphs differ are rejected with a ValueError naming the groups. Bad input (an unknown case,
model, method or policy, a bad spec) raises ValueError / TypeError; ``benchmark.study_cli`` makes those
usage errors.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from benchmark.console import log
from benchmark.methodflags import parse_method
from benchmark.runner import Job, ProblemCache
from cases import get_case
from core import results
from core.registry import UnknownNameError
from evaluations.agreement import circuit_overlap, score_agreement
from evaluations.faithfulness import MIB_FRACTIONS, cpr_cmd as mib_areas, edges_to_reach, evaluate_masks
from evaluations.plots import bar_value, plot_agreement, plot_ig_steps, plot_overlap, plot_pareto
from evaluations.selection import (POLICIES, budgets_for, check_policy, circuit_masks, edge_score_vector,
                                   greedy_order)
from methods import get_method
from methods.attribution import IG_VARIANTS

__all__ = ["DEFAULT_METHODS", "DEFAULT_STEPS", "POLICIES", "REFERENCE", "Setting", "MethodScores", "MibAreas",
           "StudyHead", "ParetoStudy", "AgreementStudy", "IgStepsStudy", "OverlapStudy", "agreement", "budgets_for",
           "circuit_masks", "clear_cache", "cpr_cmd", "cross_case", "edges_to_reach", "evaluate_masks",
           "greedy_order", "ig_steps", "method_scores", "pareto", "parse_method", "parse_setting", "setting_problem"]

DEFAULT_METHODS = ("eap", "eap-ig")
DEFAULT_STEPS = (1, 2, 5, 10, 20, 50)
REFERENCE = "exact"


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


@dataclass(frozen=True)
class MethodScores:
    """One method's scores on a setting: ``scores`` [E] ranking scores (NaN = unscored) or None, ``signed`` [E]
    signed scores (or the ranking scores), ``sweep`` [(param, mask)] or None, ``method_seconds``
    (``discover`` alone), its full ``params``; ``cached``: the file they were read from."""
    method: str
    spec: str
    params: dict[str, Any]
    scores: np.ndarray | None
    signed: np.ndarray | None
    sweep: list[tuple[float, torch.Tensor]] | None
    method_seconds: float
    cached: str | None = None


@dataclass(frozen=True)
class MibAreas:
    """MIB's CPR / CMD: the faithfulness ``f`` at the requested ``fractions`` and the areas."""
    fractions: list[float]
    f: list[float]
    cpr: float
    cmd: float


@dataclass(frozen=True, kw_only=True)
class StudyHead:
    """The head every per-setting study document starts with. ``setup_seconds``: building the setting's
    model, data and patching engine (once per process); every ``method_seconds`` is ``discover`` alone."""
    case: str
    model: str | None
    n: int
    seed: int
    ablation: str
    n_edges: int
    setup_seconds: float | None
    paths: dict[str, str] | None = None  # {"json", "png"} once written

    def _head(self) -> dict[str, Any]:
        return {"schema": results.SCHEMA, "case": self.case, "model": self.model, "n": self.n, "seed": self.seed,
                "ablation": self.ablation, "n_edges": self.n_edges, "setup_seconds": self.setup_seconds}

    def _tail(self) -> dict[str, Any]:
        return {} if self.paths is None else {"paths": self.paths}


@dataclass(frozen=True, kw_only=True)
class ParetoStudy(StudyHead):
    """:func:`pareto`'s result; ``baselines``: ``{"v_full", "v_empty", "reason"}`` (None: no method gave scores)."""
    policy: str
    metric: str
    budgets: list[int]
    methods: dict[str, dict[str, Any]]
    baselines: dict[str, Any] | None
    ground_truth: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {**self._head(), "policy": self.policy, "metric": self.metric, "budgets": self.budgets,
                "methods": self.methods, **(self.baselines or {}), "ground_truth": self.ground_truth, **self._tail()}


@dataclass(frozen=True, kw_only=True)
class AgreementStudy(StudyHead):
    """:func:`agreement`'s result."""
    signed: bool
    reference: str
    reference_method_seconds: float
    methods: dict[str, dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {**self._head(), "signed": self.signed, "reference": self.reference,
                "reference_method_seconds": self.reference_method_seconds, "methods": self.methods, **self._tail()}


@dataclass(frozen=True, kw_only=True)
class IgStepsStudy(StudyHead):
    """:func:`ig_steps`'s result; ``reference``: exact patching's ``{"cpr", "cmd", "method_seconds"}``."""
    variant: str
    policy: str
    metric: str
    reference_method_seconds: float
    rows: list[dict[str, Any]]
    reference: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {**self._head(), "variant": self.variant, "policy": self.policy, "metric": self.metric,
                "reference_method_seconds": self.reference_method_seconds, "rows": self.rows,
                "reference": self.reference, **self._tail()}


OVERLAP_NOTE = "F[i][j]: circuit found on settings[j] evaluated on settings[i]"


@dataclass(frozen=True, kw_only=True)
class OverlapStudy:
    """:func:`cross_case`'s result (matrices indexed [evaluated on][circuit from], see :data:`OVERLAP_NOTE`)."""
    method: str
    policy: str
    metric: str
    target: float
    budget: int | None
    settings: list[str]
    n_edges: int
    circuit_edges: list[int]
    F: list[list[float]]
    F_renorm: list[list[float]]
    edge_iou: list[list[float]]
    node_iou: list[list[float]]
    recall: list[list[float]]
    p_value: list[list[float]]
    baselines: list[dict[str, Any]]
    circuits: list[list[str]]
    paths: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"schema": results.SCHEMA, "method": self.method, "policy": self.policy, "metric": self.metric,
                "target": self.target, "budget": self.budget, "settings": self.settings, "n_edges": self.n_edges,
                "circuit_edges": self.circuit_edges, "F": self.F, "F_renorm": self.F_renorm,
                "edge_iou": self.edge_iou, "node_iou": self.node_iou, "recall": self.recall, "p_value": self.p_value,
                "baselines": self.baselines, "circuits": self.circuits, "note": OVERLAP_NOTE,
                **({} if self.paths is None else {"paths": self.paths})}


_PROBLEMS = ProblemCache(size=8)  # the runner's problem cache (a few settings), built by runner.build_problem
_SETUP_SECONDS: dict[Setting, float] = {}
_SCORES: dict[tuple, MethodScores] = {}


def clear_cache() -> None:
    global _PROBLEMS
    _PROBLEMS = ProblemCache(size=8)
    _SETUP_SECONDS.clear()
    _SCORES.clear()


def _resolve(case_id: str, model: str | None):
    """(case, model kind); ValueError naming an unknown case or model."""
    try:
        case = get_case(str(case_id))
    except UnknownNameError as err:
        raise ValueError(str(err)) from None
    return case, case.resolve_model(model)


def _job(s: Setting) -> Job:
    return Job(case=s.case, method="none", model=s.model, seed=s.seed, n=s.n, ablation=s.ablation)


def setting_problem(s: Setting):
    """(case, resolved setting, Problem) for a setting; the problem and its patching engine (clean and
    ablated activations) are built here by the runner's problem cache, timed (``setup_seconds``: never
    charged to the first method)."""
    case, kind = _resolve(s.case, s.model)
    s = Setting(str(case.id), kind, int(s.seed), int(s.n), s.ablation)
    t0 = time.perf_counter()
    problem, reused = _PROBLEMS.get(_job(s), case, kind)
    if not reused or s not in _SETUP_SECONDS:
        problem.engine()
        _SETUP_SECONDS[s] = time.perf_counter() - t0
    return case, s, problem


def _cache_file(cache_dir: str | Path, s: Setting, name: str, params: dict, cls) -> Path:
    """``cache_dir/<case>/<model>/study/cache/<method>-<hash>.json``; the hash covers the setting, the
    model's weights (sha256, or what determines an unhashed model), the method's full parameters and
    the source of the method's module, so neither retrained weights nor edited code are ever reused."""
    try:
        src = Path(inspect.getsourcefile(cls)).read_bytes()
    except (TypeError, OSError):
        src = b""
    key = results.dumps({"setting": [s.case, s.model, s.seed, s.n, s.ablation], "method": name, "params": params,
                         "model": _job(s).model_ref().identity()}, indent=None).encode() + hashlib.sha256(src).digest()
    return (_study_dir(cache_dir, s) / "cache" /
            f"{results.safe_component(name)}-{hashlib.sha256(key).hexdigest()[:16]}.json")


def _read_cached(path: Path, name: str, spec: str) -> MethodScores:
    d = json.loads(path.read_text())
    nan = lambda v: np.array([math.nan if x is None else x for x in v], dtype=np.float64)  # noqa: E731
    return MethodScores(name, spec, d["params"], nan(d["scores"]), nan(d["signed"]), None, d["seconds"], str(path))


def method_scores(s: Setting, spec: str, cache_dir: str | Path | None = None) -> MethodScores:
    """Run one method on a setting (cached in memory; on disk under ``cache_dir`` when given); its
    ``method_seconds`` are ``discover`` alone (the setting's set-up is the setting's ``setup_seconds``)."""
    name, params = parse_method(spec)
    _, s, problem = setting_problem(s)
    key = (s, name, tuple(sorted((k, repr(v)) for k, v in params.items())))
    if key in _SCORES:
        return _SCORES[key]
    method = get_method(name, **params)
    path = _cache_file(cache_dir, s, name, method.params(), type(method)) if cache_dir else None
    if path is not None and path.is_file():
        _SCORES[key] = _read_cached(path, name, spec)
        return _SCORES[key]
    torch.manual_seed(s.seed)
    t0 = time.perf_counter()
    out = method.discover(problem)
    seconds = time.perf_counter() - t0
    edges = problem.graph.edges
    scores = signed = None
    if out.edge_scores:
        scores = edge_score_vector(problem.graph, out.edge_scores).numpy()
        sig = out.signed_edges
        signed = np.array([float(sig.get(e, math.nan)) for e in edges]) if isinstance(sig, dict) else scores
    sweep = [(float(p), problem.graph.mask_for(c)) for p, c in out.sweep] if out.sweep else None
    doc = MethodScores(name, spec, method.params(), scores, signed, sweep, seconds)
    if path is not None and scores is not None and sweep is None:
        results.write_json_atomic(path, {"case": s.case, "model": s.model, "seed": s.seed, "n": s.n,
                                         "ablation": s.ablation, "method": name, "params": doc.params,
                                         "seconds": seconds, "edges": edges, "scores": scores, "signed": signed})
    _SCORES[key] = doc
    return doc


def cpr_cmd(engine, graph, scores: np.ndarray, policy: str, metric: str = "loss") -> MibAreas:
    """MIB's CPR / CMD over ``MIB_FRACTIONS`` (requested fractions, linear axis) with ``policy``."""
    E = graph.n_edges
    req = [int(p * E) for p in MIB_FRACTIONS]
    ev = evaluate_masks(engine, circuit_masks(graph, scores, req, policy), metric)
    cpr, cmd = mib_areas(ev.f, MIB_FRACTIONS)
    return MibAreas(list(MIB_FRACTIONS), ev.f, cpr, cmd)


# ---- output helpers ----------------------------------------------------------------------------------------
def _study_dir(out_dir: str | Path | None, s: Setting) -> Path:
    return Path(out_dir or "results") / results.safe_component(s.case) / results.safe_component(str(s.model)) / "study"


def _methods_with_reference(methods: Sequence[str] | None) -> list[str]:
    specs = [REFERENCE] + [m for m in (methods or DEFAULT_METHODS) if m != REFERENCE]
    for m in specs:
        parse_method(m)
    return list(dict.fromkeys(specs))


def _head(s: Setting, problem) -> dict[str, Any]:
    """The :class:`StudyHead` fields of a setting's study."""
    return {"case": s.case, "model": s.model, "n": s.n, "seed": s.seed, "ablation": s.ablation,
            "n_edges": problem.graph.n_edges, "setup_seconds": _SETUP_SECONDS.get(s)}


# ---- pareto ---------------------------------------------------------------------------------------------------
def pareto(case_id: str, model: str | None = None, methods: Sequence[str] | None = DEFAULT_METHODS, n: int = 200,
           seed: int = 0, ablation: str = "corrupted", out_dir: str | Path | None = "results",
           policy: str = "greedy", metric: str = "loss", budgets: Sequence[int] | None = None,
           write: bool = True, cache: bool = False) -> ParetoStudy:
    """Faithfulness vs edges kept (after pruning) for each method, exact patching always included.

    Returns (and writes as ``pareto.json``, with ``pareto.png``) a :class:`ParetoStudy`: ``methods``
    ``{spec: {"requested", "kept", "faithfulness", "cpr", "cmd", "edges_for_f80", "edges_for_f90",
    "method_seconds", ...}}``, ``ground_truth`` ``{"kept", "faithfulness"}``, ``baselines`` (``v_full``,
    ``v_empty``), .... Methods with only a sweep of circuits (ACDC, SP) get one point per circuit under
    ``"points"``.
    """
    check_policy(policy)
    specs = _methods_with_reference(methods)
    case, s, problem = setting_problem(Setting(str(case_id), model, seed, n, ablation))
    graph, engine = problem.graph, problem.engine()
    budgets = list(budgets) if budgets is not None else budgets_for(graph.n_edges)
    head = _head(s, problem)
    rows: dict[str, dict[str, Any]] = {}
    baselines = None
    for spec in specs:
        log(f"pareto: {spec} on case {s.case} ({s.model})")
        rows[spec], ev = _pareto_row(engine, graph, method_scores(s, spec, out_dir if cache else None), budgets,
                                     policy, metric)
        if ev is not None:
            baselines = {"v_full": ev["v_full"], "v_empty": ev["v_empty"], "reason": ev["reason"]}
    try:
        gt = graph.prune(graph.mask_for(case.ground_truth(s.model)))
        truth = {"kept": int(gt.sum()), "faithfulness": evaluate_masks(engine, [gt], metric)["f"][0]}
    except Exception as err:  # noqa: BLE001 -- a case without a usable ground truth still gets its curves
        truth = {"kept": None, "faithfulness": None, "reason": f"{type(err).__name__}: {err}"}
    out = ParetoStudy(**head, policy=policy, metric=metric, budgets=budgets, methods=rows,
                      baselines=baselines, ground_truth=truth)
    return _write_study(out, _study_dir(out_dir, s), "pareto", plot_pareto) if write else out


def _pareto_row(engine, graph, sc: MethodScores, budgets: list[int], policy: str, metric: str):
    """(one method's row of :func:`pareto`, the evaluation of its score curve or None)."""
    row: dict[str, Any] = {"params": sc.params, "method_seconds": sc.method_seconds}
    ev = None
    if sc.scores is not None:
        masks = circuit_masks(graph, sc.scores, budgets, policy)
        ev = evaluate_masks(engine, masks, metric)
        kept = [int(m.sum()) for m in masks]
        mib = cpr_cmd(engine, graph, sc.scores, policy, metric)
        row.update(requested=budgets, kept=kept, faithfulness=ev["f"], values=ev["values"], cpr=mib.cpr,
                   cmd=mib.cmd, edges_for_f80=edges_to_reach(kept, ev["f"], 0.8),
                   edges_for_f90=edges_to_reach(kept, ev["f"], 0.9))
    if sc.sweep:
        masks = [graph.prune(m) for _, m in sc.sweep]
        swept = evaluate_masks(engine, masks, metric)
        row["points"] = [{"param": p, "kept": int(m.sum()), "faithfulness": f}
                         for (p, _), m, f in zip(sc.sweep, masks, swept["f"])]
    return row, ev


def _write_study(study, where: Path, name: str, plot):
    """``study`` with its ``paths``, after writing ``NAME.png`` (via ``plot(document, path)``) and
    ``NAME.json`` (its ``to_json()``) into ``where``."""
    study = replace(study, paths={"json": str(where / f"{name}.json"), "png": str(where / f"{name}.png")})
    plot(study.to_json(), where / f"{name}.png")
    results.write_json_atomic(where / f"{name}.json", study.to_json())
    return study


# ---- agreement ------------------------------------------------------------------------------------------------
def agreement(case_id: str, model: str | None = None, methods: Sequence[str] | None = DEFAULT_METHODS, n: int = 200,
              seed: int = 0, ablation: str = "corrupted", out_dir: str | Path | None = "results",
              signed: bool = False, write: bool = True, cache: bool = False, **kw) -> AgreementStudy:
    """Agreement of each method's edge scores with exact patching (``evaluations.agreement``);
    ``agreement.json`` + ``agreement.png`` (bars of the statistics, scatter of |score| vs |exact|)."""
    specs = [m for m in _methods_with_reference(methods) if m != REFERENCE]
    _, s, problem = setting_problem(Setting(str(case_id), model, seed, n, ablation))
    ref = method_scores(s, REFERENCE, out_dir if cache else None)
    head = _head(s, problem)
    rows: dict[str, dict[str, Any]] = {}
    scatter = {}
    for spec in specs:
        log(f"agreement: {spec} on case {s.case} ({s.model})")
        sc = method_scores(s, spec, out_dir if cache else None)
        if sc.signed is None:
            rows[spec] = {"reason": "the method gives no edge scores (circuits only)",
                          "method_seconds": sc.method_seconds}
            continue
        row = score_agreement(sc.signed, ref.signed, signed=signed, **kw)
        row.update(method_seconds=sc.method_seconds, params=sc.params)
        rows[spec] = row
        scatter[spec] = sc.signed
    out = AgreementStudy(**head, signed=signed, reference=REFERENCE,
                         reference_method_seconds=ref.method_seconds, methods=rows)
    if not write:
        return out
    return _write_study(out, _study_dir(out_dir, s), "agreement",
                        lambda d, path: plot_agreement(d, scatter, ref.signed, path))


# ---- IG steps -------------------------------------------------------------------------------------------------
def ig_steps(case_id: str, model: str | None = None, steps: Sequence[int] = DEFAULT_STEPS, n: int = 200, seed: int = 0,
             ablation: str = "corrupted", out_dir: str | Path | None = "results", variant: str = "inputs",
             policy: str = "greedy", metric: str = "loss", write: bool = True,
             cache: bool = False) -> IgStepsStudy:
    """EAP-IG (``variant``) per step count: agreement with exact patching, CPR / CMD, wall time; plain EAP
    as the step-0 baseline. ``ig_steps.json`` + ``ig_steps.png``."""
    check_policy(policy)
    if variant not in IG_VARIANTS:
        raise ValueError(f"unknown IG variant {variant!r}; expected one of {', '.join(IG_VARIANTS)}")
    steps = [int(x) for x in steps]
    if not steps or min(steps) < 1:
        raise ValueError("--steps needs positive integers (e.g. 1 2 5 10 20 50)")
    _, s, problem = setting_problem(Setting(str(case_id), model, seed, n, ablation))
    graph, engine = problem.graph, problem.engine()
    ref = method_scores(s, REFERENCE, out_dir if cache else None)
    head = _head(s, problem)
    ref_mib = cpr_cmd(engine, graph, ref.scores, policy, metric)
    rows = []
    for m in [0] + steps:
        spec = "eap" if m == 0 else f"eap-ig[ig_variant={variant!r},integrated_grad_steps={m}]"
        log(f"ig-steps: {spec} on case {s.case} ({s.model})")
        sc = method_scores(s, spec, out_dir if cache else None)
        ag = score_agreement(sc.signed, ref.signed)
        mib = cpr_cmd(engine, graph, sc.scores, policy, metric)
        rows.append({"method": "eap" if m == 0 else "eap-ig", "steps": m, "method_seconds": sc.method_seconds,
                     "pearson": ag["pearson"], "spearman": ag["spearman"], "kendall": ag["kendall"],
                     "topk_eff": ag["topk_eff"], "ao_eff": ag["ao_eff"], "k_eff": ag["k_eff"],
                     "top5": bar_value(ag, "top5"), "cpr": mib.cpr, "cmd": mib.cmd, "f": mib.f,
                     "reasons": ag["reasons"]})
    out = IgStepsStudy(**head, variant=variant, policy=policy, metric=metric,
                       reference_method_seconds=ref.method_seconds, rows=rows,
                       reference={"cpr": ref_mib.cpr, "cmd": ref_mib.cmd, "method_seconds": ref.method_seconds})
    return _write_study(out, _study_dir(out_dir, s), "ig_steps", plot_ig_steps) if write else out


# ---- cross-case overlap ----------------------------------------------------------------------------------------
def parse_setting(text: str, model: str | None = None, seed: int = 0, n: int = 200,
                  ablation: str = "corrupted") -> Setting:
    """``CASE[:MODEL][@SEED]`` (e.g. ``3``, ``3:siit``, ``ioi:natural@1``)."""
    m = re.fullmatch(r"([^:@\s]+)(?::([^:@\s]+))?(?:@(\d+))?", text.strip())
    if not m:
        raise ValueError(f"bad case spec {text!r}; expected CASE[:MODEL][@SEED], e.g. 3:siit@1")
    return Setting(m.group(1), m.group(2) or model, int(m.group(3)) if m.group(3) else seed, n, ablation)


def cross_case(settings: Sequence[str | Setting], model: str | None = None, method: str = "eap-ig", n: int = 200,
               seed: int = 0, ablation: str = "corrupted", out_dir: str | Path | None = "results",
               policy: str = "greedy", target: float = 0.85, budget: int | None = None, metric: str = "loss",
               write: bool = True, cache: bool = False) -> OverlapStudy:
    """Circuits of ``method`` found on each setting, evaluated on every other setting (same graph only).

    Each setting's circuit is the smallest on the budget grid whose own f >= ``target`` (reference §1.8
    chose budgets for ~85 %), or exactly ``budget`` requested edges; then pruned. ``F[i][j]`` = f on
    setting i of the circuit found on setting j; ``F_renorm[i][j] = F[i][j] / F[i][i]``; ``edge_iou``,
    ``node_iou``, ``recall[i][j] = |C_i ∩ C_j| / |C_i|`` and hypergeometric ``p_value``.
    ``overlap.json`` + ``overlap.png`` under ``OUT/overlap/<method>/<settings>/``.
    """
    check_policy(policy)
    parse_method(method)
    sets = [parse_setting(x, model, seed, n, ablation) if isinstance(x, str) else x for x in settings]
    if len(sets) < 2:
        raise ValueError("overlap needs at least two settings (--cases A B ..., e.g. 3:siit@0 3:siit@1)")
    resolved = [setting_problem(st)[1:] for st in sets]
    graph = _same_graph(resolved)
    labels = [r.label for r, _ in resolved]
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate settings: {' '.join(labels)}")
    circuits = [_circuit(r, p.engine(), graph, method, policy, target, budget, metric, out_dir if cache else None)
                for r, p in resolved]
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
    out = OverlapStudy(method=method, policy=policy, metric=metric, target=target, budget=budget, settings=labels,
                       n_edges=graph.n_edges, circuit_edges=[len(c.edges) for c in circ], F=F, F_renorm=Fr,
                       edge_iou=[[o["edge_iou"] for o in row] for row in ov],
                       node_iou=[[o["node_iou"] for o in row] for row in ov],
                       recall=[[o["recall_a"] for o in row] for row in ov],
                       p_value=[[o["p_value"] for o in row] for row in ov], baselines=values,
                       circuits=[sorted(c.edges) for c in circ])
    if not write:
        return out
    where = Path(out_dir or "results") / "overlap" / results.safe_component(method) / _settings_tag(labels)
    return _write_study(out, where, "overlap", plot_overlap)


def _same_graph(resolved: list) -> Any:
    """The graph every (setting, problem) shares; a ValueError naming the groups otherwise."""
    shapes: dict[tuple, list[str]] = {}
    for r, p in resolved:
        shapes.setdefault(tuple(p.graph.edges), []).append(r.label)
    if len(shapes) > 1:
        groups = "; ".join(f"[{', '.join(v)}] ({len(k)} edges)" for k, v in shapes.items())
        raise ValueError(f"overlap needs settings whose models have the same graph; got groups {groups}")
    return resolved[0][1].graph


def _circuit(s: Setting, engine, graph, method: str, policy: str, target: float, budget: int | None, metric: str,
             cache_dir) -> torch.Tensor:
    """The pruned circuit of ``method`` on a setting: exactly ``budget`` requested edges, or the smallest
    on the budget grid whose own f >= ``target``."""
    sc = method_scores(s, method, cache_dir)
    if sc.scores is None:
        raise ValueError(f"method {method!r} gives no edge scores; overlap needs a scoring method")
    if budget is not None:
        return circuit_masks(graph, sc.scores, [int(budget)], policy)[0]
    grid = budgets_for(graph.n_edges)
    masks = circuit_masks(graph, sc.scores, grid, policy)
    f = evaluate_masks(engine, masks, metric).f
    pick = next((i for i, x in enumerate(f) if math.isfinite(x) and x >= target), len(grid) - 1)
    return masks[pick]


def _settings_tag(labels: Sequence[str]) -> str:
    tag = results.safe_component("+".join(labels))
    return tag if len(tag) <= 80 else tag[:60] + "-" + hashlib.sha256(tag.encode()).hexdigest()[:12]
