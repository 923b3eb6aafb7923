"""Trained-model directories, HuggingFace-hub compatible (one folder per model):

- ``model.safetensors``: the LL weights;
- ``config.json``: the ``HookedTransformerConfig`` arguments (JSON);
- ``training_args.json``: case, model kind, seed, reproducing command, train config, metrics, timing, versions;
- ``ground_truth.json``: the LL ground-truth ``Circuit`` (``Circuit.to_json``);
- ``correspondence.json``: the HL->LL correspondence (optional).

``push_to_hub``/``pull_from_hub`` import ``huggingface_hub`` lazily (an optional extra); both accept
an ``api`` object with the ``HfApi`` methods used, so tests never touch the network.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from core.circuit import Circuit
from core.results import dumps, write_atomic, write_json_atomic

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
ARGS = "training_args.json"
GROUND_TRUTH = "ground_truth.json"
CORRESPONDENCE = "correspondence.json"
FILES = (WEIGHTS, CONFIG, ARGS, GROUND_TRUTH, CORRESPONDENCE)
GRAPH_FLAGS = ("use_attn_result", "use_split_qkv_input", "use_hook_mlp_in")
_NOT_CONFIG = ("device", "dtype", "n_devices")


def config_of(model) -> dict:
    """The JSON-able HookedTransformerConfig arguments of a model (device/dtype dropped)."""
    import dataclasses

    from transformer_lens import HookedTransformerConfig

    cfg = model.cfg
    init = {f.name for f in dataclasses.fields(HookedTransformerConfig) if f.init}
    out = {}
    for k in sorted(init - set(_NOT_CONFIG)):
        v = getattr(cfg, k, None)
        try:
            json.dumps(v, allow_nan=False)
        except (TypeError, ValueError):
            continue
        out[k] = v
    return out


def save_model_dir(directory: str | Path, model, *, ground_truth: Circuit, metadata: dict,
                   correspondence=None) -> Path:
    """Write a model directory (each file atomically). Returns the directory."""
    from safetensors.torch import save

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    write_atomic(d / WEIGHTS, save(state))
    write_json_atomic(d / CONFIG, config_of(model))
    write_json_atomic(d / GROUND_TRUTH, ground_truth.to_json())
    if correspondence is not None:
        write_json_atomic(d / CORRESPONDENCE, correspondence.to_json())
    write_json_atomic(d / ARGS, metadata)
    return d


def is_model_dir(directory: str | Path) -> bool:
    d = Path(directory)
    return all((d / f).is_file() for f in (WEIGHTS, CONFIG, GROUND_TRUTH))


def load_model_dir(directory: str | Path, device: str = "cpu"):
    """(HookedTransformer with attn result / split q,k,v / mlp_in hooks on, ground-truth Circuit)."""
    from safetensors.torch import load_file
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    d = Path(directory)
    if not is_model_dir(d):
        missing = [f for f in (WEIGHTS, CONFIG, GROUND_TRUTH) if not (d / f).is_file()]
        raise FileNotFoundError(f"{d} is not a model directory (missing {', '.join(missing)})")
    cfg = json.loads((d / CONFIG).read_text())
    cfg.update({k: True for k in GRAPH_FLAGS}, device=str(device), dtype=torch.float32)
    model = HookedTransformer(HookedTransformerConfig(**cfg), move_to_device=True)
    model.load_state_dict(load_file(str(d / WEIGHTS), device=str(device)), strict=True)
    model.eval()
    return model, Circuit.from_json(json.loads((d / GROUND_TRUTH).read_text()))


def read_metadata(directory: str | Path) -> dict:
    p = Path(directory) / ARGS
    return json.loads(p.read_text()) if p.is_file() else {}


def load_correspondence(directory: str | Path):
    from cases.siit.correspondence import Correspondence

    p = Path(directory) / CORRESPONDENCE
    return Correspondence.from_json(json.loads(p.read_text())) if p.is_file() else None


# ---------------------------------------------------------------------------------------------------
# HuggingFace hub (optional)
# ---------------------------------------------------------------------------------------------------

def _hf_api(api=None, token: str | None = None):
    if api is not None:
        return api
    try:
        from huggingface_hub import HfApi
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise RuntimeError("pushing to / pulling from the hub needs huggingface_hub (pip install huggingface_hub)") from err
    return HfApi(token=token)


def push_to_hub(directory: str | Path, repo_id: str, path_in_repo: str | None = None, *, token: str | None = None,
                private: bool = False, api=None) -> str:
    """Upload a model directory to ``repo_id`` (under ``path_in_repo``, e.g. ``"3/siit"``). Returns the
    commit description from the hub (or whatever ``api.upload_folder`` returns)."""
    d = Path(directory)
    if not is_model_dir(d):
        raise FileNotFoundError(f"{d} is not a model directory")
    hub = _hf_api(api, token)
    hub.create_repo(repo_id=repo_id, exist_ok=True, private=private)
    return hub.upload_folder(folder_path=str(d), repo_id=repo_id, path_in_repo=path_in_repo or None,
                             allow_patterns=list(FILES), commit_message=f"circuit-bench model {path_in_repo or ''}".strip())


def pull_from_hub(repo_id: str, directory: str | Path, path_in_repo: str | None = None, *, revision: str | None = None,
                  token: str | None = None, api=None) -> Path:
    """Download a model directory from the hub into ``directory``; returns it."""
    hub = _hf_api(api, token)
    prefix = (path_in_repo.strip("/") + "/") if path_in_repo else ""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        try:
            local = hub.hf_hub_download(repo_id=repo_id, filename=prefix + name, revision=revision)
        except Exception as err:  # noqa: BLE001 - optional files may be absent
            if name == CORRESPONDENCE or name == ARGS:
                continue
            raise FileNotFoundError(f"{repo_id}: cannot download {prefix + name}: {err}") from err
        shutil.copyfile(local, d / name)
    if not is_model_dir(d):
        raise FileNotFoundError(f"{repo_id}/{prefix}: not a model directory")
    return d


def metadata_json(meta: dict) -> str:
    return dumps(meta)
