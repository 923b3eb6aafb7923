"""What InterpBench's minimum input length (3 tokens + BOS) would do to our Tracr datasets (issue 19, item 3).

Patches :attr:`TracrCaseSpec.lengths` in this process so that the default minimum is ``--min`` tokens
(cases with their own ``min_len`` keep it), then

- ``datasets``: runs ``tests/cases/test_tracr_cases.py::test_program_and_dataset`` on every case (through
  ``pytest.main`` in this process, so the patch applies) and prints the failures;
- ``models``: for every shipped trained model (siit, iit, natural), the fraction of sequences whose every
  labelled position is right, on inputs of the new minimum length and on the longer ones (400 inputs,
  seed 5; categorical argmax, numerical within 0.05).

Usage: ``OMP_NUM_THREADS=1 python benchmarks/tracr_min_length.py {datasets,models} [--min 3] [--cases ...]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cases.tracr import table
from cases.tracr.case import TracrCase
from cases.tracr.table import TRACR_CASES
from training.registry import available_models

ROOT = Path(__file__).resolve().parents[1]


def patch_min_length(minimum: int) -> None:
    def lengths(self):
        lo = self.min_len if self.min_len is not None else min(minimum, self.max_seq_len)
        return tuple(range(lo, self.max_seq_len + 1)) if self.variable_length else (self.max_seq_len,)
    table.TracrCaseSpec.lengths = property(lengths)


class _Failures:
    """A pytest plug-in that keeps each failed test's case id and the start of its message."""

    def __init__(self):
        self.failed: dict[str, str] = {}

    def pytest_runtest_logreport(self, report):
        if report.when == "call" and report.failed:
            self.failed[report.nodeid.split("[", 1)[1].rstrip("]")] = str(report.longrepr)[-300:]


def datasets(ids) -> None:
    """Runs the suite's dataset test in this process (pytest collects it: nothing here imports tests/)."""
    import pytest

    test = ROOT / "tests" / "cases" / "test_tracr_cases.py"
    failures = _Failures()
    pytest.main(["-q", "-p", "no:cacheprovider", *(f"{test}::test_program_and_dataset[{cid}]" for cid in ids)],
                plugins=[failures])
    print(json.dumps({"cases": len(ids), "failed": failures.failed}, indent=1))


def models(ids, minimum: int) -> None:
    import torch

    for cid in ids:
        case = TracrCase(cid)
        for kind in available_models(cid):
            model = case.load_model(kind)
            data = case.dataset(400, seed=5, model=kind)
            short = data.mask.sum(1) == minimum
            with torch.no_grad():
                logits = model(data.clean)
            if case.output_type == "categorical":
                ok = (logits.argmax(-1) == data.clean_labels) | (data.clean_labels == -100)
            else:
                ok = ((logits[..., 0] - data.clean_labels).abs() < 0.05) | torch.isnan(data.clean_labels)
            whole = ok.all(1).float()
            f = (lambda m: round(whole[m].mean().item(), 3) if m.any() else None)
            print(json.dumps({"case": cid, "model": kind, f"n_len{minimum}": int(short.sum()),
                              f"seq_acc_len{minimum}": f(short), "seq_acc_longer": f(~short)}), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["datasets", "models"])
    p.add_argument("--min", type=int, default=3)
    p.add_argument("--cases", nargs="*")
    a = p.parse_args()

    ids = a.cases or list(TRACR_CASES)
    patch_min_length(a.min)
    datasets(ids) if a.what == "datasets" else models(ids, a.min)


if __name__ == "__main__":
    main()
