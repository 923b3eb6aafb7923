"""Direction runs: ``run das|mean-diff|probe|pca|kmeans|random-direction -i sentiment`` and ``eval direction``.

A run fits the method on the case's ``fit`` split (activations at s*, labels, opposite-label pairs), then
scores the vector on the held-out ``test`` split (``evaluations.direction.score_direction``) and writes
``OUT/<case>/direction/<method>/<run-id>/direction_result.json`` atomically. The file is not called
``result.json`` so that the circuit leaderboard (which reads every ``result.json``) never sees it.

Direction methods are the ``direction`` family of the one method registry (``methods``); the model is run
through the one site-patching mechanism (``core.patching``). The job path mirrors the circuit runner's
(``benchmark.runner``): ``run_direction_jobs`` -> ``run_direction_job`` (resume, error documents) ->
``run_direction`` (fit, score, write); ``benchmark.runner.run_any_job`` sends a direction method's job here.
This module is a library (ValueError / TypeError for bad input); the ``run`` / ``eval direction`` commands
are ``benchmark.direction_cli`` (``cmd_run_direction`` and ``cmd_eval_direction`` are still reachable here,
loaded by name, for callers that import them from this module).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from cases import case_ids, get_case
from cases.direction.case import logits_from_site
from cases.direction.data import opposite_pairs
from core import results
from core.patching import patched_forward
from evaluations.direction import PatchSite, activations_at, leaderboard_rows, plot_directions, score_direction
from evaluations.direction import to_csv, to_html, to_markdown
from methods import direction_method_class, get_method
from methods.directions import DirectionMethod, DirectionProblem, unit
from core.naming import act_name

RESULT_NAME = "direction_result.json"
SCHEMA = 1
DEFAULT_N_FIT = 2000
DEFAULT_N_TEST = 1000


def is_direction_case(case_id: str) -> bool:
    return str(case_id) in case_ids("direction")


@dataclass
class DirectionJob:
    case: str
    method: str
    model: str | None = None
    params: dict[str, Any] | None = None
    seed: int = 0
    n_fit: int = DEFAULT_N_FIT
    n_test: int = DEFAULT_N_TEST
    out: str = "results"

    def model_ref(self):
        return get_case(self.case).model_ref(self.model)

    def config(self) -> dict[str, Any]:
        model = self.model_ref().identity()  # kind and weights sha256: a retrained model never shares an id
        return {"kind": "direction", "case": self.case, "model": model, "method": self.method,
                "params": dict(sorted((self.params or {}).items())), "seed": self.seed, "n_fit": self.n_fit,
                "n_test": self.n_test}


def make_method(name: str, params: dict[str, Any] | None = None) -> DirectionMethod:
    """The direction method ``name`` built with ``params`` (a circuit method: TypeError; a bad value:
    the method's ValueError / TypeError)."""
    direction_method_class(name)
    return get_method(name, **(params or {}))


def patch_site(case, model: str | None) -> PatchSite:
    """The case's model and site s* as an ``evaluations.direction.PatchSite``."""
    ds = case.site(model)
    return PatchSite(case.load_model(model), ds.hook_name, ds.position, case.answer_ids(model))


def _patched_logits(site: PatchSite, layer: int, tokens: torch.Tensor) -> Callable:
    """``patched_logits(idx, a_new)`` of a DirectionProblem: answer logits of examples ``idx`` with their
    activation at s* replaced by ``a_new``, run from s* on the cached residual stream when s* is a
    ``hook_resid_pre`` (else the whole model, patched at s*)."""
    m, answers = site.model, list(site.answer_ids)
    if site.hook_name == act_name("resid_pre", layer):
        with torch.no_grad():
            resid = m(tokens, stop_at_layer=layer)
        return lambda idx, a_new: logits_from_site(m, resid[idx], layer, site.position, a_new)[:, answers]

    def patched_logits(idx: torch.Tensor, a_new: torch.Tensor) -> torch.Tensor:
        patch = (site.loc, slice(None), site.at_position(lambda _: a_new))
        return patched_forward(m, tokens[idx], [patch])[:, -1][:, answers]
    return patched_logits


def build_problem(case, model: str | None, split: str, n: int, seed: int):
    """(DirectionProblem, PatchSite, tokens) on ``n`` examples of ``split``."""
    site = patch_site(case, model)
    data = case.dataset(n, seed, model, split=split)
    tokens, labels = data.tokens, data.labels
    acts = activations_at(site, tokens)
    pairs = opposite_pairs(labels, seed + 17)
    problem = DirectionProblem(acts=acts, labels=labels, pairs=pairs, seed=seed,
                               patched_logits=_patched_logits(site, case.site(model).layer, tokens))
    return problem, site, tokens


def result_path(job: DirectionJob) -> Path:
    """``OUT/<case>/direction/<method>/<run-id>/direction_result.json``; resolves ``job.model``."""
    job.model = get_case(job.case).resolve_model(job.model)
    path = Path(job.out) / results.safe_component(job.case) / "direction" / results.safe_component(job.method) \
        / results.run_id(job.config()) / RESULT_NAME
    return results.check_no_links(job.out, path)  # links inside --out are never followed on write


def run_direction_jobs(jobs: Sequence[DirectionJob], resume: bool = False, log=None,
                       on_done=None) -> list[dict[str, Any]]:
    """Jobs in order (``benchmark.runner.run_jobs`` for direction jobs); ``on_done(doc)`` after each."""
    docs = []
    for job in jobs:
        docs.append(run_direction_job(job, resume=resume, log=log))
        if on_done is not None:
            on_done(docs[-1])
    return docs


def run_direction_job(job: DirectionJob, resume: bool = False, log=None) -> dict[str, Any]:
    """One job (``benchmark.runner.run_job`` for direction jobs): with ``resume`` a finished result is kept
    (``skipped``); a failing job writes an error document and returns it (the sweep goes on)."""
    path = result_path(job)
    if resume and results.is_finished(path):
        return {**results.load_result(path), "skipped": True}
    try:
        return run_direction(job, log=log)
    except Exception as err:  # noqa: BLE001 -- one failing job does not stop the others
        doc = {"schema": SCHEMA, "kind": "direction", "status": "error", "case": job.case, "model": job.model,
               "method": job.method, "params": dict(job.params or {}), "seed": job.seed,
               "error": f"{type(err).__name__}: {err}", "path": str(path), "versions": results.versions()}
        results.write_json_atomic(path, doc)
        return doc


def _fit(job: DirectionJob, case) -> tuple[torch.Tensor, dict[str, float]]:
    """The method's unit vector on the fit split, and the data and fit times."""
    method = make_method(job.method, job.params)  # bad params: TypeError/ValueError
    t0 = time.perf_counter()
    problem, _, _ = build_problem(case, job.model, "fit", job.n_fit, job.seed)
    t1 = time.perf_counter()
    torch.manual_seed(job.seed)
    vec = unit(method.fit(problem))
    timing = {"fit_seconds": time.perf_counter() - t1, "data_seconds": t1 - t0}
    if vec.numel() != problem.d_model:
        raise ValueError(f"direction method {job.method} returned {vec.numel()} numbers, not d_model={problem.d_model}")
    return vec, timing


def _score(job: DirectionJob, case, vec: torch.Tensor) -> tuple[dict[str, Any], float]:
    """The metrics of ``vec`` on the test split, and the seconds they took."""
    test = case.dataset(job.n_test, job.seed, job.model, split="test")
    pairs = opposite_pairs(test.labels, job.seed + 29)
    t = time.perf_counter()
    metrics = score_direction(patch_site(case, job.model), test.tokens, test.labels, pairs, vec,
                              case.ground_truth(job.model).vector, seed=job.seed)
    return metrics, time.perf_counter() - t


def run_direction(job: DirectionJob, log=None) -> dict[str, Any]:
    """Fit, score, write. Returns the result document (``path`` = where it was written)."""
    path = result_path(job)
    case = get_case(job.case)
    t0 = time.perf_counter()
    vec, timing = _fit(job, case)
    metrics, eval_seconds = _score(job, case, vec)
    ds = case.ground_truth(job.model)
    doc = {"schema": SCHEMA, "kind": "direction", "status": "ok", "case": job.case, "model": job.model,
           "provenance": {"model": job.model_ref().to_json(),
                          "data": {"n_fit": job.n_fit, "n_test": job.n_test, "seed": job.seed}},
           "method": job.method, "params": dict(job.params or {}), "seed": job.seed, "n_fit": job.n_fit,
           "n_test": job.n_test, "run_id": path.parent.name, "path": str(path),
           "site": {"hook_name": ds.hook_name, "layer": ds.layer, "position": ds.position},
           "vector": vec.tolist(), "metrics": metrics,
           "timing": {**timing, "eval_seconds": eval_seconds, "seconds": time.perf_counter() - t0},
           "versions": results.versions()}
    results.write_json_atomic(path, doc)
    if log:
        log(f"wrote {path}")
    return doc


def summary_line(doc: dict) -> str:
    if doc.get("status") != "ok":
        return f"case {doc['case']} / {doc.get('model')} / {doc['method']}: ERROR {doc.get('error')} -> {doc.get('path')}"
    m = doc["metrics"]
    return (f"case {doc['case']} / {doc['model']} / {doc['method']}: |cos| {m['abs_cos']:.3f}, flip "
            f"{m['flip_fraction']:.3f}, D {m['D']:.3f}, ortho D {m['ortho_D']:.3f}, "
            f"{doc['timing']['fit_seconds']:.2f}s -> {doc['path']}")


def collect_direction_rows(out: str | Path) -> list[dict[str, Any]]:
    """Leaderboard rows of every finished direction result under ``out`` (none: [])."""
    return leaderboard_rows(d for _, d in results.iter_results(out, RESULT_NAME)
                            if isinstance(d, dict) and d.get("kind") == "direction")


def read_direction_docs(paths: Sequence[str]) -> list[tuple[Path, dict]]:
    """(path, document) of every direction result in ``paths`` (``core.results.read_result_files``: a
    missing path is a FileNotFoundError, no valid file a ValueError); none of them a direction result: a
    ValueError."""
    docs = [(f, d) for f, d in results.read_result_files(paths, RESULT_NAME, "results/sentiment/direction")
            if isinstance(d, dict) and d.get("kind") == "direction"]
    if not docs:
        raise ValueError(f"no direction results ({RESULT_NAME}) under {' '.join(paths)}")
    return docs


def write_leaderboard(rows: list[dict[str, Any]], where: Path) -> dict[str, Path]:
    """``direction_leaderboard.{md,csv,html,png}`` in ``where``: {format: path}."""
    where.mkdir(parents=True, exist_ok=True)
    cases = sorted({str(r["case"]) for r in rows})
    png = plot_directions(rows, where / "direction_leaderboard.png", title=f"direction methods: {', '.join(cases)}")
    return {"md": results.write_atomic(where / "direction_leaderboard.md", to_markdown(rows)),
            "csv": results.write_atomic(where / "direction_leaderboard.csv", to_csv(rows)),
            "html": results.write_atomic(where / "direction_leaderboard.html", to_html(rows, plot=png.name)),
            "png": png}
