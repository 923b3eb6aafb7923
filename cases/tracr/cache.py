"""On-disk cache of compiled Tracr programs. Never imports tracr.compiler or JAX.

Key: sha256 of a canonical description of the program graph (every expression's type, name,
encoding, children, and for Maps / SequenceMaps the function's bytecode, constants, defaults,
closure values and referenced globals, for Selects the comparison or predicate), the sorted
vocabulary, max_seq_len, causal, BOS / PAD, mlp_exactness, the tracr-pypi version and our converter
version.

Expressions are described by their *name* and their position in tracr's BFS order, not by their
label: a label is ``name_{id}`` with a process-global id, so the same program built in two
processes gets different labels. A cached model is renamed to the caller's labels on load
(``CompiledModel.relabelled``). The residual layout of a cached model is that of the process that
compiled it (tracr sorts residual directions by label); it computes the same function.

Location: ``$CIRCUIT_BENCH_CACHE`` if set, else ``cases/tracr/cache/`` inside the repository (so a
populated cache can be shipped). One directory per key; writes are atomic (temporary directory,
then rename).
"""

from __future__ import annotations

import collections
import dis
import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
import types
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from cases.tracr.compiled import CONVERTER_VERSION, META_FILE, WEIGHTS_FILE, CompiledModel

ENV_VAR = "CIRCUIT_BENCH_CACHE"
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def default_cache_dir() -> Path:
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else Path(__file__).resolve().parent / "cache"


@functools.lru_cache(maxsize=1)
def tracr_version() -> str:
    try:
        return metadata.version("tracr-pypi")
    except metadata.PackageNotFoundError:  # pragma: no cover - a source install
        return "unknown"


# ---------------------------------------------------------------------------------------------
# Canonical descriptions of values and functions.

def _canon(v: Any, seen: frozenset = frozenset()) -> Any:
    """A JSON-able, process-independent description of a Python value."""
    if v is None or isinstance(v, (bool, int, str)):
        return [type(v).__name__, v]
    if isinstance(v, float):
        return ["float", repr(v)]
    if isinstance(v, (list, tuple)):
        return [type(v).__name__, [_canon(x, seen) for x in v]]
    if isinstance(v, (set, frozenset)):
        return ["set", sorted((_canon(x, seen) for x in v), key=json.dumps)]
    if isinstance(v, dict):
        return ["dict", sorted(([_canon(k, seen), _canon(x, seen)] for k, x in v.items()), key=json.dumps)]
    if isinstance(v, types.ModuleType):
        return ["module", v.__name__]
    if isinstance(v, types.CodeType):
        return _code(v, seen)
    if isinstance(v, functools.partial):
        return ["partial", _canon(v.func, seen), _canon(v.args, seen), _canon(v.keywords, seen)]
    if isinstance(v, (types.FunctionType, types.MethodType)):
        return function_fingerprint(v, seen)
    from tracr.rasp import rasp  # no JAX behind this import

    if isinstance(v, rasp.RASPExpr):  # captured in a closure; its name, not its (lazy, global) id
        return ["rasp", type(v).__name__, v.name]
    return [type(v).__module__ + "." + type(v).__qualname__, _ADDRESS.sub("", repr(v))]


def _code(code: types.CodeType, seen: frozenset) -> list:
    if code in seen:
        return ["recursive", code.co_name]
    seen = seen | {code}
    return ["code", code.co_code.hex(), [_canon(c, seen) for c in code.co_consts], list(code.co_names)]


def function_fingerprint(f, seen: frozenset = frozenset()) -> list:
    """Bytecode, constants, defaults, closure values and referenced globals of ``f``."""
    if isinstance(f, types.MethodType):
        return ["method", _canon(f.__self__, seen), function_fingerprint(f.__func__, seen)]
    code = getattr(f, "__code__", None)
    if code is None:  # builtins, ufuncs, callable objects
        return ["callable", _canon(getattr(f, "__qualname__", None) or repr(f), seen)]
    if code in seen:
        return ["recursive", code.co_name]
    inner = seen | {code}
    closure = [_canon(c.cell_contents, inner) if _cell_full(c) else ["empty"] for c in (f.__closure__ or ())]
    globals_ = getattr(f, "__globals__", {})
    names = sorted(set(_global_names(code)))
    used = [[n, _canon(globals_[n], inner)] for n in names if n in globals_]
    return ["function", _code(code, seen), _canon(f.__defaults__, inner), _canon(f.__kwdefaults__, inner),
            closure, used]


def _cell_full(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def _global_names(code: types.CodeType) -> Iterable[str]:
    for ins in dis.get_instructions(code):
        if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
            yield ins.argval
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            yield from _global_names(c)


# ---------------------------------------------------------------------------------------------
# The program graph in tracr's BFS order.

def bfs_expressions(program) -> list:
    """The program's expressions in the order tracr's ``extract_rasp_graph`` inserts them.

    Labels are read in exactly tracr's order, so lazily assigned ids match a direct compile.
    """
    order: dict[str, Any] = {}
    queue = collections.deque([program])
    order[program.label] = program
    while queue:
        expr = queue.popleft()
        for child in expr.children:
            queue.append(child)
            order.setdefault(child.label, child)
    return list(order.values())


def describe_program(program) -> list[dict]:
    """A canonical, process-independent description of the program graph."""
    from tracr.rasp import rasp

    exprs = bfs_expressions(program)
    position = {e.label: i for i, e in enumerate(exprs)}
    out = []
    for e in exprs:
        d: dict[str, Any] = {"type": type(e).__name__, "name": e.name,
                             "children": [position[c.label] for c in e.children]}
        if isinstance(e, rasp.SOp):
            d["encoding"] = rasp.get_encoding(e).value
        if isinstance(e, rasp.LinearSequenceMap):
            d["factors"] = [_canon(e.fst_fac), _canon(e.snd_fac)]
        if isinstance(e, (rasp.Map, rasp.SequenceMap)):
            d["f"] = function_fingerprint(e.f)
        if isinstance(e, rasp.Select):
            p = e.predicate
            d["predicate"] = ["comparison", p.value] if isinstance(p, rasp.Comparison) else function_fingerprint(p)
        if isinstance(e, rasp.Aggregate):
            d["default"] = _canon(e.default)
        for attr in ("fill", "value", "check_length"):  # Full, ConstantSOp, ConstantSelector
            if attr in vars(e):
                d[attr] = _canon(getattr(e, attr))
        out.append(d)
    return out


def cache_key(program, vocab, max_seq_len: int, *, causal: bool, compiler_bos: Any, compiler_pad: Any,
              mlp_exactness: float = 100) -> str:
    doc = {
        "program": describe_program(program),
        "vocab": sorted((_canon(v) for v in vocab), key=json.dumps),
        "max_seq_len": int(max_seq_len),
        "causal": bool(causal),
        "bos": _canon(compiler_bos),
        "pad": _canon(compiler_pad),
        "mlp_exactness": _canon(mlp_exactness),
        "tracr": tracr_version(),
        "converter": CONVERTER_VERSION,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Storage.

def _entry(key: str, cache_dir: str | Path | None) -> Path:
    if not re.fullmatch(r"[0-9a-f]{64}", key):
        raise ValueError(f"not a cache key: {key!r}")
    return Path(cache_dir) if cache_dir is not None else default_cache_dir()


def load_cached(key: str, cache_dir: str | Path | None = None, device: str = "cpu") -> CompiledModel | None:
    """The cached model for ``key``, or None. A corrupt entry is treated as missing."""
    path = _entry(key, cache_dir) / key
    if not (path / META_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
        return None
    try:
        return CompiledModel.load(path, device=device)
    except (OSError, ValueError, KeyError, RuntimeError, json.JSONDecodeError):
        return None


def store(compiled: CompiledModel, key: str, cache_dir: str | Path | None = None) -> Path:
    """Write ``compiled`` under ``key`` atomically; an entry that already exists is kept."""
    root = _entry(key, cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / key
    tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=root))
    try:
        compiled.save(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if (final / META_FILE).is_file():  # another process stored it first
                return final
            shutil.rmtree(final, ignore_errors=True)  # a broken entry: replace it
            os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
