"""Running jobs: one (case, model, method, parameters, seed) each, written as one result.json.

:func:`run_any_job` is the one entry point for a job of either method family: a circuit method's
:class:`Job` runs here (:func:`run_job`), a direction method's ``benchmark.direction.DirectionJob`` in
``benchmark.direction`` (``direction_result.json``); :func:`run_jobs` runs a list of either.

A job never raises for a failure inside its case or method: the error is recorded in its result
(``status: "error"``) so that a sweep goes on; the caller decides the exit status.
"""

from __future__ import annotations

import json
import math
import sys
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch

from benchmark import direction
from benchmark.direction import DirectionJob
from benchmark.safety import JobLock
from cases import get_case
from core import results
from core.circuit import Circuit, compare
from core.graph import Graph
from core.protocols import Case, Method, MethodOutput, Problem
from core.results import DataSpec, Provenance, RunResult, Scores, versions
from evaluations.roc import edge_roc, node_roc
from methods import get_method, method_class

DEFAULT_N = 200
GRAPH_OPTIONS = {"split_qkv": True, "separate_pos": False}  # how build_problem builds every graph


@dataclass
class Job:
    case: str
    method: str
    model: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    n: int = DEFAULT_N
    ablation: str = "corrupted"
    metric: str = "faithfulness"
    device: str = "cpu"
    out: str = "results"
    model_dir: str | None = None  # an explicit model directory (--model-dir): never a silent fallback
    model_seed: int | None = None  # a shipped trained model's training seed (--model-seeds); None: the primary one

    def model_ref(self):
        """The resolved model (``core.provenance.ModelRef``: kind, source, weights sha256), from files
        only (file hashes are memoised); raises ValueError / FileNotFoundError for a kind or directory
        the case does not have."""
        case = get_case(self.case)
        if self.model_seed is not None:
            seed_directory(self, case)  # a case or kind without model seeds: ValueError
            return case.model_ref(self.model, self.model_dir, model_seed=self.model_seed)
        if not hasattr(case, "model_ref"):  # a duck-typed plug-in case: what the Case protocol does by default
            return Case.model_ref(case, self.model, self.model_dir)
        return case.model_ref(self.model, self.model_dir)

    def resolved_params(self) -> dict[str, Any]:
        """The method's full hyper-parameters (defaults filled in), so equal configurations share an id.
        Builds the method, so a bad value raises here (ValueError / TypeError), before any work."""
        return self.build_method().params()

    def build_method(self, truth: Circuit | None = None) -> Method:
        """The job's method with its parameters; a method that ``needs_ground_truth`` (the oracle) gets
        ``truth`` too (None while only its parameters are resolved). Raises for a bad name or value."""
        if getattr(method_class(self.method), "needs_ground_truth", False):
            return get_method(self.method, **{**self.params, "truth": truth})
        return get_method(self.method, **self.params)

    def data_spec(self) -> dict[str, Any]:
        """The data of the run: size, seed and the case's corruption (recorded and part of the id)."""
        spec = getattr(get_case(self.case), "data_spec", None)
        return {"n": self.n, "seed": self.seed, **(spec(self.model_ref().kind) if spec else {})}

    def config(self) -> dict[str, Any]:
        """What determines the run (and so its id): the resolved model (kind and weights sha256), every
        method hyper-parameter with its default, data, ablation, metric, graph options and the result
        schema. The output directory, device and how things were spelled do not."""
        return {"schema": results.SCHEMA, "case": str(self.case), "model": self.model_ref().identity(),
                "method": self.method, "params": self.resolved_params(), "seed": self.seed, "n": self.n,
                "data": self.data_spec(), "ablation": self.ablation, "metric": self.metric, "graph": GRAPH_OPTIONS}

    @property
    def run_id(self) -> str:
        return results.run_id(self.config())

    def path(self, model_kind: str | None = None) -> Path:
        try:
            label = self.model_ref().label
        except Exception:  # noqa: BLE001 -- an unresolvable model: its error result goes under the name given
            label = model_kind or self.model or "default"
        try:
            rid = self.run_id
        except Exception:  # noqa: BLE001 -- bad parameters (validated by the CLI before any job runs)
            rid = results.run_id({"unresolved": {k: v for k, v in vars(self).items() if k != "out"}})
        return results.result_path(self.out, str(self.case), label, self.method, rid)


def validate_jobs(jobs: Iterable[Job]) -> None:
    """Resolve every job's model and method parameters (raises ValueError / TypeError / FileNotFoundError
    naming the problem), so that a bad value stops a command before any job runs."""
    for job in jobs:
        job.model_ref()
        method = job.build_method()
        method.params()
        check = getattr(method, "check_ablation", None)  # optional: a method that cannot use an ablation
        if check is not None:
            check(job.ablation)


class ProblemCache:
    """The Problem of the last (case, model, data) setting (model, dataset, patching engine with its
    clean and ablated activations), reused by the next jobs of the same setting: a benchmark runs the
    jobs of one case back to back, so one entry is enough and the previous case is freed first.

    Reuse cannot change a result: methods receive the same objects they would build, they never
    keep state on them (SP unfreezes the model, gradients are cleared after each job; tested by
    comparing cached and fresh results), and each job reseeds torch before its method runs."""

    def __init__(self, size: int = 1) -> None:
        self.size = size  # settings kept (the study keeps a few: its cross-case evaluation holds several)
        self._entries: OrderedDict[tuple, Any] = OrderedDict()
        self.hits = 0

    def get(self, job: Job, case, model_kind: str):
        key = (str(case.id), model_kind, job.model_dir, job.model_seed, job.n, job.seed, job.ablation, job.metric,
               job.device)
        if key in self._entries:
            self.hits += 1
            self._entries.move_to_end(key)
            problem = self._entries[key]
            problem.model.zero_grad(set_to_none=True)
            return problem, True
        while len(self._entries) >= self.size:  # free the oldest setting before building the next
            self._entries.popitem(last=False)
        self._entries[key] = build_problem(job, case, model_kind)
        return self._entries[key], False


def run_jobs(jobs: Iterable[Job | DirectionJob], resume: bool = False, log=None, on_done=None) -> list[dict[str, Any]]:
    """Jobs in order (:func:`run_any_job`), sharing one ProblemCache (the jobs of a case reuse its activations)."""
    cache = ProblemCache()
    docs = []
    for job in jobs:
        docs.append(run_any_job(job, resume=resume, log=log, cache=cache))
        if on_done is not None:
            on_done(docs[-1])
    return docs


def compute_jobs(jobs: Iterable[Job]) -> list[dict[str, Any]]:
    """Jobs in order on one ProblemCache, writing nothing: each document carries the ``path`` its
    caller writes it to (``results.write_json_atomic``)."""
    cache = ProblemCache()
    return [run_job(job, cache=cache, write=False) for job in jobs]


def case_groups(jobs: list[Job]) -> list[list[Job]]:
    """Consecutive jobs of the same (case, model) setting, in order (one task per group for pools)."""
    groups: list[list[Job]] = []
    for job in jobs:
        last = groups[-1][0] if groups else None
        if last is not None and (last.case, last.model, last.model_dir, last.model_seed) == \
                (job.case, job.model, job.model_dir, job.model_seed):
            groups[-1].append(job)
        else:
            groups.append([job])
    return groups


def _new_result(job: Job) -> RunResult:
    """The result of a job before anything is resolved (what an early failure records)."""
    return RunResult(case=str(job.case), model=job.model, method=job.method, params=dict(job.params), seed=job.seed,
                     data=DataSpec(job.n, job.seed, job.ablation, job.metric), versions=versions())


def _doc(result: RunResult, path: Path | None = None, **extra) -> dict[str, Any]:
    """The document a caller gets back: the result's JSON, then (not written) its ``path`` and ``extra``."""
    out = result.to_json()
    if path is not None:
        out["path"] = str(path)
    out.update(extra)
    return out


def run_any_job(job: Job | DirectionJob, resume: bool = False, log=None, cache: ProblemCache | None = None,
                write: bool = True) -> dict[str, Any]:
    """Run a job of either method family. A direction method's job is a ``DirectionJob`` (the commands
    build one for a method of the ``direction`` family) and runs through
    ``benchmark.direction.run_direction_job``, which always writes its result and shares no problem cache;
    a circuit method's :class:`Job` runs through :func:`run_job`. (The job's type carries the family, so the
    method is never loaded twice.) Returns the result document."""
    if isinstance(job, DirectionJob):
        if not write:
            raise ValueError("a direction job always writes its result (write=False is for circuit jobs)")
        return direction.run_direction_job(job, resume=resume, log=log)
    return run_job(job, resume=resume, log=log, cache=cache, write=write)


def run_job(job: Job, resume: bool = False, log=None, cache: ProblemCache | None = None,
            write: bool = True) -> dict[str, Any]:
    """Run one job and write its result atomically. Returns the result document. With a ``cache``,
    the problem (model, data, activations) of the previous job is reused when the setting matches.
    With ``write=False`` nothing is written: the document (with its ``path``) goes back to a caller
    that writes it (a Ray driver, whose workers need no shared disk)."""
    log = log or (lambda msg: None)
    t0 = time.perf_counter()
    result = _new_result(job)
    try:
        case = get_case(job.case)
        ref = job.model_ref()
        model_kind = ref.kind
        result.model = model_kind
        result.provenance = Provenance(ref.to_json(), job.data_spec(), dict(GRAPH_OPTIONS))
        result.run_id = job.run_id
        path = job.path(model_kind)
        if write:
            results.check_no_links(job.out, path)
        if resume and results.is_finished(path):
            return _finished(path, log)
        lock = JobLock(path.parent) if write else None  # a worker that writes nothing claims nothing
        if lock is not None and not lock.acquire():  # another run on this --out is computing this job
            log(f"skip (claimed by {lock.describe()}): {path}")
            return {**result.to_json(), "status": "claimed", "claimed_by": lock.owner, "skipped": True,
                    "path": str(path), "timing": {"seconds": time.perf_counter() - t0}}
    except Exception as err:  # noqa: BLE001 -- recorded, the sweep goes on
        return _setup_failed(job, result, err, t0, write)
    try:
        if lock is not None and resume and results.is_finished(path):  # finished by another run meanwhile
            return _finished(path, log)
        _run_method(job, result, case, model_kind, log, cache)
        result.timing = {"seconds": time.perf_counter() - t0, **(result.timing or {})}
        if write:
            result.write(path)
    finally:
        if lock is not None:
            lock.release()
    return _doc(result, path)


def _setup_failed(job: Job, result: RunResult, err: Exception, t0: float, write: bool) -> dict[str, Any]:
    """A job whose case, model or parameters did not resolve: its error result, written under the name given
    (with its ``path`` recorded in the file), unless a link is in the way."""
    result.error = f"{type(err).__name__}: {err}"
    result.timing = {"seconds": time.perf_counter() - t0}
    path = job.path()
    result.path = str(path)
    if write:
        try:
            result.write(results.check_no_links(job.out, path))
        except ValueError:  # a link in the way: nothing is written, the error is reported
            result.path = None
            return {**result.to_json(), "path": None}
    return result.to_json()


def _run_method(job: Job, result: RunResult, case, model_kind: str, log, cache: ProblemCache | None) -> None:
    """Run the method into ``result`` (status ``ok``), or record its error (status ``error``)."""
    try:
        _execute(job, result, case, model_kind, log, cache)
        result.status = "ok"
    except Exception as err:  # noqa: BLE001
        result.error = f"{type(err).__name__}: {err}"
        result.traceback = traceback.format_exc(limit=8)
        log(f"error in {job.case}/{job.method}: {result.error}")
    except SystemExit as err:  # a plug-in calling sys.exit() fails its run, not the whole command
        result.error = f"SystemExit: the method called sys.exit({err.code!r})"
        result.traceback = traceback.format_exc(limit=8)
        log(f"error in {job.case}/{job.method}: {result.error}")


def seed_directory(job: Job, case) -> Path | None:
    """The shipped model directory of the job's model seed (None without one). ValueError for a case
    that ships no model seeds, the compiled model, or a seed that is not shipped."""
    if job.model_seed is None:
        return None
    if job.model_dir is not None:
        raise ValueError("--model-dir names one model; --model-seeds picks shipped models: use one of them")
    if not hasattr(case, "seed_dir"):
        raise ValueError(f"case {case.id} ships no trained model seeds (--model-seeds is for the Tracr cases' "
                         "SIIT / IIT / natural models)")
    return Path(case.seed_dir(job.model, job.model_seed))


def _job_directory(job: Job, case) -> Path | None:
    """The model directory a job loads: its ``--model-dir``, its model seed's, or None (the case's kind)."""
    return Path(job.model_dir) if job.model_dir is not None else seed_directory(job, case)


def load_model_and_truth(job: Job, case, model_kind: str):
    """(model, ground truth) of a job: from its ``--model-dir`` (or model seed's directory) when it has one,
    else the case's kind."""
    d = _job_directory(job, case)
    if d is not None:
        return case.load_dir(d, device=job.device)
    return case.load_model(model_kind, device=job.device), None


def job_ground_truth(job: Job, case, model_kind: str):
    """The ground truth of a job's model: its model directory's ``ground_truth.json``, else the case's."""
    d = _job_directory(job, case)
    if d is not None:
        truth = d / "ground_truth.json"
        if truth.is_file():  # every model directory has one (checked before the job runs)
            return Circuit.from_json(json.loads(truth.read_text()))
        return case.load_dir(d)[1]
    return case.ground_truth(model_kind)


def _finished(path: Path, log) -> dict[str, Any]:
    log(f"skip (finished): {path}")
    out = results.load_result(path)
    out["skipped"] = True
    out["path"] = str(path)
    return out


def build_problem(job: Job, case, model_kind: str):
    """Model, data, graph and the Problem a method solves, for a job."""
    print(f"case {case.id}: {job.model_ref().describe()}", file=sys.stderr, flush=True)  # which model, always
    model, _ = load_model_and_truth(job, case, model_kind)
    data = case.dataset(n=job.n, seed=job.seed, model=model_kind).to(job.device)
    graph = Graph.from_model(model, **GRAPH_OPTIONS)
    return Problem(model=model, graph=graph, data=data, output_type=case.output_type, ablation=job.ablation,
                   device=job.device, seed=job.seed, case_id=str(case.id), metric=job.metric)


def _execute(job: Job, result: RunResult, case, model_kind: str, log, cache: ProblemCache | None = None) -> None:
    """Build (or reuse) the problem, run the method and record its output in ``result``."""
    t_setup = time.perf_counter()
    if cache is None:
        problem, reused = build_problem(job, case, model_kind), False
    else:
        problem, reused = cache.get(job, case, model_kind)
    truth = job_ground_truth(job, case, model_kind)
    method = job.build_method(truth)
    problem.engine()  # its clean/ablated activations are set-up, not the first method's time
    torch.manual_seed(job.seed)
    log(f"{job.method} on case {case.id} ({model_kind}): {problem.graph.n_edges} edges, {len(problem.data)} examples")
    t_method = time.perf_counter()
    output = method.discover(problem)
    t_done = time.perf_counter()
    check_output(output, job.method)
    graph = problem.graph
    result.params = method.params()
    result.graph = {"n_nodes": graph.n_nodes, "n_edges": graph.n_edges, "split_qkv": graph.split_qkv}
    result.ground_truth = None if truth is None else truth.to_json()
    result.scores = Scores(output.edge_scores, output.node_scores)
    result.method_info = method_info(output)
    result.roc = no_truth_roc(case.id) if truth is None else method_roc(output, truth, graph)
    result.timing = {"setup_seconds": t_method - t_setup, "method_seconds": t_done - t_method, "problem_reused": reused}
    engine = problem.__dict__.get("_engine")
    if getattr(engine, "ablation_info", None):  # e.g. optimal ablation: how the constants were learned
        result.ablation_info = engine.ablation_info
    if output.sweep is not None:
        result.sweep = [{"param": p, "edges": sorted(c.edges), "nodes": sorted(c.nodes),
                         "vs_ground_truth": None if truth is None else compare(c, truth, graph.nodes, graph.edges).to_json()}
                        for p, c in output.sweep]


def method_info(output: MethodOutput) -> dict[str, Any]:
    """The result's ``method_info``: the method's ``info``, then its signed edge and node scores (where it
    gave them) under ``signed`` and ``signed_nodes``, where result files have always carried them."""
    info = dict(output.info)
    if output.signed_edges is not None:
        info["signed"] = output.signed_edges
    if output.signed_nodes is not None:
        info["signed_nodes"] = output.signed_nodes
    return info


def no_truth_roc(case_id: str) -> dict[str, Any]:
    """The ``roc`` block of a case without a ground truth (its faithfulness evaluations still work)."""
    return {"skipped": f"case {case_id} has no ground truth: ROC skipped (faithfulness evaluations still work)"}


def check_output(output, method: str) -> None:
    """A method's scores must be finite numbers (unknown names fail later, in the ROC): a NaN or infinite
    score fails the run (a ``ValueError`` naming the method) instead of ranking as 'missing' and
    scoring an AUROC of 0.5."""
    for level, scores in (("edge", output.edge_scores), ("node", output.node_scores)):
        if scores is None:
            continue
        if not isinstance(scores, dict):
            raise ValueError(f"method {method} returned {level} scores as a {type(scores).__name__}, not a dict")
        bad = []
        for name, v in scores.items():
            try:
                ok = math.isfinite(float(v))
            except (TypeError, ValueError, OverflowError):
                ok = False
            if not ok:
                bad.append((name, v))
        if bad:
            name, v = bad[0]
            raise ValueError(f"method {method} returned non-finite or non-numeric {level} scores for {len(bad)} of "
                             f"{len(scores)} {level}s (e.g. {name!r}: {v!r:.30}); scores must be finite numbers")


def method_roc(output, truth, graph) -> dict[str, Any]:
    """The result's ``roc`` block. Methods with a hyper-parameter sweep (ACDC, SP) get their ROC from
    the sweep (one point per circuit), as the contract says; their per-edge scores give a second
    curve under ``edges_from_scores``. Methods with scores only get it by thresholding the scores."""
    primary = MethodOutput(sweep=output.sweep, info=output.info) if output.sweep else output
    roc = {"edges": edge_roc(primary, truth, graph).to_json(),
           "nodes": node_roc(primary, truth, graph).to_json(),
           "nodes_no_endpoints": node_roc(primary, truth, graph, include_endpoints=False).to_json()}
    if output.sweep and output.edge_scores:
        roc["edges_from_scores"] = edge_roc(output, truth, graph).to_json()
    return roc


def job_from_result(doc: dict[str, Any] | RunResult, out: str = "results") -> Job:
    """The job that produced a result (to rebuild its model and data, e.g. for faithfulness)."""
    r = doc if isinstance(doc, RunResult) else RunResult.from_json(doc)
    d = r.data  # schema 2 records the model directory in the provenance; older results: the kind only
    return Job(case=r.case, method=r.method, model=r.model, params=r.params,
               seed=0 if r.seed is None else r.seed, n=DEFAULT_N if d.n is None else d.n,
               ablation=d.ablation or "corrupted", metric=d.metric or "faithfulness", out=out, model_dir=r.model_dir,
               model_seed=r.model_seed)
