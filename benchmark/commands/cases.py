"""``cases list``, ``cases show ID`` and ``cases build [ID...]``."""

from __future__ import annotations

import time

from benchmark.console import EXIT_FAILED, UsageError, emit, json_stdout, log, progress, user_input
from cases import case_ids, get_case
from cases.ioi.case import _trained as ioi_trained
from training.registry import trained_models


def cmd_cases_list(args) -> int:
    rows = []
    siit = args.kind == "siit"  # the Tracr cases with a shipped SIIT model
    for cid in case_ids("tracr" if siit else args.kind):
        c = get_case(cid)
        if siit and "siit" not in c.models:
            continue
        rows.append({"id": c.id, "kind": c.kind, "output_type": c.output_type, "models": list(c.models),
                     "flags": dict(c.flags), "description": c.description})
    with json_stdout(args.json) as out:
        if args.json:
            emit(rows, out)
        else:
            print(case_table(rows), file=out)
    return 0


def case_table(rows: list[dict]) -> str:
    """``cases list``: a header and aligned columns (id, kind, output, models, description [flags])."""
    head = ("id", "kind", "output", "models", "description [flags]")
    body = [(str(r["id"]), r["kind"], r["output_type"], ",".join(r["models"]),
             r["description"][:70] + (f" [{', '.join(r['flags'])}]" if r["flags"] else "")) for r in rows]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(4)]
    fmt = lambda x: "  ".join([v.ljust(w) for v, w in zip(x[:4], widths)] + [x[4]])  # noqa: E731
    return "\n".join(fmt(x).rstrip() for x in [head, *body])


def cmd_cases_show(args) -> int:
    with user_input():  # an unknown id, a case file or plug-in that does not load
        case = get_case(args.id)
        info = case.info()
    with json_stdout(args.json) as out:
        info["model_files"] = model_locations(case)
        if args.json:
            emit(info, out)
        else:
            for k, v in info.items():
                if k == "model_files":
                    print("model files:", file=out)
                    for kind, where in v.items():
                        sha = (where.get("weights_sha256") or "")[:12]
                        seeds = where.get("model_seeds")
                        print(f"  {kind}: {where.get('source', 'error')} {where.get('directory') or where.get('error', '')}"
                              + (f" (sha256 {sha})" if sha else "")
                              + (f"; model seeds {' '.join(map(str, seeds))}" if seeds else ""), file=out)
                else:
                    print(f"{k}: {v}", file=out)
    return 0


def model_locations(case) -> dict[str, dict]:
    """Which models of a case exist and where: each shipped kind (source, directory, sha256 prefix) and
    the locally trained directories (``train``'s default output), which load only with ``--model-dir``."""
    out: dict[str, dict] = {}
    for kind in case.models:
        try:
            ref = case.model_ref(kind)
        except Exception as err:  # noqa: BLE001 -- show what is wrong instead of failing `cases show`
            out[kind] = {"error": f"{type(err).__name__}: {err}"}
            continue
        out[kind] = {"source": ref.source, "directory": ref.directory, "weights_sha256": ref.sha256}
        seeds = case.model_seeds(kind) if hasattr(case, "model_seeds") else []
        if len(seeds) > 1:  # further training seeds of this kind (benchmark --model-seeds)
            out[kind]["model_seeds"] = seeds
    if case.kind == "tracr":
        for kind, d in trained_models(case.id).items():
            out[f"{kind} (trained, --model-dir)"] = {"source": "trained", "directory": d}
    elif case.kind == "ioi":
        for kind, d in ioi_trained().items():
            out[f"{kind} (trained, --model-dir)"] = {"source": "trained", "directory": d}
    return out


def cmd_cases_build(args) -> int:
    ids = args.ids or case_ids("tracr")
    with user_input():
        for cid in ids:
            get_case(cid)  # unknown ids fail before any work
    report, failed = [], 0
    with json_stdout(args.json) as out:
        for cid in progress(ids, "compiling"):
            case = get_case(cid)
            if not hasattr(case, "compiled_model"):
                raise UsageError(f"case {cid} is not a Tracr case; only Tracr cases are compiled")
            t = time.perf_counter()
            try:
                case.compiled_model()
                report.append({"id": cid, "status": "ok", "seconds": time.perf_counter() - t})
            except Exception as err:  # noqa: BLE001 -- one failing case does not stop the others
                failed += 1
                report.append({"id": cid, "status": "error", "error": f"{type(err).__name__}: {err}"})
                log(f"case {cid}: {type(err).__name__}: {err}")
        if args.json:
            emit(report, out)
        else:
            print(f"built {len(ids) - failed}/{len(ids)} cases", file=out)
    return EXIT_FAILED if failed else 0
