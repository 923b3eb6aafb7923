"""Where a model came from: :class:`ModelRef` (kind, source, directory, weights sha256, training command).

Every result records the ``ModelRef`` of its model, and its run id includes :meth:`ModelRef.identity`,
so two runs share an id only when their models have the same weights. A ``ModelRef`` is resolved from
files (a case's ``model_ref``): nothing is built, and each file's sha256 is computed once per
(path, size, mtime) in a process.

Sources: ``shipped`` (a model that ships with the package: a SIIT/IIT/natural, IOI or direction
model directory, or a Tracr cache entry), ``compiled`` (a Tracr model compiled on this machine, in the
user cache), ``trained`` (a model directory in the user data directory, where ``train`` writes),
``path`` (a model directory the user named with ``--model-dir``), ``builtin`` (the toy case's model,
built in code) and ``case`` (a plug-in case that says nothing about its model).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (memoised per resolved path, size and mtime)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def combined_sha256(files: dict[str, str]) -> str:
    """One sha256 for several files: of the sorted ``name:sha256`` lines (a single file: its own sha256)."""
    if len(files) == 1:
        return next(iter(files.values()))
    text = "".join(f"{name}:{sha}\n" for name, sha in sorted(files.items()))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: what a run used, recorded in its result and (``identity``) in its run id."""

    kind: str
    source: str
    directory: str | None = None
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256 (the weights that were hashed)
    training_command: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. a Tracr cache key

    @property
    def sha256(self) -> str | None:
        return combined_sha256(self.files) if self.files else None

    @property
    def explicit(self) -> bool:
        """A model the user named by directory (``--model-dir``), not one the case ships or builds."""
        return self.source in ("trained", "path")

    @property
    def label(self) -> str:
        """The result path's model component: the kind, plus a weights prefix for a user's directory
        (so a trained model's results never land among the shipped model's)."""
        if self.explicit and self.sha256:
            return f"{self.kind}-{self.sha256[:8]}"
        return self.kind

    def identity(self) -> dict[str, Any]:
        """What of the model enters the run id: its kind and its content (never where it lies)."""
        out: dict[str, Any] = {"kind": self.kind, "weights_sha256": self.sha256}
        if self.sha256 is None:  # nothing hashed yet (an uncompiled Tracr program): what determines it
            out.update({k: v for k, v in self.extra.items() if k == "cache_key"})
            if self.source == "case" and self.directory:
                out["directory"] = self.directory
        return out

    def describe(self) -> str:
        """One line for stderr: ``model siit (shipped, sha256 1a2b3c4d...)``."""
        where = f" {self.directory}" if self.explicit and self.directory else ""
        sha = f", sha256 {self.sha256[:12]}" if self.sha256 else ""
        return f"model {self.kind} ({self.source}{where}{sha})"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source, "directory": self.directory,
                "weights_sha256": self.sha256, "files": dict(self.files),
                "training_command": self.training_command, **self.extra}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "ModelRef":
        known = {"kind", "source", "directory", "weights_sha256", "files", "training_command"}
        return cls(kind=doc["kind"], source=doc.get("source", "case"), directory=doc.get("directory"),
                   files=dict(doc.get("files") or {}), training_command=doc.get("training_command"),
                   extra={k: v for k, v in doc.items() if k not in known})


def hash_files(directory: str | os.PathLike, names: tuple[str, ...]) -> dict[str, str]:
    """``{name: sha256}`` for the files of ``names`` that exist in ``directory``."""
    d = Path(directory)
    return {n: sha256_file(d / n) for n in names if (d / n).is_file()}
