"""Small helpers shared by the evaluators: JSON-safe numbers, the trapezoid rule, atomic writes."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence


def finite(x: Any) -> Any:
    """NaN/inf -> None (JSON has no NaN), recursively through dicts, lists and tuples; numpy scalars unwrapped."""
    if hasattr(x, "item") and callable(x.item) and getattr(x, "ndim", 1) == 0:
        x = x.item()
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite(v) for v in x]
    return x


def trapezoid(x: Sequence[float], y: Sequence[float]) -> float:
    """Trapezoid area under y(x), x in the given (sorted) order; 0 for fewer than two points."""
    return float(sum((x[i + 1] - x[i]) * (y[i] + y[i + 1]) / 2 for i in range(len(x) - 1)))


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, then rename it into place, with the
    mode the umask gives new files (0644 by default; mkstemp's own 0600 would hide it from others)."""
    from core.results import file_mode

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
