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
    cid = str(case_id)
    if cid not in _CACHE:
        factories = _factories()
        if cid not in factories:
            raise UnknownNameError("case", cid, sorted(factories, key=_sort_key))
        _CACHE[cid] = factories[cid][1]()
    return _CACHE[cid]


def list_cases(kind: str | None = None) -> list[Case]:
    return [get_case(cid) for cid in case_ids(kind)]
