"""On-disk cache of compiled Tracr programs. Never imports tracr.compiler or JAX.

Key: sha256 of a canonical description of the program graph (every expression's type, name,
encoding, children, and for Maps / SequenceMaps the function's *source text* (the lines of its
code), argument names, defaults, closure values and referenced globals, for Selects the comparison
or predicate), the sorted vocabulary, max_seq_len, causal, BOS / PAD, mlp_exactness, the
tracr-pypi version and our converter version. The key never depends on the Python version's
bytecode, so the shipped cache serves every supported Python; only a function without source (built
by ``exec`` or typed at a prompt) is described by its bytecode (valid on that Python only).
:func:`legacy_cache_key` is the previous, bytecode-based key (``cases.tracr.maintenance.rekey`` renames such entries).

Expressions are described by their *name* and their position in tracr's BFS order, not by their
label: a label is ``name_{id}`` with a process-global id, so the same program built in two
processes gets different labels. A cached model is renamed to the caller's labels on load
(``CompiledModel.relabelled``). The residual layout of a cached model is that of the process that
compiled it (tracr sorts residual directions by label); it computes the same function.

Location: ``$CIRCUIT_BENCH_CACHE`` if set (read and written; nothing else is searched). Otherwise
entries are looked up in the user cache directory (platformdirs' ``user_cache_dir``, ``.../tracr``),
then in the cache shipped inside the package (``cases/tracr/cache/``, read-only: new compilations go
to the user cache, never into the installed package). One directory per key; writes are atomic
(temporary directory, then rename).
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


SHIPPED_CACHE = Path(__file__).resolve().parent / "cache"


def user_cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("circuit-bench", appauthor=False)) / "tracr"


def default_cache_dir() -> Path:
    """Where new compilations are stored: ``$CIRCUIT_BENCH_CACHE``, else the user cache directory."""
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else user_cache_dir()


def search_dirs() -> list[Path]:
    """Where entries are looked up, in order: ``$CIRCUIT_BENCH_CACHE`` alone, else the user cache and
    the shipped cache."""
    env = os.environ.get(ENV_VAR)
    return [Path(env)] if env else [user_cache_dir(), SHIPPED_CACHE]


def find_entry(key: str, cache_dir: str | Path | None = None) -> Path | None:
    """The directory of the entry for ``key`` (in ``cache_dir``, or the first of :func:`search_dirs`)."""
    _entry(key, cache_dir)
    for root in ([Path(cache_dir)] if cache_dir is not None else search_dirs()):
        if (root / key / META_FILE).is_file():
            return root / key
    return None


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


_LEGACY = False  # True while legacy_cache_key runs: describe code by bytecode, as keys did before


def _source_lines(code: types.CodeType) -> list[str] | None:
    """The stripped source lines of a code object (its first line to the last line its code covers)."""
    import linecache

    lines = linecache.getlines(code.co_filename)
    last = max((ln for _, _, ln in code.co_lines() if ln is not None), default=code.co_firstlineno)
    if not lines or last > len(lines) or code.co_firstlineno < 1:
        return None
    return [line.strip() for line in lines[code.co_firstlineno - 1:last]]


def _code(code: types.CodeType, seen: frozenset) -> list:
    if code in seen:
        return ["recursive", code.co_name]
    seen = seen | {code}
    source = None if _LEGACY else _source_lines(code)
    if source is None:  # no source file (exec, a prompt), or the legacy key: bytecode (this Python only)
        return ["code", code.co_code.hex(), [_canon(c, seen) for c in code.co_consts], list(code.co_names)]
    n_args = code.co_argcount + code.co_kwonlyargcount
    return ["source", code.co_name, list(code.co_varnames[:n_args]), source]


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


def legacy_cache_key(program, vocab, max_seq_len: int, **kwargs) -> str:
    """The key before source-text fingerprints (bytecode-based: it differs between Python versions)."""
    global _LEGACY
    _LEGACY = True
    try:
        return cache_key(program, vocab, max_seq_len, **kwargs)
    finally:
        _LEGACY = False


# ---------------------------------------------------------------------------------------------
# Storage.

def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _entry(key: str, cache_dir: str | Path | None) -> Path:
    if not re.fullmatch(r"[0-9a-f]{64}", key):
        raise ValueError(f"not a cache key: {key!r}")
    return Path(cache_dir) if cache_dir is not None else default_cache_dir()


def load_cached(key: str, cache_dir: str | Path | None = None, device: str = "cpu") -> CompiledModel | None:
    """The cached model for ``key`` (in ``cache_dir``, else the first of :func:`search_dirs` that has
    it), or None. A corrupt entry is treated as missing."""
    path = find_entry(key, cache_dir)
    if path is None or not (path / WEIGHTS_FILE).is_file():
        return None
    try:
        return CompiledModel.load(path, device=device)
    except (OSError, ValueError, KeyError, RuntimeError, json.JSONDecodeError):
        return None


def store(compiled: CompiledModel, key: str, cache_dir: str | Path | None = None) -> Path:
    """Write ``compiled`` under ``key`` atomically (in ``cache_dir``, else :func:`default_cache_dir`,
    never the shipped cache unless ``$CIRCUIT_BENCH_CACHE`` names it); an existing entry is kept."""
    root = _entry(key, cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / key
    tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=root))
    try:
        compiled.save(tmp)
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0700: readable like any other directory
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
