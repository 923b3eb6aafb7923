"""Maintenance of a Tracr compiled-model cache over every Tracr case: move entries stored under a
case's legacy (bytecode) key to its current key, and remove entries no case uses.

``python -m cases.tracr.maintenance --rekey [--prune] [DIR]`` (default DIR: the shipped cache).
This module sits above both :mod:`cases.tracr.case` and :mod:`cases.tracr.cache`, so the cache never
imports the cases.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from cases.tracr.cache import SHIPPED_CACHE, legacy_cache_key
from cases.tracr.case import TracrCase
from cases.tracr.compiled import META_FILE
from cases.tracr.table import TRACR_CASES


def all_tracr_cases() -> list[TracrCase]:
    return [TracrCase(s) for s in TRACR_CASES.values()]


def rekey(cache_dir: str | Path, log=print) -> int:
    """Move the entries of ``cache_dir`` stored under a case's legacy (bytecode) key to its current key
    (e.g. entries built by older code, then merged). Returns how many entries were written."""
    root, written, moved = Path(cache_dir), 0, set()
    cases = all_tracr_cases()
    for case in cases:
        kw = case.compile_kwargs()
        new = case.cache_key()
        old = legacy_cache_key(case.program, kw["vocab"], kw["max_seq_len"], causal=kw["causal"],
                               compiler_bos=kw["compiler_bos"], compiler_pad=kw["compiler_pad"])
        if old != new and (root / old / META_FILE).is_file():
            moved.add(old)
            if not (root / new).exists():
                shutil.copytree(root / old, root / new)
                written += 1
                log(f"case {case.id}: {old[:12]} -> {new[:12]}")
    for old in moved - {c.cache_key() for c in cases}:
        shutil.rmtree(root / old)
    return written


def prune(cache_dir: str | Path, log=print) -> int:
    """Remove the entries of ``cache_dir`` that no Tracr case uses (e.g. after a program changed)."""
    used = {c.cache_key() for c in all_tracr_cases()}
    gone = 0
    for d in sorted(Path(cache_dir).iterdir()):
        if d.is_dir() and re.fullmatch(r"[0-9a-f]{64}", d.name) and d.name not in used:
            shutil.rmtree(d)
            gone += 1
            log(f"removed unused entry {d.name[:12]}")
    return gone


def main(argv: list[str]) -> None:
    flags = {a for a in argv if a.startswith("--")}
    dirs = [a for a in argv if not a.startswith("--")]
    if "--rekey" not in flags or flags - {"--rekey", "--prune"} or len(dirs) > 1:
        sys.exit("usage: python -m cases.tracr.maintenance --rekey [--prune] [DIR] (default DIR: the shipped cache)")
    target = dirs[0] if dirs else SHIPPED_CACHE
    print(f"rekeyed {rekey(target)} entries")
    if "--prune" in flags:
        print(f"removed {prune(target)} unused entries")


if __name__ == "__main__":
    main(sys.argv[1:])
