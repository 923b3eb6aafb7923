"""Running jobs: one (case, model, method, parameters, seed) each, written as one result.json.

A job never raises for a failure inside its case or method: the error is recorded in its result
(``status: "error"``) so that a sweep goes on; the caller decides the exit status.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from core import results
from core.results import versions

DEFAULT_N = 200


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

    def resolved_params(self) -> dict[str, Any]:
        """The method's full hyper-parameters (defaults filled in), so equal configurations share an id."""
        from methods import get_method

        if self.method == "oracle":
            return {}
        try:
            return get_method(self.method, **self.params).params()
        except Exception:  # noqa: BLE001 -- a bad method/param is reported when the job runs
            return dict(self.params)

    def config(self) -> dict[str, Any]:
        """What determines the run (and so its id); the output directory and device do not."""
        return {"case": str(self.case), "model": self.model, "method": self.method,
                "params": self.resolved_params(), "seed": self.seed, "n": self.n, "ablation": self.ablation,
                "metric": self.metric}

    @property
    def run_id(self) -> str:
        return results.run_id(self.config())

    def path(self, model_kind: str | None = None) -> Path:
        return results.result_path(self.out, str(self.case), model_kind or self.model or "default", self.method,
                                   self.run_id)


def resolve_model_kind(job: Job) -> str:
    from cases import get_case

    return get_case(job.case).resolve_model(job.model)


class ProblemCache:
    """The Problem of the last (case, model, data) setting (model, dataset, patching engine with its
    clean and ablated activations), reused by the next jobs of the same setting: a benchmark runs the
    jobs of one case back to back, so one entry is enough and the previous case is freed first.

    Reuse cannot change a result: methods receive the same objects they would build, they never
    keep state on them (SP unfreezes the model, gradients are cleared after each job; tested by
    comparing cached and fresh results), and each job reseeds torch before its method runs."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._problem = None
        self.hits = 0

    def get(self, job: Job, case, model_kind: str):
        key = (str(case.id), model_kind, job.n, job.seed, job.ablation, job.metric, job.device)
        if key == self._key:
            self.hits += 1
            self._problem.model.zero_grad(set_to_none=True)
            return self._problem, True
        self._key, self._problem = None, None  # free the previous case before building the next
        self._problem = build_problem(job, case, model_kind)
        self._key = key
        return self._problem, False


def run_jobs(jobs: Iterable[Job], resume: bool = False, log=None, on_done=None) -> list[dict[str, Any]]:
    """Jobs in order, sharing one ProblemCache (the jobs of a case reuse its activations)."""
    cache = ProblemCache()
    docs = []
    for job in jobs:
        docs.append(run_job(job, resume=resume, log=log, cache=cache))
        if on_done is not None:
            on_done(docs[-1])
    return docs


def case_groups(jobs: list[Job]) -> list[list[Job]]:
    """Consecutive jobs of the same (case, model) setting, in order (one task per group for pools)."""
    groups: list[list[Job]] = []
    for job in jobs:
        if groups and (groups[-1][0].case, groups[-1][0].model) == (job.case, job.model):
            groups[-1].append(job)
        else:
            groups.append([job])
    return groups


def run_job(job: Job, resume: bool = False, log=None, cache: ProblemCache | None = None) -> dict[str, Any]:
    """Run one job and write its result atomically. Returns the result document. With a ``cache``,
    the problem (model, data, activations) of the previous job is reused when the setting matches."""
    log = log or (lambda msg: None)
    t0 = time.perf_counter()
    doc: dict[str, Any] = {
        "schema": results.SCHEMA, "case": str(job.case), "model": job.model, "method": job.method,
        "params": dict(job.params), "seed": job.seed, "status": "error", "error": None,
        "data": {"n": job.n, "seed": job.seed, "ablation": job.ablation, "metric": job.metric},
        "run_id": None, "versions": versions(),
    }
    try:
        from cases import get_case

        case = get_case(job.case)
        model_kind = case.resolve_model(job.model)
        doc["model"] = model_kind
        doc["run_id"] = job.run_id
        path = job.path(model_kind)
        if resume and results.is_finished(path):
            log(f"skip (finished): {path}")
            out = results.load_result(path)
            out["skipped"] = True
            return out
    except Exception as err:  # noqa: BLE001 -- recorded, the sweep goes on
        doc["error"] = f"{type(err).__name__}: {err}"
        doc["timing"] = {"seconds": time.perf_counter() - t0}
        path = job.path()
        results.write_json_atomic(path, doc)
        doc["path"] = str(path)
        return doc
    try:
        doc.update(_execute(job, case, model_kind, log, cache))
        doc["status"] = "ok"
    except Exception as err:  # noqa: BLE001
        doc["error"] = f"{type(err).__name__}: {err}"
        doc["traceback"] = traceback.format_exc(limit=8)
        log(f"error in {job.case}/{job.method}: {doc['error']}")
    doc["timing"] = {"seconds": time.perf_counter() - t0, **doc.get("timing", {})}
    results.write_json_atomic(path, doc)
    doc["path"] = str(path)
    return doc


def build_problem(job: Job, case, model_kind: str):
    """Model, data, graph and the Problem a method solves, for a job."""
    from core.graph import Graph
    from core.protocols import Problem

    model = case.load_model(model_kind, device=job.device)
    data = case.dataset(n=job.n, seed=job.seed, model=model_kind).to(job.device)
    graph = Graph.from_model(model)
    return Problem(model=model, graph=graph, data=data, output_type=case.output_type, ablation=job.ablation,
                   device=job.device, seed=job.seed, case_id=str(case.id), metric=job.metric)


def _execute(job: Job, case, model_kind: str, log, cache: ProblemCache | None = None) -> dict[str, Any]:
    import torch

    from methods import get_method

    t_setup = time.perf_counter()
    if cache is None:
        problem, reused = build_problem(job, case, model_kind), False
    else:
        problem, reused = cache.get(job, case, model_kind)
    truth = case.ground_truth(model_kind)
    params = dict(job.params)
    if job.method == "oracle":
        params["truth"] = truth
    method = get_method(job.method, **params)
    torch.manual_seed(job.seed)
    log(f"{job.method} on case {case.id} ({model_kind}): {problem.graph.n_edges} edges, {len(problem.data)} examples")
    t_method = time.perf_counter()
    output = method.discover(problem)
    t_done = time.perf_counter()
    doc: dict[str, Any] = {
        "params": method.params(),
        "graph": {"n_nodes": problem.graph.n_nodes, "n_edges": problem.graph.n_edges,
                  "split_qkv": problem.graph.split_qkv},
        "ground_truth": truth.to_json(),
        "scores": {"edges": output.edge_scores, "nodes": output.node_scores},
        "method_info": output.info,
        "roc": method_roc(output, truth, problem.graph),
        "timing": {"setup_seconds": t_method - t_setup, "method_seconds": t_done - t_method,
                   "problem_reused": reused},
    }
    engine = problem.__dict__.get("_engine")
    if getattr(engine, "ablation_info", None):  # e.g. optimal ablation: how the constants were learned
        doc["ablation_info"] = engine.ablation_info
    if output.sweep is not None:
        from core.circuit import compare

        graph = problem.graph
        doc["sweep"] = [{"param": p, "edges": sorted(c.edges), "nodes": sorted(c.nodes),
                         "vs_ground_truth": compare(c, truth, graph.nodes, graph.edges).to_json()}
                        for p, c in output.sweep]
    return doc


def method_roc(output, truth, graph) -> dict[str, Any]:
    """The result's ``roc`` block. Methods with a hyper-parameter sweep (ACDC, SP) get their ROC from
    the sweep (one point per circuit), as the contract says; their per-edge scores give a second
    curve under ``edges_from_scores``. Methods with scores only get it by thresholding the scores."""
    from core.protocols import MethodOutput
    from evaluations.roc import edge_roc, node_roc

    primary = MethodOutput(sweep=output.sweep, info=output.info) if output.sweep else output
    roc = {"edges": edge_roc(primary, truth, graph).to_json(),
           "nodes": node_roc(primary, truth, graph).to_json(),
           "nodes_no_endpoints": node_roc(primary, truth, graph, include_endpoints=False).to_json()}
    if output.sweep and output.edge_scores:
        roc["edges_from_scores"] = edge_roc(output, truth, graph).to_json()
    return roc


def job_from_result(doc: dict[str, Any], out: str = "results") -> Job:
    """The job that produced a result (to rebuild its model and data, e.g. for faithfulness)."""
    data = doc.get("data", {})
    return Job(case=doc["case"], method=doc["method"], model=doc.get("model"), params=doc.get("params", {}),
               seed=doc.get("seed", 0), n=data.get("n", DEFAULT_N), ablation=data.get("ablation", "corrupted"),
               metric=data.get("metric", "faithfulness"), out=out)


def job_dict(job: Job) -> dict[str, Any]:
    return asdict(job)
