"""Trained SIIT / IIT / natural models a case can load.

Model directories live at ``<root>/<case>/<kind>/`` (see :mod:`training.model_files`). Further trained
seeds of a kind, with the same recipe, ship beside it as ``<root>/<case>/<kind>-seed<S>/`` (``S`` the
training seed; :func:`model_seeds`, ``benchmark --model-seeds``). A model
*kind* (``--model siit``) always means the model shipped with the package (:data:`SHIPPED_DIR`): a
locally trained model never stands in for it. Locally trained models are used only when asked for
by directory (``--model-dir DIR``, :func:`explicit_ref`). ``train iit`` writes them under
:func:`local_dir`: ``$CIRCUIT_BENCH_MODELS`` if set, else ``<user data dir>/circuit-bench/models``
(platformdirs' ``user_data_dir``), never the working directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from training.model_files import ARGS, CONFIG, GROUND_TRUTH, WEIGHTS, is_model_dir, load_model_dir
from core.circuit import Circuit
from core.provenance import ModelRef, hash_files

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "cases" / "siit" / "models"  # the shipped models are case data
KINDS = ("siit", "iit", "natural")
LOCAL_ENV = "CIRCUIT_BENCH_MODELS"
REQUIRED = (WEIGHTS, CONFIG, GROUND_TRUTH)


def user_data_dir() -> Path:
    """circuit-bench's user data directory (platformdirs convention, e.g. ~/.local/share/circuit-bench)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("circuit-bench", appauthor=False))


def local_dir() -> Path:
    """Where ``train iit`` / ``train ioi`` / ``train direction`` write by default (never read implicitly)."""
    env = os.environ.get(LOCAL_ENV)
    return Path(env) if env else user_data_dir() / "models"


SEED_SUFFIX = "-seed"


def model_dir(case_id: str, kind: str, seed: int | None = None) -> Path | None:
    """The directory of the shipped model of ``kind`` for this case (of training seed ``seed``; None:
    the primary one, ``<case>/<kind>/``), or None."""
    if seed is not None:
        return model_seeds(case_id, kind).get(int(seed))
    d = SHIPPED_DIR / str(case_id) / kind
    return d if is_model_dir(d) else None


def _seed_in(meta: dict) -> int | None:
    seed = meta.get("seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def training_seed(directory: str | Path) -> int | None:
    """The training seed a model directory records (``training_args.json``), or None."""
    return _seed_in(read_args(directory))


def model_seeds(case_id: str, kind: str) -> dict[int, Path]:
    """The shipped models of ``kind`` for this case by training seed: the primary ``<kind>/`` (at the seed it
    records) and every ``<kind>-seed<S>/``, in seed order ({} without a shipped model)."""
    primary = model_dir(case_id, kind)
    if primary is None:
        return {}
    seed = training_seed(primary)
    out = {} if seed is None else {seed: primary}
    for d in (SHIPPED_DIR / str(case_id)).glob(f"{kind}{SEED_SUFFIX}*"):
        tail = d.name[len(kind) + len(SEED_SUFFIX):]
        if tail.isdigit() and is_model_dir(d) and training_seed(d) == int(tail):
            out.setdefault(int(tail), d)
    return dict(sorted(out.items()))


def available_models(case_id: str) -> list[str]:
    """Model kinds shipped for this case, in the order siit, iit, natural."""
    return [k for k in KINDS if model_dir(case_id, k) is not None]


def trained_models(case_id: str) -> dict[str, str]:
    """Locally trained model directories of this case (kind -> directory) under :func:`local_dir`:
    listed by ``cases show``, loaded only with ``--model-dir``."""
    root = local_dir() / str(case_id)
    return {k: str(root / k) for k in KINDS if is_model_dir(root / k)}


def check_model_dir(directory: str | Path, *, required: tuple[str, ...] = REQUIRED) -> Path:
    """``directory`` if it is a complete model directory, else a ValueError naming what is missing."""
    d = Path(directory)
    if not d.is_dir():
        raise ValueError(f"--model-dir {directory}: no such directory")
    missing = [f for f in required if not (d / f).is_file()]
    if missing:
        raise ValueError(f"--model-dir {directory}: not a model directory (missing {', '.join(missing)})")
    return d


def read_args(directory: str | Path) -> dict:
    p = Path(directory) / ARGS
    try:
        return json.loads(p.read_text()) if p.is_file() else {}
    except (OSError, ValueError):
        return {}


def _under(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def directory_ref(directory: str | Path, kind: str, source: str, weights: tuple[str, ...] = (WEIGHTS,),
                  record_seed: bool = False, **extra) -> ModelRef:
    """The ModelRef of a model directory; ``record_seed``: its recorded training seed as ``model_seed``."""
    d = Path(directory)
    meta = read_args(d)
    if record_seed and _seed_in(meta) is not None:
        extra["model_seed"] = _seed_in(meta)
    return ModelRef(kind=kind, source=source, directory=str(d.resolve()), files=hash_files(d, weights),
                    training_command=meta.get("command"), extra=extra)


def explicit_ref(case_id: str, directory: str | Path, kind: str | None = None,
                 required: tuple[str, ...] = REQUIRED, weights: tuple[str, ...] = (WEIGHTS,)) -> ModelRef:
    """The ModelRef of a model directory the user named (``--model-dir``): checked, never a fallback.
    ``kind`` defaults to the directory's recorded model kind (``training_args.json``), else ``siit``."""
    d = check_model_dir(directory, required=required)
    meta = read_args(d)
    trained_for = meta.get("case")
    if trained_for is not None and str(trained_for) != str(case_id):
        raise ValueError(f"--model-dir {directory}: a model of case {trained_for}, not of case {case_id}")
    recorded = meta.get("model_kind")
    kind = kind or recorded or "siit"
    if recorded and kind != recorded:
        raise ValueError(f"--model-dir {directory} holds a {recorded!r} model, not {kind!r} (drop --model or "
                         f"pass --model {recorded})")
    if kind == "tracr":
        raise ValueError("--model tracr is the compiled model; --model-dir takes a trained model (siit, iit, natural)")
    source = "trained" if _under(d, local_dir()) else "path"
    return directory_ref(d, kind, source, weights)


def shipped_ref(case_id: str, kind: str, seed: int | None = None) -> ModelRef:
    """The shipped model of ``kind`` (of training seed ``seed``; None: the primary one). Its training seed
    is recorded as ``model_seed``."""
    d = model_dir(case_id, kind, seed)
    if d is None:
        if seed is None or model_dir(case_id, kind) is None:
            raise FileNotFoundError(f"case {case_id} has no shipped {kind!r} model")
        have = ", ".join(map(str, model_seeds(case_id, kind))) or "none recorded"
        raise FileNotFoundError(f"case {case_id} has no shipped {kind!r} model of training seed {seed} "
                                f"(model seeds: {have})")
    return directory_ref(d, kind, "shipped", record_seed=True)


def load_trained(case_id: str, kind: str = "siit", device: str = "cpu", directory: str | Path | None = None):
    """(HookedTransformer, ground-truth Circuit) of the shipped model of ``kind`` (or of ``directory``)."""
    d = Path(directory) if directory is not None else model_dir(case_id, kind)
    if d is None:
        have = available_models(case_id)
        raise FileNotFoundError(f"case {case_id} has no trained {kind!r} model"
                                + (f"; it has {', '.join(have)}" if have else "")
                                + f" (train one: python main.py train iit -i {case_id} --model-kind {kind}, "
                                  "then pass --model-dir)")
    return load_model_dir(d, device=device)


def trained_ground_truth(case_id: str, kind: str = "siit", directory: str | Path | None = None):
    """The LL ground-truth Circuit of a trained model, without loading its weights."""
    d = Path(directory) if directory is not None else model_dir(case_id, kind)
    if d is None:
        raise FileNotFoundError(f"case {case_id} has no trained {kind!r} model")
    return Circuit.from_json(json.loads((d / GROUND_TRUTH).read_text()))
