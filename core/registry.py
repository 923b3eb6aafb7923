"""Registries that list what exists and fail with a one-line error naming close matches."""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterable, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """An unknown case id, method name, ... The message is one line and names close matches."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        known = [str(k) for k in known]
        close = _close_matches(str(name), known)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        if not close and len(known) <= 12:
            hint = f"; known: {', '.join(known)}"
        self.message = f"unknown {kind} {name!r}{hint}"
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


def _close_matches(name: str, known: Iterable[str]) -> list[str]:
    """Up to three close matches; a name that differs only in case comes first (``IOI`` -> ``ioi``)."""
    known = list(known)
    folded = [k for k in known if k.lower() == name.lower()]
    lower = {k.lower(): k for k in known}
    rest = [lower[m] for m in difflib.get_close_matches(name.lower(), list(lower), n=3, cutoff=0.5)]
    return list(dict.fromkeys(folded + rest))[:3]


class Registry(Generic[T]):
    """Name -> factory. Factories are called lazily so that listing stays cheap."""

    def __init__(self, kind: str):
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str, factory: Callable[..., T] | None = None, *, replace: bool = False):
        def deco(f):
            if name in self._factories and not replace:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = f
            return f
        return deco(factory) if factory is not None else deco

    def names(self) -> list[str]:
        return list(self._factories)

    def __contains__(self, name: str) -> bool:
        return name in self._factories

    def factory(self, name: str) -> Callable[..., T]:
        try:
            return self._factories[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._factories) from None

    def get(self, name: str, **kwargs) -> T:
        return self.factory(name)(**kwargs)
