"""Trained SIIT / IIT / natural models a case can load.

Model directories live at ``<root>/<case>/<kind>/`` (see :mod:`cases.siit.model_files`). Roots, in
order of preference: the locally trained models (``$CIRCUIT_BENCH_MODELS``, default ``trained/`` in the
working directory, where ``python main.py train iit`` writes), then the models shipped with the
package (:data:`SHIPPED_DIR`).
"""

from __future__ import annotations

import os
from pathlib import Path

from cases.siit.model_files import is_model_dir, load_model_dir

SHIPPED_DIR = Path(__file__).resolve().parent / "models"
KINDS = ("siit", "iit", "natural")
LOCAL_ENV = "CIRCUIT_BENCH_MODELS"
DEFAULT_LOCAL = "trained"


def local_dir() -> Path:
    return Path(os.environ.get(LOCAL_ENV, DEFAULT_LOCAL))


def roots() -> list[Path]:
    return [local_dir(), SHIPPED_DIR]


def model_dir(case_id: str, kind: str) -> Path | None:
    """The directory of a trained model (local first, then shipped), or None."""
    for root in roots():
        d = root / str(case_id) / kind
        if is_model_dir(d):
            return d
    return None


def available_models(case_id: str) -> list[str]:
    """Model kinds with a trained directory for this case, in the order siit, iit, natural."""
    return [k for k in KINDS if model_dir(case_id, k) is not None]


def load_trained(case_id: str, kind: str = "siit", device: str = "cpu"):
    """(HookedTransformer, ground-truth Circuit) of a trained model."""
    d = model_dir(case_id, kind)
    if d is None:
        have = available_models(case_id)
        raise FileNotFoundError(f"case {case_id} has no trained {kind!r} model"
                                + (f"; it has {', '.join(have)}" if have else "")
                                + f" (train one: python main.py train iit -i {case_id} --model-kind {kind})")
    return load_model_dir(d, device=device)


def trained_ground_truth(case_id: str, kind: str = "siit"):
    """The LL ground-truth Circuit of a trained model, without loading its weights."""
    import json

    from core.circuit import Circuit
    from cases.siit.model_files import GROUND_TRUTH

    d = model_dir(case_id, kind)
    if d is None:
        raise FileNotFoundError(f"case {case_id} has no trained {kind!r} model")
    return Circuit.from_json(json.loads((d / GROUND_TRUTH).read_text()))
