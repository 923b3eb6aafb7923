"""Every case: the Case protocol (from the core), the built-in toy case, Tracr, SIIT and IOI cases.

``get_case("3")`` / ``list_cases(kind="tracr")``. Case ids are strings; numeric ids sort numerically.
"""

from __future__ import annotations

from core.protocols import Case
from core.registry import UnknownNameError

__all__ = ["Case", "get_case", "list_cases", "case_ids"]

_CACHE: dict[str, Case] = {}


def _factories() -> dict[str, tuple[str, object]]:
    """id -> (kind, zero-argument factory). Cheap: builds no model, imports no JAX."""
    from cases.toy import ToyCase
    from cases.tracr.case import TracrCase
    from cases.tracr.table import TRACR_CASES

    from cases.ioi.case import IOICase
    from cases.direction.case import DIRECTION_CASES, SentimentDirectionCase

    out: dict[str, tuple[str, object]] = {"toy": ("toy", ToyCase), "ioi": ("ioi", IOICase)}
    for cid in DIRECTION_CASES:
        out[cid] = ("direction", lambda cid=cid: SentimentDirectionCase(cid))
    for cid, spec in TRACR_CASES.items():
        out[cid] = ("tracr", lambda spec=spec: TracrCase(spec))
    return out


def _sort_key(cid: str):
    return (0, int(cid), "") if cid.isdigit() else (1, 0, cid)


def case_ids(kind: str | None = None) -> list[str]:
    return sorted((cid for cid, (k, _) in _factories().items() if kind is None or k == kind), key=_sort_key)


def get_case(case_id: str | int) -> Case:
    """A built-in case by id, else a plug-in (``cases.plugins``): an entry point of the group
    ``circuit_bench.cases``, ``pkg.module:Object`` (a Case class, instance or factory, or a function
    returning a tracr RASP program) or a case file (``path/case.toml`` or its directory)."""
    cid = str(case_id)
    if cid not in _CACHE:
        factories = _factories()
        if cid in factories:
            _CACHE[cid] = factories[cid][1]()
        else:
            from cases.plugins import resolve

            case = resolve(cid)
            if case is None:
                raise UnknownNameError("case", cid, sorted(factories, key=_sort_key))
            if cid.endswith(".toml") or "/" in cid:
                return case  # files can change between calls: read them each time
            _CACHE[cid] = case
    return _CACHE[cid]


def list_cases(kind: str | None = None) -> list[Case]:
    return [get_case(cid) for cid in case_ids(kind)]
