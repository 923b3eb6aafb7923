"""The ``eval pareto|agreement|ig-steps|overlap`` commands: thin wrappers over :mod:`benchmark.study` (they print
the study's ``to_json()``, the document it wrote).

The study raises ValueError / TypeError for bad input (an unknown case, method or policy, a bad spec);
here those become usage errors (one line, exit 2) through :func:`user_input`.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from benchmark import study
from benchmark.console import UsageError, check_score_floor, emit, json_stdout, setup_torch
from benchmark.runner import DEFAULT_N
from evaluations.plots import bar_value, fmt


@contextlib.contextmanager
def user_input() -> Iterator[None]:
    """ValueError / TypeError raised inside become UsageError (the user's input was bad). A local copy of
    ``benchmark.console.user_input`` (h1, issue 20) until that exists; then this is an import."""
    try:
        yield
    except UsageError:
        raise
    except (ValueError, TypeError) as err:
        raise UsageError(str(err)) from err


def _common(args) -> dict[str, Any]:
    setup_torch(getattr(args, "device", "cpu") or "cpu")
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
    return p if p in study.POLICIES else "greedy"  # no --policy: greedy; topk-* pass through


def _methods(args) -> list[str]:
    return list(getattr(args, "methods", None) or study.DEFAULT_METHODS)


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
    with user_input():
        doc = study.pareto(case, methods=_methods(args), policy=_policy(args), **_common(args)).to_json()
    lines = [f"case {doc['case']} ({doc['model']}), {doc['n_edges']} edges, {doc['policy']} selection"]
    for spec, r in doc["methods"].items():
        lines.append(f"  {spec:<40} CPR {fmt(r.get('cpr'))}  CMD {fmt(r.get('cmd'))}  edges for f>=0.8: "
                     f"{r.get('edges_for_f80')}  f>=0.9: {r.get('edges_for_f90')}  "
                     f"(method {r['method_seconds']:.1f}s)")
    gt = doc.get("ground_truth") or {}
    lines.append(f"  ground truth: {gt.get('kept')} edges, f = {fmt(gt.get('faithfulness'))}")
    return _print(args, doc, lines)


def cmd_eval_agreement(args) -> int:
    case = _need_case(args, "agreement")
    floor = getattr(args, "score_floor", None)
    check_score_floor(floor)
    with user_input():
        doc = study.agreement(case, methods=_methods(args), score_floor=floor, **_common(args)).to_json()
    lines = [f"case {doc['case']} ({doc['model']}), {doc['n_edges']} edges, vs exact patching "
             f"(method {doc['reference_method_seconds']:.1f}s; set-up {doc['setup_seconds']:.1f}s)"
             + (f"; scores <= {floor:g} x max tied with 0" if floor is not None else "")]
    for spec, r in doc["methods"].items():
        if "pearson" not in r:
            lines.append(f"  {spec:<40} {r.get('reason')}")
            continue
        lines.append(f"  {spec:<40} top-k_eff {fmt(r['topk_eff'])} (k={r['k_eff']})  AO {fmt(r['ao_eff'])}  "
                     f"top-5% {fmt(bar_value(r, 'top5'))}  Pearson {fmt(r['pearson'])}  Spearman "
                     f"{fmt(r['spearman'])}  Kendall {fmt(r['kendall'])}")
    return _print(args, doc, lines)


def cmd_eval_ig_steps(args) -> int:
    case = _need_case(args, "ig-steps")
    steps = getattr(args, "steps", None) or study.DEFAULT_STEPS
    variant = getattr(args, "ig_variant", None) or "inputs"
    with user_input():
        doc = study.ig_steps(case, steps=steps, variant=variant, policy=_policy(args), **_common(args)).to_json()
    lines = [f"case {doc['case']} ({doc['model']}), EAP-IG {doc['variant']}; exact CPR "
             f"{fmt(doc['reference']['cpr'])} CMD {fmt(doc['reference']['cmd'])}"]
    for r in doc["rows"]:
        lines.append(f"  steps {r['steps']:>3}  top-k_eff {fmt(r['topk_eff'])}  Pearson {fmt(r['pearson'])}  "
                     f"Kendall {fmt(r['kendall'])}  CPR {fmt(r['cpr'])}  CMD {fmt(r['cmd'])}  "
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
    with user_input():
        doc = study.cross_case(cases, method=methods[0], policy=_policy(args), **c).to_json()
    w = max(len(s) for s in doc["settings"])
    lines = [f"{doc['method']} circuits ({doc['policy']}, target f {doc['target']}); rows: evaluated on, "
             f"columns: circuit from"]
    lines.append(" " * (w + 2) + "  ".join(f"{s:>{w}}" for s in doc["settings"]) + "   | edge IoU")
    for i, s in enumerate(doc["settings"]):
        lines.append(f"  {s:<{w}}  " + "  ".join(f"{fmt(x):>{w}}" for x in doc["F"][i]) + "   | "
                     + " ".join(fmt(x) for x in doc["edge_iou"][i]))
    return _print(args, doc, lines)
