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
import tempfile
from pathlib import Path
from typing import Any, Iterator

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


def write_json_atomic(path: str | os.PathLike, doc: Any) -> Path:
    return write_atomic(path, dumps(doc) + "\n")


def run_id(config: dict[str, Any]) -> str:
    """A short, stable id for a run configuration."""
    blob = json.dumps(_jsonable(config), sort_keys=True, separators=(",", ":"))
    return "run-" + hashlib.sha256(blob.encode()).hexdigest()[:12]


def safe_component(name: str) -> str:
    """Method names like ``pkg.mod:Cls`` as a directory name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))


def result_path(out: str | os.PathLike, case: str, model: str, method: str, rid: str) -> Path:
    return Path(out) / safe_component(case) / safe_component(model) / safe_component(method) / rid / RESULT


def load_result(path: str | os.PathLike) -> dict[str, Any]:
    with open(path) as f:
        return json.load(f)


def is_finished(path: str | os.PathLike) -> bool:
    try:
        return load_result(path).get("status") == "ok"
    except (OSError, ValueError):
        return False


def iter_results(out: str | os.PathLike, name: str = RESULT) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every readable result file ``name`` under ``out`` (unreadable ones are skipped, never fatal)."""
    for path in sorted(Path(out).rglob(name)):
        try:
            yield path, load_result(path)
        except (OSError, ValueError):
            continue


def versions() -> dict[str, str]:
    """Versions of Python and of the packages a result depends on (recorded in every result and model)."""
    import platform
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist, key in (("circuit-bench", "circuit-bench"), ("torch", "torch"), ("transformer-lens", "transformer_lens"),
                      ("numpy", "numpy"), ("scikit-learn", "scikit-learn"), ("tracr-pypi", "tracr")):
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            if key == "circuit-bench":
                from core import __version__
                out[key] = __version__ + "+src"
    return out
