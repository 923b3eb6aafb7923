"""Cases from outside the package: plug-ins, RASP programs and case files.

``cases.get_case(spec)`` resolves, after the built-in ids:

* an entry point in the group ``circuit_bench.cases`` (``name = "my_pkg.my_module:MyCase"``);
* ``path/to/case.toml`` or a directory holding ``case.toml``: a case from files (``cases.files``);
* ``my_pkg.my_module:Obj``, where ``Obj`` is a :class:`~core.protocols.Case` subclass (built with no
  arguments), a Case instance, a function returning a Case, or a function returning a tracr RASP
  program (:class:`ProgramCase`: compiled through the Tracr bridge like the built-in Tracr cases).

The case's ``id`` is the spec itself, so a result's ``case`` field resolves back to the same case
(``eval`` and ``--recompute`` rebuild models and data from it); result paths use
``core.results.safe_component(id)`` as the directory name.
"""

from __future__ import annotations

import importlib
import os
import re
from importlib import metadata
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cases.files import load_case_file
from cases.tracr import rasp
from cases.tracr.cache import default_cache_dir
from cases.tracr.case import SAMPLERS, TracrCase
from cases.tracr.programs import build
from cases.tracr.table import TracrCaseSpec
from core.protocols import Case

ENTRY_POINT_GROUP = "circuit_bench.cases"
CASE_FILE = "case.toml"


def entry_points() -> dict[str, str]:
    try:
        return {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    except Exception:  # noqa: BLE001 -- broken third-party metadata must not break the CLI
        return {}


def looks_like_file_case(spec: str) -> bool:
    return spec.endswith(".toml") or (os.sep in spec or "/" in spec) or Path(spec, CASE_FILE).is_file()


def resolve(spec: str) -> Case | None:
    """The case a non-built-in spec names, or None when it names none (the caller reports that)."""
    eps = entry_points()
    if spec in eps:
        return _from_object(_load(eps[spec]), spec, eps[spec])
    if looks_like_file_case(spec) and ":" not in spec.split("/")[-1]:
        return load_case_file(spec)
    m = PARAMS.match(spec)
    if m and ":" in m["target"]:  # a RASP builder with its settings in the spec: pkg.mod:fn[vocab=a,b;max_seq_len=4]
        builder = _load(m["target"])
        if not callable(builder):
            raise TypeError(f"{m['target']!r} is not a function returning a RASP program")
        return ProgramCase(spec, builder, overrides=parse_params(m["params"], spec))
    if ":" in spec:
        return _from_object(_load(spec), spec, spec)
    return None


PARAMS = re.compile(r"^(?P<target>[^\[\]]+)\[(?P<params>[^\[\]]*)\]$")
PARAM_KEYS = ("vocab", "max_seq_len", "causal", "min_len", "sampler")


def _value(text: str):
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        return text


def parse_params(text: str, spec: str) -> dict[str, Any]:
    """``vocab=a,b,c;max_seq_len=4;causal=true`` -> settings of a RASP case (ints where they parse)."""
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or key not in PARAM_KEYS:
            raise ValueError(f"RASP case {spec!r}: {part!r} is not KEY=VALUE with KEY one of {', '.join(PARAM_KEYS)}")
        if key == "vocab":
            out[key] = {_value(v) for v in value.split(",") if v.strip()}
        elif key == "causal":
            if value.strip().lower() not in ("true", "false"):
                raise ValueError(f"RASP case {spec!r}: causal must be true or false, got {value!r}")
            out[key] = value.strip().lower() == "true"
        else:
            out[key] = _value(value)
    return out


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    if not module or not attr:
        raise ImportError(f"cannot load case {target!r}: expected 'package.module:Object'")
    try:
        obj = importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"cannot load case {target!r}: {err}") from err
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ImportError(f"cannot load case {target!r}: module {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def _is_rasp(obj: Any) -> bool:
    try:
        from tracr.rasp import rasp
    except ImportError:  # pragma: no cover - tracr is a dependency
        return False
    return isinstance(obj, rasp.SOp)


def _from_object(obj: Any, spec: str, target: str) -> Case:
    if isinstance(obj, type) and issubclass(obj, Case):
        case = obj()
    elif isinstance(obj, Case):
        case = obj
    elif callable(obj):
        if _has_program_attrs(obj):  # a RASP program builder: do not call it here (ProgramCase builds it)
            return ProgramCase(spec, obj)
        made = obj()
        if _is_rasp(made):
            return ProgramCase(spec, obj, made)
        if not isinstance(made, Case):
            raise TypeError(f"case plug-in {target!r} returned {type(made).__name__}; expected a circuit-bench "
                            "Case or a tracr RASP program")
        case = made
    else:
        raise TypeError(f"{target!r} is not a circuit-bench Case, a function returning one, or a function "
                        "returning a tracr RASP program")
    _check_case(case, target)
    case.id = spec  # results name the case by the spec that resolves back to it
    return case


def _check_case(case: Case, target: str) -> None:
    missing = [a for a in ("kind", "description", "output_type", "flags") if not hasattr(case, a)]
    if missing:
        raise TypeError(f"case plug-in {target!r} lacks the attribute(s) {', '.join(missing)} of the Case protocol")
    if case.output_type not in ("categorical", "numerical"):
        raise TypeError(f"case plug-in {target!r}: output_type must be categorical or numerical, got {case.output_type!r}")


# ---------------------------------------------------------------------------------------------------
# A RASP program as a case
# ---------------------------------------------------------------------------------------------------

PROGRAM_ATTRS = ("vocab", "max_seq_len")


def _has_program_attrs(fn) -> bool:
    return all(hasattr(fn, a) for a in PROGRAM_ATTRS)


def user_cache_dir() -> Path:
    """Where plug-in programs' compiled models go (never inside the package): the Tracr cache's own
    write location, ``$CIRCUIT_BENCH_CACHE`` if set, else the user cache directory."""
    return default_cache_dir()


def program_spec(spec: str, builder, program=None, overrides: dict | None = None):
    """A :class:`~cases.tracr.table.TracrCaseSpec` for a user's RASP program builder. ``vocab`` and
    ``max_seq_len`` (BOS excluded) are attributes of the function or of the program it returns;
    optional ones: ``causal`` (default False, tracr's default), ``sampler`` (a name of
    ``cases.tracr.case.SAMPLERS``, default uniform), ``sampler_params``, ``min_len``,
    ``variable_length``, ``description``, ``flags``. ``overrides`` (from the spec's ``[k=v;...]``)
    win over both."""
    overrides = overrides or {}
    if program is None and not (_has_program_attrs(builder) or all(a in overrides for a in PROGRAM_ATTRS)):
        program = build(builder)

    def attr(name, default=None):
        if name in overrides:
            return overrides[name]
        for src in (builder, program):
            if src is not None and hasattr(src, name):
                return getattr(src, name)
        return default

    missing = [a for a in PROGRAM_ATTRS if attr(a) is None]
    if missing:
        raise ValueError(f"RASP case {spec!r}: set {' and '.join(missing)} on the function "
                         f"(e.g. make_program.vocab = {{1, 2, 3}}; make_program.max_seq_len = 5) or in the spec "
                         f"({spec.split('[')[0]}[vocab=1,2,3;max_seq_len=5])")
    try:
        vocab = tuple(sorted(attr("vocab")))
    except TypeError:
        vocab = tuple(attr("vocab"))
    max_len = attr("max_seq_len")
    if not isinstance(max_len, int) or isinstance(max_len, bool) or max_len < 1:
        raise ValueError(f"RASP case {spec!r}: max_seq_len must be a positive integer, got {max_len!r}")
    if not vocab:
        raise ValueError(f"RASP case {spec!r}: vocab is empty")
    sampler = attr("sampler", "uniform")
    if sampler not in SAMPLERS:
        raise ValueError(f"RASP case {spec!r}: unknown sampler {sampler!r}; expected one of {', '.join(SAMPLERS)}")
    if program is None:
        program = build(builder)
    if not isinstance(program, rasp.SOp):
        raise TypeError(f"RASP case {spec!r}: the function returned {type(program).__name__}, not a RASP SOp")
    output_type = "categorical" if rasp.is_categorical(program) else "numerical"
    return TracrCaseSpec(
        id=spec, description=attr("description", None) or (builder.__doc__ or "").strip().split("\n")[0]
        or f"RASP program {spec}", builder=builder, vocab=vocab, max_seq_len=max_len, output_type=output_type,
        causal=bool(attr("causal", False)), sampler=sampler,
        sampler_params=MappingProxyType(dict(attr("sampler_params", {}) or {})), min_len=attr("min_len", None),
        variable_length=bool(attr("variable_length", True)),
        flags=MappingProxyType(dict(attr("flags", {}) or {})))


class ProgramCase(TracrCase):
    """A user's RASP program compiled through the Tracr bridge: ground truth from tracr's layer
    allocation, the Tracr data sampler, defect checks and the compiled-model cache (in
    :func:`user_cache_dir`, never the package's cache), exactly as for the built-in Tracr cases.
    Compiled model only (no trained models)."""

    kind = "rasp"

    def __init__(self, spec: str, builder, program=None, overrides: dict | None = None):
        super().__init__(program_spec(spec, builder, program, overrides))
        self.cache_dir = str(user_cache_dir())

    @property
    def models(self) -> tuple[str, ...]:
        return ("tracr",)

    def __repr__(self) -> str:
        return f"ProgramCase({self.id!r})"
