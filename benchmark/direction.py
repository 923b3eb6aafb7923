"""Direction runs: ``run das|mean-diff|probe|pca|kmeans|random-direction -i sentiment`` and ``eval direction``.

A run fits the method on the case's ``fit`` split (activations at s*, labels, opposite-label pairs), then
scores the vector on the held-out ``test`` split (``evaluations.direction.score_direction``) and writes
``OUT/<case>/direction/<method>/<run-id>/direction_result.json`` atomically. The file is not called
``result.json`` so that the circuit leaderboard (which reads every ``result.json``) never sees it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from core import results

RESULT_NAME = "direction_result.json"
SCHEMA = 1
DEFAULT_N_FIT = 2000
DEFAULT_N_TEST = 1000


def is_direction_case(case_id: str) -> bool:
    from cases import case_ids

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
        from cases import get_case

        return get_case(self.case).model_ref(self.model)

    def config(self) -> dict[str, Any]:
        model = self.model_ref().identity()  # kind and weights sha256: a retrained model never shares an id
        return {"kind": "direction", "case": self.case, "model": model, "method": self.method,
                "params": dict(sorted((self.params or {}).items())), "seed": self.seed, "n_fit": self.n_fit,
                "n_test": self.n_test}


def patch_site(case, model: str | None):
    """The case's model and site s* as an ``evaluations.direction.PatchSite``."""
    from evaluations.direction import PatchSite

    ds = case.site(model)
    return PatchSite(case.load_model(model), ds.hook_name, ds.position, case.answer_ids(model))


def build_problem(case, model: str | None, split: str, n: int, seed: int):
    """(DirectionProblem, PatchSite, tokens) on ``n`` examples of ``split``."""
    from cases.direction.case import logits_from_site
    from cases.direction.data import opposite_pairs
    from evaluations.direction import activations_at
    from methods.directions import DirectionProblem

    site = patch_site(case, model)
    m, ds = site.model, case.site(model)
    data = case.dataset(split, n, seed, model)
    tokens, labels = data.tokens, data.labels
    acts = activations_at(site, tokens)
    pairs = opposite_pairs(labels, seed + 17)
    answers = list(site.answer_ids)
    fast = ds.hook_name == f"blocks.{ds.layer}.hook_resid_pre"
    if fast:
        with torch.no_grad():
            resid = m(tokens, stop_at_layer=ds.layer)

    def patched_logits(idx: torch.Tensor, a_new: torch.Tensor) -> torch.Tensor:
        if fast:  # run from s* on the cached residual stream
            return logits_from_site(m, resid[idx], ds.layer, ds.position, a_new)[:, answers]

        def hook(act, hook):
            act = act.clone()
            act[:, ds.position] = a_new
            return act
        return m.run_with_hooks(tokens[idx], fwd_hooks=[(ds.hook_name, hook)])[:, -1][:, answers]

    problem = DirectionProblem(acts=acts, labels=labels, pairs=pairs, patched_logits=patched_logits, seed=seed)
    return problem, site, tokens


def result_path(job: DirectionJob) -> Path:
    """``OUT/<case>/direction/<method>/<run-id>/direction_result.json``; resolves ``job.model``."""
    from cases import get_case

    job.model = get_case(job.case).resolve_model(job.model)
    path = Path(job.out) / results.safe_component(job.case) / "direction" / results.safe_component(job.method) \
        / results.run_id(job.config()) / RESULT_NAME
    return results.check_no_links(job.out, path)  # links inside --out are never followed on write


def run_direction_jobs(jobs: Sequence[DirectionJob], resume: bool = False, log=None) -> list[dict[str, Any]]:
    """Run jobs one after another; with ``resume`` a finished result is kept (``skipped``); a failing job
    writes an error document and does not stop the others."""
    docs = []
    for job in jobs:
        path = result_path(job)
        if resume and results.is_finished(path):
            docs.append({**results.load_result(path), "skipped": True})
            continue
        try:
            docs.append(run_direction(job, log=log))
        except Exception as err:  # noqa: BLE001 -- one failing job does not stop the others
            doc = {"schema": SCHEMA, "kind": "direction", "status": "error", "case": job.case, "model": job.model,
                   "method": job.method, "params": dict(job.params or {}), "seed": job.seed,
                   "error": f"{type(err).__name__}: {err}", "path": str(path), "versions": results.versions()}
            results.write_json_atomic(path, doc)
            docs.append(doc)
    return docs


def run_direction(job: DirectionJob, log=None) -> dict[str, Any]:
    """Fit, score, write. Returns the result document (``path`` = where it was written)."""
    from cases import get_case
    from evaluations.direction import score_direction
    from methods.directions import get_direction_method, unit

    path = result_path(job)
    case = get_case(job.case)
    model = job.model
    method = get_direction_method(job.method, **(job.params or {}))  # bad params: TypeError/ValueError -> exit 2
    rid = path.parent.name
    t0 = time.perf_counter()
    problem, _, _ = build_problem(case, model, "fit", job.n_fit, job.seed)
    t1 = time.perf_counter()
    torch.manual_seed(job.seed)
    vec = unit(method.fit(problem))
    fit_seconds = time.perf_counter() - t1
    if vec.numel() != problem.d_model:
        raise ValueError(f"direction method {job.method} returned {vec.numel()} numbers, not d_model={problem.d_model}")
    from cases.direction.data import opposite_pairs

    ds = case.site(model)
    test = case.dataset("test", job.n_test, job.seed, model)
    pairs = opposite_pairs(test.labels, job.seed + 29)
    t2 = time.perf_counter()
    metrics = score_direction(patch_site(case, model), test.tokens, test.labels, pairs, vec, ds.vector, seed=job.seed)
    eval_seconds = time.perf_counter() - t2
    doc = {"schema": SCHEMA, "kind": "direction", "status": "ok", "case": job.case, "model": model,
           "provenance": {"model": job.model_ref().to_json(),
                          "data": {"n_fit": job.n_fit, "n_test": job.n_test, "seed": job.seed}},
           "method": job.method, "params": dict(job.params or {}), "seed": job.seed, "n_fit": job.n_fit,
           "n_test": job.n_test, "run_id": rid, "path": str(path),
           "site": {"hook_name": ds.hook_name, "layer": ds.layer, "position": ds.position},
           "vector": vec.tolist(), "metrics": metrics,
           "timing": {"fit_seconds": fit_seconds, "data_seconds": t1 - t0, "eval_seconds": eval_seconds,
                      "seconds": time.perf_counter() - t0},
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


# ---------------------------------------------------------------------------------------------------
# CLI entry points (called from benchmark/cli.py and benchmark/commands.py)
# ---------------------------------------------------------------------------------------------------

def cmd_run_direction(args, method: str, extra: Sequence[str]) -> int:
    from benchmark.console import UsageError, _hint, _setup_torch, emit, json_stdout, log
    from benchmark.methodflags import method_parser
    from methods.directions import DIRECTION_METHODS, direction_method_class, is_direction_method

    if not is_direction_case(args.case):
        raise UsageError(f"{method} is a direction method; it runs on direction cases only "
                         f"(e.g. -i sentiment), not on case {args.case!r}")
    if ":" not in method and not is_direction_method(method):
        raise UsageError(f"{method} is not a direction method; case {args.case} is a direction case "
                         f"(its methods: {', '.join(DIRECTION_METHODS.names())})")
    cls = direction_method_class(method)  # unknown name: UnknownNameError -> exit 2 with close matches
    p = method_parser(method, cls)
    ns, rest = p.parse_known_args(list(extra))
    if rest:
        raise UsageError(f"unrecognized arguments for method {method}: {' '.join(rest)}"
                         f"{_hint(p, 'unrecognized arguments: ' + ' '.join(rest))}")
    if args.device != "cpu":
        raise UsageError("direction runs are CPU-only (tiny models): drop --device")
    if getattr(args, "model_dir", None):
        raise UsageError(f"case {args.case}: direction cases load their shipped model only (no --model-dir)")
    _setup_torch(args.device)
    from benchmark.console import check_out_dir
    check_out_dir(args.out)
    job = DirectionJob(case=str(args.case), method=method, model=args.model, params=vars(ns), seed=args.seed,
                       n_fit=args.n or DEFAULT_N_FIT, out=args.out)
    try:
        from methods.directions import get_direction_method

        get_direction_method(method, **vars(ns))  # a bad value: exit 2 before any model is built
        log(f"case {args.case}: {job.model_ref().describe()}")
    except (ValueError, TypeError) as err:
        raise UsageError(str(err)) from None
    _setup_torch(args.device)
    with json_stdout(args.json) as out:
        doc = run_direction(job, log=log)
        if args.json:
            emit(doc, out)
        else:
            print(summary_line(doc), file=out)
    return 0


def collect_direction_rows(out: str | Path) -> list[dict[str, Any]]:
    """Leaderboard rows of every finished direction result under ``out`` (none: [])."""
    from evaluations.direction import leaderboard_rows

    return leaderboard_rows(d for _, d in results.iter_results(out, RESULT_NAME)
                            if isinstance(d, dict) and d.get("kind") == "direction")


def _direction_docs(paths: Sequence[str]) -> list[tuple[Path, dict]]:
    from benchmark.console import UsageError
    from benchmark.resultdocs import result_docs

    docs = [(f, d) for f, d in result_docs(paths, RESULT_NAME, "results/sentiment/direction")
            if isinstance(d, dict) and d.get("kind") == "direction"]
    if not docs:
        raise UsageError(f"no direction results ({RESULT_NAME}) under {' '.join(paths)}")
    return docs


def cmd_eval_direction(args) -> int:
    """Print the direction leaderboard; write leaderboard md/csv/html and a PNG next to the results."""
    from benchmark.console import emit, json_stdout
    from evaluations.direction import leaderboard_rows, plot_directions, to_csv, to_html, to_markdown

    docs = _direction_docs(args.paths)
    rows = leaderboard_rows(d for _, d in docs)
    if args.out:
        where = Path(args.out)
    else:
        first = Path(args.paths[0])
        where = first if first.is_dir() else docs[0][0].parent
    where.mkdir(parents=True, exist_ok=True)
    cases = sorted({str(r["case"]) for r in rows})
    png = plot_directions(rows, where / "direction_leaderboard.png", title=f"direction methods: {', '.join(cases)}")
    files = {"md": results.write_atomic(where / "direction_leaderboard.md", to_markdown(rows)),
             "csv": results.write_atomic(where / "direction_leaderboard.csv", to_csv(rows)),
             "html": results.write_atomic(where / "direction_leaderboard.html", to_html(rows, plot=png.name)),
             "png": png}
    with json_stdout(args.json) as out:
        if args.json:
            emit({"rows": rows, "files": {k: str(v) for k, v in files.items()}}, out)
        else:
            out.write(to_markdown(rows))
            for k, v in files.items():
                out.write(f"  {k}: {v}\n")
    return 0
