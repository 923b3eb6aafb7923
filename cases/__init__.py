"""Every case: the Case protocol (from the core), the built-in toy case, Tracr, SIIT and IOI cases.

``get_case("3")`` / ``list_cases(kind="tracr")``. Case ids are strings; numeric ids sort numerically.
"""

from __future__ import annotations

import importlib

from core.protocols import Case
from core.registry import UnknownNameError

__all__ = ["Case", "get_case", "list_cases", "case_ids"]

_CACHE: dict[str, Case] = {}

# kind -> (module, class, (module, name) of its id table or None for a single case whose id is its kind).
# Loaded by name on first use (importlib), so ``import cases``, ``--help`` and ``cases list`` stay light.
_KINDS: dict[str, tuple[str, str, tuple[str, str] | None]] = {
    "toy": ("cases.toy", "ToyCase", None),
    "ioi": ("cases.ioi.case", "IOICase", None),
    "direction": ("cases.direction.case", "SentimentDirectionCase", ("cases.direction.case", "DIRECTION_CASES")),
    "tracr": ("cases.tracr.case", "TracrCase", ("cases.tracr.table", "TRACR_CASES")),
}
_PLUGINS = "cases.plugins"  # entry points, pkg.module:Object specs and case files


def _load(module: str, name: str):
    return getattr(importlib.import_module(module), name)


def _factory(kind: str, cid: str | None):
    def make() -> Case:
        cls = _load(*_KINDS[kind][:2])
        return cls() if cid is None else cls(cid)
    return make


def _factories() -> dict[str, tuple[str, object]]:
    """id -> (kind, zero-argument factory). Cheap: builds no model, imports no JAX."""
    out: dict[str, tuple[str, object]] = {}
    for kind, (_, _, table) in _KINDS.items():
        if table is None:
            out[kind] = (kind, _factory(kind, None))
        else:
            for cid in _load(*table):
                out[cid] = (kind, _factory(kind, cid))
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
            case = _load(_PLUGINS, "resolve")(cid)
            if case is None:
                raise UnknownNameError("case", cid, sorted(factories, key=_sort_key))
            if cid.endswith(".toml") or "/" in cid:
                return case  # files can change between calls: read them each time
            _CACHE[cid] = case
    return _CACHE[cid]


def list_cases(kind: str | None = None) -> list[Case]:
    return [get_case(cid) for cid in case_ids(kind)]
