"""What ``benchmark`` runs when not told otherwise: every non-trivial Tracr case, each method's own sweep."""

from __future__ import annotations

from cases import case_ids, get_case
from methods import method_class


def default_cases() -> list[str]:
    """The case ids ``benchmark`` (and ``train iit --cases all``) takes by default: every Tracr case not
    flagged trivial."""
    return [cid for cid in case_ids("tracr") if "trivial" not in get_case(cid).flags]


def sweep_params(method: str) -> dict:
    """The method's own default sweep (``Method.default_sweep``: ACDC's 21 taus, SP's 11 lambdas), the
    same grid ``run METHOD`` uses, so a method name means one thing in every command."""
    return method_class(method).default_sweep()
