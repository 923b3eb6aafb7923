"""The executors of ``benchmark``: in this process (``runner.run_jobs``), a pool of local processes
(:func:`run_pool`, ``--workers N``), or Ray (:func:`run_ray`, ``--executor ray``).

Local pool: one task per case (its jobs share the case's activations through ``runner.ProblemCache``)
on spawned processes that die with this one; each worker writes its results as in-process runs do.

Ray: a local instance, or an existing cluster (``--ray-address`` / ``RAY_ADDRESS``). Ray is an
optional extra, imported only when used (:func:`import_ray`).

Workers compute, the driver writes. A task is one case's jobs (they share the case's model, data and
activations through ``runner.ProblemCache``), or one job with ``split=True``. A task returns its
result documents and the driver writes each one atomically under ``--out``: workers need no shared
disk, and nothing is written by a worker, so nothing can be written after the driver is gone.

Faults: a task lost with its worker process or node (any Ray system error) is resubmitted by the
driver, at most ``retries`` times, and Ray places it on a live node; this is idempotent because a run
id is the hash of its configuration and only the driver writes. A task that *raises* is a bug in the
harness (``run_job`` records every method and case failure in its result): its jobs get error results
carrying the traceback. ``--resume`` is checked by the driver against ``--out`` before anything is
submitted, so a driver killed mid-sweep and restarted redoes only the jobs it had not written.

Code and data reach the workers through Ray's runtime environment when a cluster address is given:
the project's packages (with the shipped models and the compiled Tracr cache inside ``cases/``) and
the top-level packages of plug-in methods as ``py_modules``; with ``pip=True`` also the project's
requirements, so nodes that have only Python and Ray work. Without an address a local instance is
started as before, with ``workers`` CPUs and no runtime environment (the driver's own files).
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Sequence

from benchmark.console import setup_torch
from benchmark.runner import case_groups, compute_jobs, run_jobs
from benchmark.safety import ProcessTreeWatchdog, die_with_parent
from core import results

PROJECT_PACKAGES = ("core", "cases", "methods", "evaluations", "benchmark")
DEFAULT_RETRIES = 2
RAY_MISSING = "--executor ray needs Ray, an optional extra: pip install 'circuit-bench[ray]'"


def import_ray():
    """Ray, or an ImportError with the install hint (the CLI turns it into exit 2 before any work)."""
    try:
        import ray
    except ImportError:
        raise ImportError(RAY_MISSING) from None
    return ray


def run_group(jobs, resume: bool) -> list[dict]:
    """One case's jobs in one worker process, sharing its activations (runner.ProblemCache)."""
    setup_torch()
    return run_jobs(jobs, resume=resume)


def run_pool(jobs, resume: bool, workers: int, on_done=None) -> list[dict]:
    """Jobs on a pool of spawned processes, one task per case (its jobs share the case's activations);
    results in job order, ``on_done`` called for each job as its case finishes."""
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                             initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
        futures = [pool.submit(run_group, g, resume) for g in case_groups(jobs)]
        if on_done is not None:
            for f in as_completed(futures):
                for doc in f.result():
                    on_done(doc)
        return [doc for f in futures for doc in f.result()]


def resolve_address(address: str | None) -> str | None:
    """``--ray-address`` first, then ``RAY_ADDRESS`` (as Ray's own tools read it); None: a local instance."""
    return address or os.environ.get("RAY_ADDRESS") or None


def plugin_packages(names: Sequence[str]) -> list[str]:
    """Top-level packages of plug-in methods/cases given as ``pkg.module:Class`` (they must reach the
    workers too), skipping the project's own packages."""
    tops = []
    for name in names:
        if ":" in name:
            top = name.split(":", 1)[0].split(".")[0]
            if top not in PROJECT_PACKAGES and top not in tops:
                tops.append(top)
    return tops


def requirements() -> list[str]:
    """The project's runtime requirements (no extras), from its installed metadata."""
    reqs = metadata.requires("circuit-bench") or []
    return [r.split(";")[0].strip() for r in reqs if "extra ==" not in r]


def runtime_env(extra_packages: Sequence[str] = (), pip: bool = False, working_dir: str | None = None) -> dict[str, Any]:
    """The runtime environment that brings this checkout (and plug-ins) to every worker. ``working_dir``
    (an empty folder of the driver's) keeps Ray from putting the driver's own directories on the
    workers' ``sys.path``, which on a shared machine would import the driver's files instead of the
    shipped ones, and on another machine whatever lies at the same path."""
    modules = []
    for name in (*PROJECT_PACKAGES, *extra_packages):
        mod = importlib.import_module(name)
        if getattr(mod, "__file__", None) is None or not hasattr(mod, "__path__"):
            raise ValueError(f"plug-in {name!r} must be a package (a folder with an __init__.py) to be shipped "
                             "to the Ray workers through the runtime environment")
        modules.append(str(Path(mod.__file__).resolve().parent))
    env: dict[str, Any] = {"py_modules": modules, "excludes": ["__pycache__", "*.pyc"],
                           "env_vars": {"OMP_NUM_THREADS": "1"}}
    if working_dir is not None:
        env["working_dir"] = working_dir
    if pip:
        env["pip"] = {"packages": requirements(), "pip_check": False}
    return env


def _compute(jobs):
    """Ray task body: one group of jobs on this worker (results returned, never written here)."""
    setup_torch()
    return compute_jobs(jobs)


@dataclass
class Progress:
    """Driver-side counts, printed as one line each time a task ends."""
    total: int
    log: Callable[[str], None]
    done: int = 0
    failed: int = 0
    retried: int = 0
    t0: float = field(default_factory=time.perf_counter)

    def update(self, docs: list[dict]) -> None:
        self.done += len(docs)
        self.failed += sum(d.get("status") != "ok" for d in docs)
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        self.log(f"[ray] {self.done}/{self.total} jobs done, {self.failed} failed, {self.retried} retried, "
                 f"elapsed {elapsed:.0f}s, ETA {eta:.0f}s")


def _finished(job) -> dict | None:
    """The finished result of a job under its ``out`` (for ``--resume``, checked on the driver)."""
    try:
        kind = job.model_ref().kind
    except Exception:  # noqa: BLE001 -- the job runs and records the error
        return None
    path = job.path(kind)
    if not results.is_finished(path):
        return None
    doc = results.load_result(path)
    doc.update(skipped=True, path=str(path))
    return doc


def _write(doc: dict, out: str) -> dict:
    """Write a worker's document where its job's path says, which must lie under ``out``."""
    path = Path(doc["path"])
    if not path.resolve().is_relative_to(Path(out).resolve()):
        raise RuntimeError(f"a worker returned a result path outside --out: {path}")
    doc = {k: v for k, v in doc.items() if k != "path"}
    results.write_json_atomic(results.check_no_links(out, path), doc)  # no link inside --out followed
    doc["path"] = str(path)
    return doc


def _error_docs(group, message: str) -> list[dict]:
    """Error results for the jobs of a task that could not be completed (``--resume`` redoes them)."""
    return [{"schema": results.SCHEMA, "case": str(job.case), "model": job.model, "method": job.method,
             "params": dict(job.params), "seed": job.seed, "status": "error", "error": message,
             "run_id": job.run_id, "versions": results.versions(), "path": str(job.path())} for job in group]


def run_ray(jobs: list, *, resume: bool = False, workers: int = 1, address: str | None = None,
            split: bool = False, retries: int = DEFAULT_RETRIES, gpus: float = 0.0, pip: bool = False,
            plugins: Sequence[str] = (), out: str = "results", log: Callable[[str], None] | None = None,
            on_done: Callable[[dict], None] | None = None) -> list[dict]:
    """Run ``jobs`` as Ray tasks; returns their documents in job order (written by this process)."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    ray = import_ray()
    address = resolve_address(address)
    docs, todo = _resumed(jobs, resume)
    if resume and docs:
        log(f"[ray] --resume: {len(docs)} of {len(jobs)} jobs already finished in {out}, skipped")
    started, watchdog = not ray.is_initialized(), None
    if started and todo:
        watchdog = _init_ray(ray, address, workers, plugins, pip, log)
    try:
        remote = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=0)(_compute)
        groups = [[ij] for ij in todo] if split else _index_groups(todo, case_groups)
        _drain(ray, remote, groups, docs, retries=retries, out=out, log=log, on_done=on_done)
        return [docs[i] for i in range(len(jobs))]
    finally:
        if started and ray.is_initialized():
            ray.shutdown()
        if watchdog is not None:
            watchdog.__exit__(None, None, None)


def _resumed(jobs: list, resume: bool) -> tuple[dict[int, dict], list]:
    """({index: finished document} for ``--resume``, the (index, job) pairs still to run)."""
    docs: dict[int, dict] = {}
    todo = []
    for i, job in enumerate(jobs):
        doc = _finished(job) if resume else None
        if doc is not None:
            docs[i] = doc
        else:
            todo.append((i, job))
    return docs, todo


def _init_ray(ray, address: str | None, workers: int, plugins: Sequence[str], pip: bool, log):
    """Connect to the cluster at ``address`` (shipping the code), or start a local instance that dies
    with this driver, even when the driver is SIGKILLed (the watchdog returned; None for a cluster)."""
    if address:
        with tempfile.TemporaryDirectory(prefix="circuit-bench-ray-") as empty:
            Path(empty, "README").write_text("circuit-bench: the code comes as py_modules\n")
            ray.init(address=address, log_to_driver=False, configure_logging=False,
                     runtime_env=runtime_env(plugin_packages(plugins), pip=pip, working_dir=empty))
        log(f"[ray] connected to {address}: {ray.cluster_resources().get('CPU', 0):g} CPUs")
        return None
    watchdog = ProcessTreeWatchdog().__enter__()
    try:
        ray.init(address="local", num_cpus=max(1, workers), include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    except BaseException:
        watchdog.__exit__(None, None, None)
        raise
    return watchdog


def _drain(ray, remote, groups: list[list], docs: dict[int, dict], *, retries: int, out: str, log, on_done) -> None:
    """Submit every group, then write each task's documents as it ends (into ``docs`` by job index);
    a task lost with its worker or node is resubmitted at most ``retries`` times."""
    progress = Progress(total=sum(len(g) for g in groups), log=log)
    pending = {remote.remote([job for _, job in g]): (g, 0) for g in groups}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        ref = ready[0]
        group, attempt = pending.pop(ref)
        try:
            got = ray.get(ref)
        except ray.exceptions.RayTaskError as err:  # a bug in the harness: keep its traceback
            got = _error_docs([j for _, j in group], f"task raised: {err}")
        except ray.exceptions.RayError as err:  # the worker or its node was lost
            if attempt < retries:
                progress.retried += 1
                log(f"[ray] lost a task of case {group[0][1].case} ({type(err).__name__}); "
                    f"retry {attempt + 1}/{retries}")
                pending[remote.remote([job for _, job in group])] = (group, attempt + 1)
                continue
            got = _error_docs([j for _, j in group], f"{type(err).__name__}: lost after {retries} retries")
        written = [_write(doc, out) for doc in got]
        for (i, _), doc in zip(group, written):
            docs[i] = doc
            if on_done is not None:
                on_done(doc)
        progress.update(written)


def _index_groups(todo, case_groups) -> list[list]:
    """``todo`` ((index, job) pairs) in consecutive groups of the same case and model."""
    groups, pos = [], 0
    for g in case_groups([job for _, job in todo]):
        groups.append(todo[pos:pos + len(g)])
        pos += len(g)
    return groups
