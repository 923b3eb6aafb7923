"""Result files named on a command line (``eval roc results/``, ``eval direction ...``): read, validated,
and the bad ones skipped with one warning each. A command-layer helper (its errors are UsageErrors),
below every command module so that each can use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from benchmark.console import UsageError, log
from core import results


def result_docs(paths: Sequence[str], name: str = results.RESULT,
                example: str = "results/ or results/3/tracr/eap/<run>/result.json") -> list[tuple[Path, dict]]:
    """Result documents (files called ``name``) from files and directories (recursively). A file that
    is not a valid result is skipped with one warning line naming it and why (counted by an open
    ``results.skip_report``); none left is a usage error."""
    if not paths:
        raise UsageError(f"eval needs result files or directories (e.g. {example})")
    for p in paths:  # a path that does not exist is a typo: fail before reading anything
        if not Path(p).exists():
            raise UsageError(f"no such result file or directory: {p}")
    docs = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            docs += list(results.iter_results(path, name))
        else:
            try:
                docs.append((path, results.load_result(path)))
            except (OSError, ValueError) as err:
                why = str(err).removeprefix(f"{path}: ") if isinstance(err, ValueError) else (err.strerror or str(err))
                results.warn_skip(path, why)
    if not docs:
        raise UsageError(f"no valid {name} files under {' '.join(paths)}")
    return docs


def report_skips(skipped, what: str) -> None:
    """The closing line of a reader: how many files it skipped (nothing when none)."""
    if skipped:
        log(f"{what}: skipped {len(skipped)} invalid result file(s) (see the warnings above)")
