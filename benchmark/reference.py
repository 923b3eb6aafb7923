"""The shipped reference leaderboard (issue 22): compact records of baseline runs, so that a user's
results are ranked against every baseline without rerunning them.

Format: gzip JSON lines. Line 1 is the header (``kind``, ``format``, the result ``schema``, the
harness ``versions``, the data ``settings`` (n, seeds, ablation, metric), ``cases`` per model kind,
the models' weights hashes where results recorded them, and the command that made it). Each further line
is one finished run reduced to what the leaderboard reads: case, model, method, params, seed, data,
edge/node AUROC, the edge ROC points (rounded to 4 decimals), the edge scores (4 significant digits,
which keeps float dust distinguishable from zero: the floored AUROC is recomputed from them) with the
ground-truth edges, CPR/CMD when ``eval faithfulness`` ran, and the method's seconds.

Compatibility (:func:`check_compatible`): a user's finished results must have the reference's result
``schema`` and circuit-bench version, n, ablation and metric, the same set of data seeds, cases that
the reference has (per model kind) and, where both record them, the same model weights.
"""

from __future__ import annotations

import gzip
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from benchmark.uncertainty import read_faithfulness
from core.results import SCHEMA, RunResult, iter_results

FORMAT = 1
KIND = "circuit-bench reference"
DEFAULT = Path(__file__).parent / "reference" / "reference.jsonl.gz"
# what a header's settings hold (_settings) and check_compatible compares
SETTINGS = ("schema", "circuit-bench", "n", "seeds", "ablation", "metric", "cases", "weights")
REGENERATE = ("python benchmarks/make_reference.py --out reference_results --workers 2   "
              "(every SIIT model, IOI, Tracr 3 4 12; --full for every Tracr case)")


class IncompatibleReference(ValueError):
    """The user's results and the reference were made with other data or another harness version."""


def _sig(x, digits: int = 4):
    if x is None:
        return None
    x = float(x)
    return x if x == 0 or not math.isfinite(x) else float(f"{x:.{digits - 1}e}")


def _round(xs, digits: int = 4):
    return [None if v is None else round(float(v), digits) for v in xs or []]


def _result(doc: Mapping[str, Any] | RunResult) -> RunResult:
    return doc if isinstance(doc, RunResult) else RunResult.from_json(doc)


def _weights(doc: Mapping[str, Any] | RunResult) -> str | None:
    return _result(doc).weights_sha256


def _version(doc: Mapping[str, Any] | RunResult) -> str | None:
    return (_result(doc).versions or {}).get("circuit-bench")


def record(path: Path, doc: Mapping[str, Any] | RunResult) -> dict[str, Any]:
    """One finished run as a compact reference record (an ``ok`` result document)."""
    r = _result(doc)
    e, n = r.roc_level("edges"), r.roc_level("nodes")
    rec = {"case": r.case, "model": r.model, "method": r.method, "params": r.params, "seed": r.seed,
           "data": r.data.to_json(),
           "roc": {"edges": {"auroc": e.get("auroc"), "pessimistic_auc": e.get("pessimistic_auc"),
                             "fpr": _round(e.get("fpr")), "tpr": _round(e.get("tpr")), "source": e.get("source"),
                             "info": e.get("info") or {}},
                   "nodes": {"auroc": n.get("auroc")}},
           "timing": {k: (r.timing or {}).get(k) for k in ("method_seconds", "setup_seconds")}}
    scores = r.edge_scores
    if scores and e.get("source") == "scores":
        rec["scores"] = {"edges": {k: _sig(v) for k, v in scores.items()}}
        rec["ground_truth"] = {"edges": r.truth_edges}
    faith = read_faithfulness(path)
    if faith is not None:
        rec["faithfulness"] = faith
    if r.weights_sha256:
        source = (r.provenance.model or {}).get("source")
        rec["provenance"] = {"model": {"weights_sha256": r.weights_sha256, "source": source,
                                       **({} if r.model_seed is None else {"model_seed": r.model_seed})}}
    return rec


def _settings(docs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    docs = list(docs)
    data = [d.get("data") or {} for d in docs]
    cases: dict[str, set] = {}
    models: dict[str, set] = {}
    for d in docs:
        cases.setdefault(str(d.get("model")), set()).add(str(d.get("case")))
        if _weights(d):
            models.setdefault(f"{d.get('case')}/{d.get('model')}", set()).add(_weights(d))
    return {"schema": sorted({d.get("schema") for d in docs}, key=str),
            "circuit-bench": sorted({str(_version(d)) for d in docs}),
            "n": sorted({x.get("n") for x in data}, key=str),
            "seeds": sorted({d.get("seed") for d in docs}, key=str),
            "ablation": sorted({str(x.get("ablation", "corrupted")) for x in data}),
            "metric": sorted({str(x.get("metric", "faithfulness")) for x in data}),
            "cases": {m: sorted(c) for m, c in sorted(cases.items())},
            "weights": {k: sorted(v) for k, v in sorted(models.items())}}


def _case_of(doc: Mapping[str, Any]) -> tuple[str, str]:
    """A run's (model kind, case)."""
    return str(doc.get("model")), str(doc.get("case"))


def _key(doc: Mapping[str, Any]) -> tuple:
    """A run's identity within a reference: model kind, case, method, params, data seed."""
    return (*_case_of(doc), str(doc.get("method")), json.dumps(doc.get("params") or {}, sort_keys=True),
            doc.get("seed"))


def _kept(extend: str | os.PathLike, new: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """The records of the reference ``extend`` that the new results do not redo, and its command.
    Refuses (IncompatibleReference) when the two were made with other settings or other weights."""
    header, old = load(extend)
    mine, theirs = _settings(new), header["settings"]
    for key, what in (("schema", "result schema"), ("circuit-bench", "circuit-bench version"), ("n", "n (examples)"),
                      ("seeds", "data seeds"), ("ablation", "ablation"), ("metric", "metric")):
        if mine[key] != theirs[key]:
            raise IncompatibleReference(f"cannot extend {str(extend)!r}: it was made with {what} "
                                        f"{_show(theirs[key])}, these results with {_show(mine[key])}")
    for key, shas in mine["weights"].items():
        if theirs["weights"].get(key, shas) != shas:
            raise IncompatibleReference(f"cannot extend {str(extend)!r}: its {key} model has other weights "
                                        f"({theirs['weights'][key][0][:12]} vs {shas[0][:12]}); regenerate it in full")
    redone = {_key(d) for d in new}
    kept = [{k: v for k, v in d.items() if k != "status"} for d in old if _key(d) not in redone]
    return kept, str(header.get("command") or "")


def write(out: str | os.PathLike, path: str | os.PathLike, command: str = "",
          extend: str | os.PathLike | None = None) -> dict[str, Any]:
    """Write the reference of every finished result under ``out`` to ``path`` (atomically); returns
    its header with the record count and the file size. ``extend``: an existing reference whose runs
    are kept where ``out`` does not redo them (same settings and weights required), so new cases are
    added without rerunning the old ones; the header's command then lists both commands."""
    docs = [(p, d) for p, d in iter_results(out) if d.get("status") == "ok"]
    if not docs:
        raise IncompatibleReference(f"no finished results under {str(out)!r} to make a reference from")
    lines = [{"schema": d.get("schema"), "versions": {"circuit-bench": _version(d)}, **record(p, d)} for p, d in docs]
    if extend is not None:
        kept, before = _kept(extend, [d for _, d in docs])
        lines = kept + lines
        command = f"{before}; then {command}" if before else command
    header = {"kind": KIND, "format": FORMAT, "harness_schema": SCHEMA, "settings": _settings(lines),
              "n_runs": len(lines), "command": command}
    body = json.dumps(header, sort_keys=True) + "\n" + "".join(
        json.dumps(line, sort_keys=True, separators=(",", ":")) + "\n" for line in lines)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with gzip.GzipFile(tmp, "wb", mtime=0) as f:  # mtime 0: the same results give the same bytes
        f.write(body.encode())
    os.replace(tmp, path)
    return {**header, "path": str(path), "bytes": path.stat().st_size}


def load(path: str | os.PathLike = DEFAULT) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(header, run records as ``ok`` result documents). IncompatibleReference for a file that is not one."""
    path = Path(path)
    try:
        with gzip.open(path, "rt") as f:
            lines = f.read().splitlines()
        header = json.loads(lines[0])
        docs = [json.loads(x) for x in lines[1:] if x.strip()]
    except (OSError, ValueError, IndexError, EOFError) as err:
        raise IncompatibleReference(f"{str(path)!r} is not a readable reference file ({type(err).__name__})")
    if not isinstance(header, dict) or header.get("kind") != KIND or header.get("format") != FORMAT:
        raise IncompatibleReference(f"{str(path)!r} is not a circuit-bench reference of format {FORMAT}")
    _check_settings(path, header.get("settings"))
    if not all(isinstance(d, dict) for d in docs):
        raise IncompatibleReference(f"{str(path)!r} is damaged: a run record is not a JSON object; regenerate it "
                                    f"({REGENERATE})")
    for d in docs:
        d["status"] = "ok"
    return header, docs


def _check_settings(path: Path, settings: Any) -> None:
    """The header's settings have what :func:`check_compatible` and :func:`matching` read, with the
    types they read it as (a damaged or hand-edited file: a one-line refusal, not a traceback)."""
    types = {"seeds": list, "cases": dict, "weights": dict}
    bad = [k for k in SETTINGS if not isinstance(settings, dict) or k not in settings
           or not isinstance(settings[k], types.get(k, object))]
    if bad:
        raise IncompatibleReference(f"{str(path)!r} is damaged: its header settings lack or mistype "
                                    f"{', '.join(bad)}; regenerate it ({REGENERATE})")


def matching(header: Mapping[str, Any], rdocs: list[dict[str, Any]],
             docs: Iterable[Mapping[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The reference restricted to what the user's finished results ``docs`` cover, so that every row of
    a ranking is a mean over the same cases: their (model kind, case) pairs (``cases_used`` in the header
    when that drops runs), and their data seeds when those are a proper subset of the reference's (a run
    at seed 0 ranks against the reference's seed-0 runs: the same data, nothing of other settings pooled;
    ``seeds_used``). Seeds or cases the reference lacks are left to :func:`check_compatible` to refuse."""
    mine = [d for d in docs if d.get("status") == "ok"]
    pairs = {_case_of(d) for d in mine}
    seeds = {d.get("seed") for d in mine}
    subset = seeds if seeds and seeds < set(header["settings"]["seeds"]) else None
    in_cases = [d for d in rdocs if _case_of(d) in pairs]
    kept = in_cases if subset is None else [d for d in in_cases if d.get("seed") in subset]
    out = {**header, "n_runs": len(kept)}
    if subset is not None:
        out["seeds_used"] = sorted(subset, key=str)
        out["settings"] = {**header["settings"], "seeds": out["seeds_used"]}
    if len(in_cases) < len(rdocs):
        used: dict[str, set] = {}
        for model, case in pairs:
            used.setdefault(model, set()).add(case)
        out["cases_used"] = {m: sorted(c, key=lambda x: (len(x), x)) for m, c in sorted(used.items())}
    return out, kept


def check_compatible(header: Mapping[str, Any], docs: Iterable[Mapping[str, Any]]) -> None:
    """Raise IncompatibleReference naming the first difference between the user's finished results
    ``docs`` and the reference ``header``."""
    ref = header["settings"]
    mine = _settings(d for d in docs if d.get("status") == "ok")
    for key, what in (("schema", "result schema"), ("circuit-bench", "circuit-bench version"), ("n", "n (examples)"),
                      ("seeds", "data seeds"), ("ablation", "ablation"), ("metric", "metric")):
        if mine[key] != ref[key]:
            raise IncompatibleReference(
                f"the reference was made with {what} {_show(ref[key])}, these results with {_show(mine[key])}: "
                f"rerun with the reference's settings or regenerate it ({REGENERATE})")
    for model, cases in mine["cases"].items():
        missing = sorted(set(cases) - set(ref["cases"].get(model, [])))
        if missing:
            raise IncompatibleReference(
                f"the reference has no {model} runs of case(s) {', '.join(missing[:8])}"
                f"{' ...' if len(missing) > 8 else ''} (it covers {model}: "
                f"{', '.join(ref['cases'].get(model, [])) or 'none'}); regenerate it ({REGENERATE})")
    for key, shas in mine["weights"].items():
        theirs = ref["weights"].get(key)
        if theirs is not None and theirs != shas:
            raise IncompatibleReference(f"the reference's {key} model has other weights ({theirs[0][:12]} vs "
                                        f"{shas[0][:12]}); regenerate it ({REGENERATE})")


def _show(v) -> str:
    return ",".join(map(str, v)) if isinstance(v, list) else str(v)
