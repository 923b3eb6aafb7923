"""Result files: ``OUT/<case>/<model>/<method>/<run-id>/result.json``, written atomically.

The run id is a hash of the *resolved* configuration (``benchmark.runner.Job.config``: case, model kind
and weights sha256, every method hyper-parameter with its default, data size, seed and corruption,
ablation, metric, graph options, and :data:`SCHEMA`), so however a run is spelled, re-running the same
configuration finds the same directory: ``--resume`` skips it when its result is ``ok``; without
``--resume`` the result is recomputed and replaced atomically. Files are written with the mode the
user's umask gives new files (0644 by default), not ``mkstemp``'s 0600.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from core import __version__

SCHEMA = 2  # 2: run ids hash the resolved configuration; results carry a provenance block
RESULT = "result.json"


def _jsonable(x: Any) -> Any:
    """Plain JSON: NaN/inf become null (JSON has no NaN), tuples lists, sets sorted lists."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (set, frozenset)):
        return sorted(_jsonable(v) for v in x)
    if hasattr(x, "item") and callable(x.item) and getattr(x, "ndim", 1) == 0:  # numpy / torch scalars
        return _jsonable(x.item())
    if hasattr(x, "tolist"):
        return _jsonable(x.tolist())
    return x


def floor_dust(values: Iterable[float], rel: float) -> list[float]:
    """The float-dust rule: every ``|v| <= rel * max |v|`` (NaN ignored in the maximum) becomes 0.0, so
    that scores below float resolution tie with the exact zeros; NaN stays NaN. Shared by the floored
    AUROC (``evaluations.roc.floored_edge_roc``) and the agreement statistics' ``score_floor``."""
    vals = [float(v) for v in values]
    top = max((abs(v) for v in vals if not math.isnan(v)), default=0.0)
    return [0.0 if abs(v) <= rel * top else v for v in vals]


def finite(x: Any) -> Any:
    """NaN/inf -> None (JSON has no NaN), recursively through dicts, lists and tuples; numpy scalars unwrapped.
    (The evaluators' JSON: unlike :func:`dumps` it keeps keys as they are and tuples as lists.)"""
    if hasattr(x, "item") and callable(x.item) and getattr(x, "ndim", 1) == 0:
        x = x.item()
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite(v) for v in x]
    return x


def dumps(doc: Any, indent: int | None = 1) -> str:
    return json.dumps(_jsonable(doc), indent=indent, allow_nan=False)


def file_mode() -> int:
    """The mode a new file gets under the current umask (0o644 for the usual 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_atomic(path: str | os.PathLike, text: str | bytes) -> Path:
    """Write to a temporary file in the same directory, fsync, then rename over ``path``. The file gets
    the umask's mode (mkstemp's 0600 would hide results from other users, e.g. a host user reading a
    Docker volume)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode() if isinstance(text, str) else text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, then rename it into place, with the
    mode the umask gives new files (0644 by default; mkstemp's own 0600 would hide it from others)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_json_atomic(path: str | os.PathLike, doc: Any) -> Path:
    return write_atomic(path, dumps(doc) + "\n")


def run_id(config: dict[str, Any]) -> str:
    """A short, stable id for a run configuration."""
    blob = json.dumps(_jsonable(config), sort_keys=True, separators=(",", ":"))
    return "run-" + hashlib.sha256(blob.encode()).hexdigest()[:12]


def safe_component(name: str) -> str:
    """Method names like ``pkg.mod:Cls`` as a directory name: letters, digits, ``-_.`` only, and never
    ``.``/``..``/empty (a name made of dots has them replaced), so it cannot leave its parent directory."""
    out = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))
    return "_" * max(1, len(out)) if set(out) <= {"."} else out


def result_path(out: str | os.PathLike, case: str, model: str, method: str, rid: str) -> Path:
    return Path(out) / safe_component(case) / safe_component(model) / safe_component(method) / safe_component(rid) \
        / RESULT


def check_no_links(out: str | os.PathLike, path: str | os.PathLike) -> Path:
    """``path`` if it lies under ``out`` and no existing directory between them (nor ``path`` itself)
    is a symbolic link: links inside an output directory are never followed on write (``out`` itself
    may be one). A ``ValueError`` naming the link otherwise."""
    out, path = Path(out), Path(path)
    try:
        rel = path.relative_to(out)
    except ValueError:
        raise ValueError(f"refusing to write {path}: not under the output directory {out}") from None
    if ".." in rel.parts:
        raise ValueError(f"refusing to write {path}: '..' in a path under {out}")
    cur = out
    for part in rel.parts:
        cur = cur / part
        if cur.is_symlink():
            raise ValueError(f"refusing to write {path}: {cur} is a symbolic link (links inside an output "
                             "directory are never followed on write; remove it or pass another --out)")
    return path


def load_result(path: str | os.PathLike, validate: bool = True) -> dict[str, Any]:
    """A result file, parsed and (by default) checked with :func:`validate_result`: a ``ValueError``
    naming the file and its first problem for anything that is not a well-formed result."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason})") from None
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON ({err.msg} at line {err.lineno} column {err.colno})") from None
    if validate:
        problems = validate_result(doc)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise ValueError(f"{path}: {problems[0]}{more}")
    return doc


def is_finished(path: str | os.PathLike) -> bool:
    """A valid result with status ok (a malformed one is not finished: ``--resume`` recomputes it)."""
    try:
        return load_result(path).get("status") == "ok"
    except (OSError, ValueError):
        return False


def iter_results(out: str | os.PathLike, name: str = RESULT, on_skip=None) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every valid result file ``name`` under ``out``, in path order. A file that cannot be read or is
    not a valid result (:func:`validate_result`), and a symbolic link (never followed: see README,
    "Result files"), is skipped with ``on_skip(path, why)`` (default: :func:`warn_skip`), never fatal."""
    on_skip = on_skip or warn_skip
    found = []
    for root, dirs, files in os.walk(out, followlinks=False):
        for d in sorted(dirs):
            if os.path.islink(os.path.join(root, d)):
                found.append((Path(root) / d, "a symbolic link to a directory (not followed)"))
        for f in files:
            if f == name:
                p = Path(root) / f
                found.append((p, "a symbolic link (not followed)" if p.is_symlink() else None))
    # result documents are validated; other files found this way (e.g. eval's faithfulness.json) only
    # have to be a JSON object
    check = name in (RESULT, "direction_result.json")
    for path, why in sorted(found, key=lambda t: str(t[0])):
        if why is None:
            try:
                doc = load_result(path, validate=check)
                if not isinstance(doc, dict):
                    raise ValueError(f"{path}: not a JSON object")
                yield path, doc
                continue
            except OSError as err:
                why = f"cannot be read ({err.strerror or err})"
            except ValueError as err:
                why = str(err).removeprefix(f"{path}: ")
        on_skip(path, why)


def versions() -> dict[str, str]:
    """Versions of Python and of the packages a result depends on (recorded in every result and model)."""
    out = {"python": platform.python_version()}
    for dist, key in (("circuit-bench", "circuit-bench"), ("torch", "torch"), ("transformer-lens", "transformer_lens"),
                      ("numpy", "numpy"), ("scikit-learn", "scikit-learn"), ("tracr-pypi", "tracr")):
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            if key == "circuit-bench":
                out[key] = __version__ + "+src"
    return out


# ---------------------------------------------------------------------------------------------------
# Validation of result files (issue 27): every reader goes through load_result / iter_results
# ---------------------------------------------------------------------------------------------------

_SKIPS: list[list[tuple[Path, str]]] = []  # open skip_report() collectors


def warn_skip(path, why: str) -> None:
    """The default ``on_skip``: one warning line on stderr; counted by an open :func:`skip_report`."""
    if any(Path(path) == p for collector in _SKIPS for p, _ in collector):
        return  # already reported by this command (e.g. a link seen by two readers)
    print(f"circuit-bench: warning: skip {path}: {why}", file=sys.stderr, flush=True)
    for collector in _SKIPS:
        collector.append((Path(path), why))


def read_result_files(paths: Sequence[str], name: str = RESULT,
                      example: str = "results/ or results/3/tracr/eap/<run>/result.json") -> list[tuple[Path, dict]]:
    """(path, document) of every result file called ``name`` in ``paths`` (files, or directories searched
    recursively). A file that is not a valid result is skipped with one warning naming it and why
    (``warn_skip``, counted by an open ``skip_report``). No path, a path that does not exist (checked
    before anything is read) or no valid file at all is a ValueError / FileNotFoundError."""
    if not paths:
        raise ValueError(f"eval needs result files or directories (e.g. {example})")
    for p in paths:
        if not Path(p).exists():
            raise FileNotFoundError(f"no such result file or directory: {p}")
    docs: list[tuple[Path, dict]] = []
    for path in map(Path, paths):
        if path.is_dir():
            docs += list(iter_results(path, name))
            continue
        try:
            docs.append((path, load_result(path)))
        except (OSError, ValueError) as err:
            warn_skip(path, str(err).removeprefix(f"{path}: ") if isinstance(err, ValueError) else (err.strerror or str(err)))
    if not docs:
        raise ValueError(f"no valid {name} files under {' '.join(paths)}")
    return docs


class skip_report:
    """``with skip_report() as skipped:`` collects the (path, why) of every file skipped inside."""

    def __enter__(self) -> list[tuple[Path, str]]:
        self.skipped: list[tuple[Path, str]] = []
        _SKIPS.append(self.skipped)
        return self.skipped

    def __exit__(self, *exc) -> None:
        _SKIPS.remove(self.skipped)


_MAX_INT = 2 ** 63  # an integer beyond this is not a count or a seed: a float() of it may overflow
_NAMES = ("case", "model", "method")


def check_name(value: Any, field: str, optional: bool = False) -> str | None:
    """A problem with a name that becomes a path component (case/model/method), or None."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        return f"{field!r} must be a string, got {type(value).__name__}"
    if value in ("", ".", "..") or "\x00" in value:
        return f"{field!r} is not a safe name: {value!r:.60}"
    if field == "case":  # a case id, plug-in spec or case-file path: written only through safe_component
        return f"{field!r} is longer than 4096 characters" if len(value) > 4096 else None
    if any(c in value for c in "/\\") or len(value) > 200:
        return f"{field!r} is not a safe name: {value!r:.60}"
    return None


def _walk_numbers(x: Any, where: str, out: list[str], depth: int = 0) -> None:
    if depth > 64:
        out.append(f"{where}: nested too deeply")
    elif isinstance(x, bool) or x is None or isinstance(x, str):
        return
    elif isinstance(x, float):
        if not math.isfinite(x):
            out.append(f"{where}: non-finite number {x}")
    elif isinstance(x, int):
        if abs(x) >= _MAX_INT:
            out.append(f"{where}: integer out of range ({len(str(abs(x)))} digits)")
    elif isinstance(x, dict):
        for k, v in x.items():
            _walk_numbers(v, f"{where}.{k}", out, depth + 1)
            if len(out) > 5:
                return
    elif isinstance(x, list):
        for i, v in enumerate(x):
            _walk_numbers(v, f"{where}[{i}]", out, depth + 1)
            if len(out) > 5:
                return


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_roc(level: str, roc: Any, out: list[str]) -> None:
    if not isinstance(roc, dict):
        out.append(f"'roc.{level}' must be an object, got {type(roc).__name__}")
        return
    for k in ("auroc", "pessimistic_auc"):
        v = roc.get(k)
        if v is not None and not (_is_num(v) and 0 <= v <= 1):
            out.append(f"'roc.{level}.{k}' must be a number in [0, 1] or null, got {v!r:.40}")
    for k in ("fpr", "tpr"):
        v = roc.get(k)
        if v is not None and not (isinstance(v, list) and all(_is_num(t) for t in v)):
            out.append(f"'roc.{level}.{k}' must be a list of numbers")


def validate_result(doc: Any, max_schema: int | None = None) -> list[str]:
    """The problems of a result document (``result.json`` or ``direction_result.json``), [] if none.
    Extra fields are allowed; schema versions 1..``SCHEMA`` are accepted."""
    max_schema = SCHEMA if max_schema is None else max_schema
    if not isinstance(doc, dict):
        return [f"not a JSON object (a {type(doc).__name__})"]
    out: list[str] = []
    schema = doc.get("schema")
    if not (isinstance(schema, int) and not isinstance(schema, bool) and 1 <= schema <= max_schema):
        out.append(f"unsupported or missing 'schema' {schema!r:.20} (this version reads 1..{max_schema})")
    status = doc.get("status")
    if status not in ("ok", "error"):
        out.append(f"'status' must be \"ok\" or \"error\", got {status!r:.40}")
    for k in _NAMES:
        if k not in doc:
            out.append(f"missing key {k!r}")
        else:
            problem = check_name(doc[k], k, optional=(k == "model" and status != "ok"))
            if problem:
                out.append(problem)
    _walk_numbers(doc, "result", out)
    for k in ("params", "data", "timing", "scores", "method_info", "versions", "metrics"):
        if doc.get(k) is not None and not isinstance(doc[k], dict):
            out.append(f"{k!r} must be an object, got {type(doc[k]).__name__}")
    if out or status != "ok":
        if status == "error" and doc.get("error") is not None and not isinstance(doc["error"], str):
            out.append(f"'error' must be a string, got {type(doc['error']).__name__}")
        return out
    timing = doc.get("timing") or {}
    for k, v in timing.items():
        if k.endswith("seconds") and not _is_num(v):
            out.append(f"'timing.{k}' must be a number, got {v!r:.40}")
    if doc.get("kind") == "direction":
        for k, v in (doc.get("metrics") or {}).items():
            if v is not None and not _is_num(v) and not isinstance(v, (list, dict)):
                out.append(f"'metrics.{k}' must be a number or null, got {v!r:.40}")
        return out
    roc = doc.get("roc")
    if not isinstance(roc, dict):
        out.append(f"missing or malformed 'roc' (got {type(roc).__name__})")
        return out
    if "skipped" in roc:  # a case without a ground truth (its faithfulness evaluations still work)
        if not isinstance(roc["skipped"], str):
            out.append("'roc.skipped' must be a string (why the ROC was skipped)")
    else:
        for level in ("edges", "nodes"):
            if level not in roc:
                out.append(f"missing key 'roc.{level}'")
        for level, r in roc.items():
            _check_roc(level, r, out)
    scores = doc.get("scores") or {}
    for level in ("edges", "nodes"):
        s = scores.get(level)
        if s is not None and not (isinstance(s, dict) and all(v is None or _is_num(v) for v in s.values())):
            out.append(f"'scores.{level}' must map names to numbers")
    sweep = doc.get("sweep")
    if sweep is not None and not (isinstance(sweep, list) and all(
            isinstance(p, dict) and isinstance(p.get("edges", []), list) and isinstance(p.get("nodes", []), list)
            for p in sweep)):
        out.append("'sweep' must be a list of {param, edges, nodes} objects")
    return out


# ---------------------------------------------------------------------------------------------------
# The typed result document: the one place a result.json is written (to_json) and read (from_json)
# ---------------------------------------------------------------------------------------------------

def _dict(x: Any) -> dict[str, Any] | None:
    return dict(x) if isinstance(x, Mapping) else None


@dataclass
class DataSpec:
    """A result's ``data`` block: examples, data seed, ablation and metric (None where a document lacks
    one: readers apply their defaults)."""

    n: int | None = None
    seed: int | None = None
    ablation: str | None = None
    metric: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"n": self.n, "seed": self.seed, "ablation": self.ablation, "metric": self.metric}

    @classmethod
    def from_json(cls, doc: Any) -> "DataSpec":
        doc = doc if isinstance(doc, Mapping) else {}
        return cls(doc.get("n"), doc.get("seed"), doc.get("ablation"), doc.get("metric"))


@dataclass
class Provenance:
    """Schema 2's ``provenance`` block: the resolved model (``ModelRef.to_json``, kept as written), the
    case's data spec and the graph options."""

    model: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    graph: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "data": self.data, "graph": self.graph}

    @classmethod
    def from_json(cls, doc: Any) -> "Provenance | None":
        if not isinstance(doc, Mapping):
            return None
        return cls(_dict(doc.get("model")), _dict(doc.get("data")), _dict(doc.get("graph")))

    @property
    def weights_sha256(self) -> str | None:
        sha = (self.model or {}).get("weights_sha256")
        return sha if isinstance(sha, str) and sha else None

    @property
    def explicit(self) -> bool:
        """A model the user named by directory (source ``trained`` or ``path``)."""
        return (self.model or {}).get("source") in ("trained", "path")


@dataclass
class Scores:
    """A result's ``scores`` block: the method's edge and node scores (name -> number)."""

    edges: dict[str, float] | None = None
    nodes: dict[str, float] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"edges": self.edges, "nodes": self.nodes}

    @classmethod
    def from_json(cls, doc: Any) -> "Scores | None":
        if not isinstance(doc, Mapping):
            return None
        return cls(_dict(doc.get("edges")), _dict(doc.get("nodes")))


# the document's keys, in the order a result file has them; keys after "data" are written only when set
# (``error`` and, for a finished run, ``ground_truth`` are written even when null)
_ORDER = ("schema", "case", "model", "method", "params", "seed", "status", "error", "data", "run_id", "versions",
          "provenance", "graph", "ground_truth", "scores", "method_info", "roc", "traceback", "timing",
          "ablation_info", "sweep", "path")


@dataclass
class RunResult:
    """One run's result document (``result.json``; README "Result files"). :meth:`to_json` writes the
    document exactly as the runner always has (same keys, same order); :meth:`from_json` reads any
    valid document of schema 1..:data:`SCHEMA` (missing blocks are None) and keeps keys it does not
    know in ``extra`` (written after the known ones)."""

    case: str
    method: str
    model: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = 0
    status: str = "error"
    error: str | None = None
    data: DataSpec = field(default_factory=DataSpec)
    run_id: str | None = None
    versions: dict[str, str] | None = None
    provenance: Provenance | None = None
    graph: dict[str, Any] | None = None
    ground_truth: dict[str, Any] | None = None
    scores: Scores | None = None
    method_info: dict[str, Any] | None = None
    roc: dict[str, Any] | None = None
    traceback: str | None = None
    timing: dict[str, Any] | None = None
    ablation_info: dict[str, Any] | None = None
    sweep: list[dict[str, Any]] | None = None
    path: str | None = None  # recorded in the file only for a run that failed before it started
    schema: int | None = SCHEMA
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in _ORDER:
            value = getattr(self, key)
            if value is None and key not in ("schema", "case", "model", "method", "params", "seed", "status", "error",
                                             "run_id", "versions"):
                if key == "ground_truth" and self.roc is not None:  # a finished run records "no ground truth"
                    out[key] = None
                continue
            out[key] = value.to_json() if hasattr(value, "to_json") else value
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> "RunResult":
        known = set(_ORDER)
        return cls(case=doc.get("case"), method=doc.get("method"), model=doc.get("model"),
                   params=dict(doc.get("params") or {}), seed=doc.get("seed"), status=doc.get("status"),
                   error=doc.get("error"), data=DataSpec.from_json(doc.get("data")), run_id=doc.get("run_id"),
                   versions=_dict(doc.get("versions")), provenance=Provenance.from_json(doc.get("provenance")),
                   graph=_dict(doc.get("graph")), ground_truth=_dict(doc.get("ground_truth")),
                   scores=Scores.from_json(doc.get("scores")), method_info=_dict(doc.get("method_info")),
                   roc=_dict(doc.get("roc")), traceback=doc.get("traceback"), timing=_dict(doc.get("timing")),
                   ablation_info=_dict(doc.get("ablation_info")), sweep=doc.get("sweep"), path=doc.get("path"),
                   schema=doc.get("schema"), extra={k: v for k, v in doc.items() if k not in known})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "RunResult":
        """A result file, validated (:func:`load_result`)."""
        return cls.from_json(load_result(path))

    def write(self, path: str | os.PathLike) -> Path:
        return write_json_atomic(path, self.to_json())

    # ---- what the readers ask of a result ------------------------------------------------------------
    @property
    def model_label(self) -> str:
        """The model a result ran on, as a label that tells a user's model from the shipped one: the kind,
        or ``kind-<sha256 prefix>`` for a model named by directory (source ``trained`` or ``path``), as
        in the result path's model component."""
        prov = self.provenance
        if prov is not None and prov.explicit and prov.weights_sha256:
            return f"{self.model}-{prov.weights_sha256[:8]}"
        return str(self.model)

    @property
    def weights_sha256(self) -> str | None:
        return self.provenance.weights_sha256 if self.provenance is not None else None

    @property
    def model_seed(self) -> int | None:
        """The training seed of the shipped trained model the run used (``benchmark --model-seeds``), from
        the provenance; None for a compiled model, a model named by directory, or an older result."""
        model = (self.provenance.model or {}) if self.provenance is not None else {}
        seed = model.get("model_seed")
        ok = model.get("source") == "shipped" and isinstance(seed, int) and not isinstance(seed, bool)
        return seed if ok else None

    @property
    def model_dir(self) -> str | None:
        """The directory of a model the user named (``--model-dir``), from the provenance (schema 2)."""
        prov = self.provenance
        return (prov.model or {}).get("directory") if prov is not None and prov.explicit else None

    def roc_level(self, level: str = "edges") -> dict[str, Any]:
        """``roc.<level>`` ({} when absent, e.g. a failed run or a case without a ground truth)."""
        block = (self.roc or {}).get(level)
        return block if isinstance(block, dict) else {}

    def seconds(self, key: str) -> float | None:
        """``timing.<key>`` as a number, None when the result did not record it."""
        v = (self.timing or {}).get(key)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    @property
    def edge_scores(self) -> dict[str, float] | None:
        return self.scores.edges if self.scores is not None else None

    @property
    def signed_edges(self) -> dict[str, float] | None:
        """The method's signed edge scores (``method_info.signed``), where it gave them."""
        signed = (self.method_info or {}).get("signed")
        return signed if isinstance(signed, dict) else None

    @property
    def truth_edges(self) -> list[str]:
        return list((self.ground_truth or {}).get("edges") or [])


def iter_run_results(out: str | os.PathLike, on_skip=None) -> Iterator[tuple[Path, RunResult]]:
    """:func:`iter_results`, typed."""
    for path, doc in iter_results(out, on_skip=on_skip):
        yield path, RunResult.from_json(doc)
