"""Checks for method hyper-parameters, used by the constructors: a bad value is a ValueError that names
the parameter (the CLI turns it into a one-line usage error, exit 2, before any model is built)."""

from __future__ import annotations

import math
from typing import Any, Sequence


def number(name: str, value: Any, *, low: float | None = None, low_open: bool = False,
           high: float | None = None) -> float:
    """A finite real number, optionally ``>= low`` (``> low`` with ``low_open``) and ``<= high``."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if low is not None and (x <= low if low_open else x < low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {value!r}")
    if high is not None and x > high:
        raise ValueError(f"{name} must be <= {high:g}, got {value!r}")
    return x


def integer(name: str, value: Any, *, low: int = 1) -> int:
    """An integer ``>= low`` (a float with an integral value is accepted)."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        ok = float(value) == int(value)
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if int(value) < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")
    return int(value)


def grid(name: str, values: Any, **bounds) -> list[float]:
    """A non-empty list of numbers (each checked as by :func:`number`), sorted ascending."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"{name} must be a list of numbers, got {values!r}")
    if not values:
        raise ValueError(f"{name} must not be empty")
    return sorted(number(f"{name} value", v, **bounds) for v in values)
