"""Discovery methods. ``get_method("eap-ig", integrated_grad_steps=5)`` uses the CLI's names and flags.

A method is a small class (see ``core.protocols.Method``): hyper-parameters as constructor arguments,
``discover(problem) -> MethodOutput``. Users plug in their own without touching this package:

* ``get_method("my_pkg.my_module:MyMethod")`` (also ``--method`` / ``run my_pkg.my_module:MyMethod``), or
* an entry point in the group ``circuit_bench.methods`` (``name = "my_pkg.my_module:MyMethod"``), or
* ``methods.register("mine", MyMethod)`` at import time of your own module.
"""

from __future__ import annotations

import importlib
import os
from importlib import metadata

from core.protocols import Method, MethodOutput, Problem
from core.registry import Registry, UnknownNameError

__all__ = ["Method", "MethodOutput", "Problem", "register", "get_method", "method_names", "method_class"]

REGISTRY: Registry[type[Method]] = Registry("method")

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
}


def import_from_cwd(module: str):
    """Import ``module``; if it is not importable, look in the current working directory too (a plug-in
    next to where the user runs ``circuit-bench``, as ``python -m`` would find it). The directory is
    appended to ``sys.path``, so it never shadows an installed package."""
    import os
    import sys

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


def _load(spec: str) -> type[Method]:
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
    if not (isinstance(obj, type) and issubclass(obj, Method)):
        raise TypeError(f"{spec!r} is not a circuit-bench Method subclass")
    return obj


def _entry_points() -> dict[str, str]:
    try:
        return {ep.name: ep.value for ep in metadata.entry_points(group="circuit_bench.methods")}
    except Exception:  # noqa: BLE001 -- broken third-party metadata must not break the CLI
        return {}


def register(name: str, cls: type[Method] | None = None, *, replace: bool = False):
    """Register a Method class under ``name`` (usable as a decorator)."""
    return REGISTRY.register(name, cls, replace=replace)


def method_names() -> list[str]:
    return sorted(set(_BUILTIN) | set(REGISTRY.names()) | set(_entry_points()))


def method_class(name: str) -> type[Method]:
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
