"""Methods, one registry for every family. ``get_method("eap-ig", integrated_grad_steps=5)`` uses the CLI's
names and flags.

A method is a small class: hyper-parameters as constructor arguments, and one of two families (:data:`FAMILIES`),
which the class declares with its ``family`` attribute (:func:`family_of`):

* ``circuit``: a ``core.protocols.Method``, ``discover(problem) -> MethodOutput`` (ACDC, EAP, SP, ...);
* ``direction``: a ``methods.directions.DirectionMethod``, ``fit(direction_problem) -> unit vector`` (DAS,
  mean-diff, ...), run on known-direction cases. A plain class with a ``fit`` method is one too.

Users plug in their own of either family without touching this package:

* ``get_method("my_pkg.my_module:MyMethod")`` (also ``--method`` / ``run my_pkg.my_module:MyMethod``), or
* an entry point in the group ``circuit_bench.methods`` (``name = "my_pkg.my_module:MyMethod"``), or
* ``methods.register("mine", MyMethod)`` at import time of your own module.
"""

from __future__ import annotations

import importlib
import os
import sys
from importlib import metadata

from core.protocols import Method, MethodOutput, Problem
from core.registry import Registry, UnknownNameError

__all__ = ["Method", "MethodOutput", "Problem", "FAMILIES", "register", "get_method", "method_names", "method_class",
           "family_of", "method_family", "is_direction_method", "direction_method_class"]

FAMILIES = ("circuit", "direction")

REGISTRY: Registry[type] = Registry("method")

# name -> "module:Class"; imported only when asked for, so listing methods stays cheap.
_BUILTIN = {
    "random": "methods.baselines:RandomScores",
    "oracle": "methods.baselines:Oracle",
    "exact": "methods.attribution:ExactPatching",
    "eap": "methods.attribution:EAP",
    "eap-ig": "methods.attribution:EAPIG",
    "acdc": "methods.acdc:ACDC",
    "sp": "methods.sp:SubnetworkProbing",
    "ifr": "methods.ifr:InformationFlowRoutes",
    "nap": "methods.node_attribution:NodeAttribution",
    "node-eap-ig": "methods.node_attribution:NodeEAPIG",
    "atp-star": "methods.atp_star:AtPStar",
    "atp-qk": "methods.atp_star:AtPQK",
    "edge-pruning": "methods.edge_pruning:EdgePruning",
    "ugs": "methods.edge_pruning:SigmoidMasks",
    "das": "methods.directions:DAS",
    "mean-diff": "methods.directions:MeanDiff",
    "probe": "methods.directions:Probe",
    "pca": "methods.directions:PCADirection",
    "kmeans": "methods.directions:KMeansDirection",
    "random-direction": "methods.directions:RandomDirection",
}


def import_from_cwd(module: str):
    """Import ``module``; if it is not importable, look in the current working directory too (a plug-in
    next to where the user runs ``circuit-bench``, as ``python -m`` would find it). The directory is
    appended to ``sys.path``, so it never shadows an installed package."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        cwd = os.getcwd()
        top = module.split(".")[0]
        if err.name is None or err.name.split(".")[0] != top or cwd in sys.path or "" in sys.path:
            raise
        sys.path.append(cwd)
        importlib.invalidate_caches()
        return importlib.import_module(module)


def family_of(cls) -> str:
    """The family a method class declares (its ``family`` attribute); a class that declares none is a
    ``circuit`` method if it is a ``Method`` and a ``direction`` method if it has ``fit`` (a duck-typed
    plug-in); a TypeError otherwise."""
    family = getattr(cls, "family", None)
    if family in FAMILIES:
        return family
    if family is not None:
        raise TypeError(f"method {getattr(cls, '__name__', cls)!r}: family must be one of {', '.join(FAMILIES)}, "
                        f"got {family!r}")
    if isinstance(cls, type) and issubclass(cls, Method):
        return "circuit"
    if callable(getattr(cls, "fit", None)):
        return "direction"
    raise TypeError(f"{getattr(cls, '__name__', cls)!r} is neither a circuit-bench Method subclass nor a direction "
                    "method (a class with fit(problem))")


def _load(spec: str) -> type:
    module, _, attr = spec.partition(":")
    try:
        obj = getattr(import_from_cwd(module), attr)
    except SyntaxError as err:  # a broken plug-in file is bad input: one line (CIRCUIT_BENCH_DEBUG=1: traceback)
        if os.environ.get("CIRCUIT_BENCH_DEBUG"):
            raise
        raise ImportError(f"cannot load method {spec!r}: {type(err).__name__} in {err.filename} line {err.lineno}: "
                          f"{err.msg} (CIRCUIT_BENCH_DEBUG=1 shows the traceback)") from None
    except SystemExit as err:  # a plug-in module that exits while imported is bad input, not the end of the command
        raise ImportError(f"cannot load method {spec!r}: importing it called sys.exit({err.code!r})") from None
    except (ImportError, AttributeError) as err:
        raise UnknownNameError("method", spec, []) if ":" not in spec else ImportError(
            f"cannot load method {spec!r}: {err}") from err
    if not isinstance(obj, type) or not (issubclass(obj, Method) or callable(getattr(obj, "fit", None))):
        raise TypeError(f"{spec!r} is not a circuit-bench Method subclass (nor a direction method with fit(problem))")
    return obj


def _entry_points() -> dict[str, str]:
    try:
        return {ep.name: ep.value for ep in metadata.entry_points(group="circuit_bench.methods")}
    except Exception:  # noqa: BLE001 -- broken third-party metadata must not break the CLI
        return {}


def register(name: str, cls: type | None = None, *, replace: bool = False):
    """Register a method class of either family under ``name`` (usable as a decorator)."""
    return REGISTRY.register(name, cls, replace=replace)


def method_names(family: str | None = None) -> list[str]:
    """Every method name (``family``: only those of that family; a name whose class cannot be loaded is
    left out of a family's list)."""
    names = sorted(set(_BUILTIN) | set(REGISTRY.names()) | set(_entry_points()))
    if family is None:
        return names
    if family not in FAMILIES:
        raise ValueError(f"unknown method family {family!r}; expected one of {', '.join(FAMILIES)}")
    return [n for n in names if _family_or_none(n) == family]


def _family_or_none(name: str) -> str | None:
    try:
        return method_family(name)
    except Exception:  # noqa: BLE001 -- an unloadable plug-in has no family; loading it reports why
        return None


def method_family(name: str) -> str:
    """The family (:data:`FAMILIES`) of the method ``name`` (loads its class; unknown: UnknownNameError)."""
    return family_of(method_class(name))


def is_direction_method(name: str) -> bool:
    """``name`` resolves to a direction method (False for unknown or unloadable names: the caller's own
    look-up of the name reports why)."""
    return _family_or_none(name) == "direction"


def direction_method_class(name: str) -> type:
    """The class of the direction method ``name``; a circuit method is a TypeError."""
    cls = method_class(name)
    if family_of(cls) != "direction":
        raise TypeError(f"direction method {name!r} has no fit(problem) method")
    return cls


def method_class(name: str) -> type:
    if name in REGISTRY:
        return REGISTRY.factory(name)
    if name in _BUILTIN:
        return _load(_BUILTIN[name])
    eps = _entry_points()
    if name in eps:
        return _load(eps[name])
    if ":" in name:
        return _load(name)
    raise UnknownNameError("method", name, method_names())


def get_method(name: str, **params) -> Method:
    cls = method_class(name)
    try:
        return cls(**params)
    except TypeError as err:
        raise TypeError(f"method {name!r}: {err}") from None
