"""The bridge to DeepMind's tracr: compile RASP programs, convert them to TransformerLens, cache
them, and read their ground-truth circuits. The only package in the repository that imports tracr
or JAX.

``rasp`` (tracr's own ``tracr.rasp.rasp`` module) and ``compile_rasp_to_model`` are loaded lazily,
so ``import cases.tracr.cache`` or loading a cached model never imports tracr's compiler or JAX.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["rasp", "compile_rasp_to_model", "CompiledModel", "Defect", "TracrCompileError",
           "TracrDefectWarning", "load_cached"]

_LAZY = {
    "rasp": ("tracr.rasp.rasp", None),
    "compile_rasp_to_model": ("cases.tracr.compiler", "compile_rasp_to_model"),
    "CompiledModel": ("cases.tracr.compiled", "CompiledModel"),
    "Defect": ("cases.tracr.compiled", "Defect"),
    "TracrCompileError": ("cases.tracr.defects", "TracrCompileError"),
    "TracrDefectWarning": ("cases.tracr.defects", "TracrDefectWarning"),
    "load_cached": ("cases.tracr.cache", "load_cached"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'cases.tracr' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = importlib.import_module(module)
    if attr is not None:
        value = getattr(value, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
