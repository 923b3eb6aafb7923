"""Result files named on a command line (``eval roc results/``, ``eval direction ...``): read, validated,
and the bad ones skipped with one warning each. A command-layer helper (its errors are UsageErrors),
below every command module so that each can use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from benchmark.console import log, user_input
from core import results


def result_docs(paths: Sequence[str], name: str = results.RESULT,
                example: str = "results/ or results/3/tracr/eap/<run>/result.json") -> list[tuple[Path, dict]]:
    """``core.results.read_result_files`` for a command: its errors are the user's (usage errors)."""
    with user_input():
        return results.read_result_files(paths, name, example)


def report_skips(skipped, what: str) -> None:
    """The closing line of a reader: how many files it skipped (nothing when none)."""
    if skipped:
        log(f"{what}: skipped {len(skipped)} invalid result file(s) (see the warnings above)")
