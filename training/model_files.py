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


# ---------------------------------------------------------------------------------------------------
# config.json: an allow-list of HookedTransformerConfig fields with their types (issue 27)
# ---------------------------------------------------------------------------------------------------
# A config.json comes from a model directory someone else made. Only these fields may appear, with
# these types; nothing that names a tokenizer, remote code, a checkpoint or a quantisation backend to
# load (those would make HookedTransformer import or read other files). device/dtype/n_devices are
# set by the loader, never read from the file.

_INT = ("d_model", "d_head", "n_layers", "n_ctx", "n_heads", "d_vocab", "d_vocab_out")
_OPT_INT = ("d_mlp", "n_key_value_heads", "num_experts", "experts_per_token", "train_seq_length", "window_size",
            "seed", "rotary_dim", "n_params", "relative_attention_max_distance",
            "relative_attention_num_buckets", "decoder_start_token_id", "checkpoint_index", "checkpoint_value",
            "NTK_original_ctx_len", "yarn_original_max_position_embeddings")
_BOOL = ("use_attn_result", "use_split_qkv_input", "default_prepend_bos", "attn_only", "gated_mlp", "uses_rms_norm",
         "layer_norm_folding", "final_rms", "use_attn_scale", "use_hook_mlp_in", "use_attn_in", "use_qk_norm",
         "use_logn_attn", "use_dynamic_ntk_rope", "use_local_attn", "ungroup_grouped_query_attention",
         "init_weights", "scale_attn_by_inverse_layer_idx", "parallel_attn_mlp", "use_hook_tokens",
         "post_embedding_ln", "rotary_adjacent_pairs", "tie_word_embeddings", "use_normalization_before_and_after",
         "use_NTK_by_parts_rope", "use_yarn_rope", "yarn_truncate", "yarn_global_attn_only", "use_attention_sinks",
         "norm_topk_prob", "tokenizer_prepends_bos")
_FLOAT = ("eps", "attn_scale", "initializer_range", "rotary_scaling_factor", "attn_scores_soft_cap",
          "output_logits_soft_cap", "NTK_by_parts_low_freq_factor", "NTK_by_parts_high_freq_factor",
          "NTK_by_parts_factor", "yarn_factor", "yarn_attention_factor", "yarn_beta_fast", "yarn_beta_slow",
          "rotary_base", "rotary_base_local", "clip_qkv")
_CHOICES = {"act_fn": {"relu", "gelu", "silu", "gelu_new", "solu_ln", "gelu_fast", "gelu_pytorch_tanh", "reglu",
                       "swiglu", "geglu"},
            "normalization_type": {None, "LN", "LNPre", "RMS", "RMSPre"},
            "positional_embedding_type": {"standard", "rotary", "shortformer", "alibi"},
            "attention_dir": {"causal", "bidirectional"},
            "init_mode": {"gpt2", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "muP"}}
# fields that may appear only with the value that loads nothing
_FIXED = {"tokenizer_name": None, "trust_remote_code": False, "load_in_4bit": False, "quantization_method": None,
          "from_checkpoint": False, "checkpoint_label_type": None}
_LABELS = ("model_name", "original_architecture")  # names recorded, never looked up (str or null)
_MAX_DIM = 1 << 20  # a size beyond this is a corrupt file, not a model (and would exhaust memory)
_OPTIONAL_FLOAT = ("rotary_base_local", "clip_qkv")


def check_config(cfg, source: str | Path) -> dict:
    """``cfg`` (a config.json's content) checked against the allow-list; returns it. Raises a one-line
    ``ValueError`` naming ``source`` and the field for anything else."""
    import math

    def bad(field: str, why: str):
        raise ValueError(f"{source}: field {field!r} {why}")

    if not isinstance(cfg, dict):
        raise ValueError(f"{source}: not a JSON object (a {type(cfg).__name__})")
    for k, v in cfg.items():
        if k in _INT or k in _OPT_INT:
            if v is None and k in _OPT_INT:
                continue
            if not isinstance(v, int) or isinstance(v, bool):
                bad(k, f"must be an integer{' or null' if k in _OPT_INT else ''}, got {v!r:.40}")
            lo = 1 if k in _INT or k in ("d_mlp", "n_key_value_heads", "rotary_dim") else 0
            if k == "seed" or k == "n_params" or k == "decoder_start_token_id":
                lo, hi = 0, 2 ** 63 - 1
            else:
                hi = _MAX_DIM
            if not lo <= v <= hi:
                bad(k, f"must be in [{lo}, {hi}], got {v}")
        elif k in _BOOL:
            if not isinstance(v, bool) and not (v is None and k == "tokenizer_prepends_bos"):
                bad(k, f"must be true or false, got {v!r:.40}")
        elif k in _FLOAT:
            if v is None and k in _OPTIONAL_FLOAT:
                continue
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not (isinstance(v, float) or abs(v) < 2 ** 63) \
                    or not math.isfinite(v):
                bad(k, f"must be a finite number, got {v!r:.40}")
        elif k in _CHOICES:
            if not isinstance(v, (str, type(None))) or v not in _CHOICES[k]:
                bad(k, f"must be one of {sorted(map(str, _CHOICES[k]))}, got {v!r:.40}")
        elif k in _FIXED:
            if v != _FIXED[k] or type(v) is not type(_FIXED[k]):
                bad(k, f"must be {json.dumps(_FIXED[k])} (a model directory may not name code or files to load), "
                       f"got {v!r:.40}")
        elif k in _LABELS:
            if not (v is None or (isinstance(v, str) and len(v) <= 200)):
                bad(k, f"must be a short string or null, got {v!r:.40}")
        elif k == "attn_types":
            if v is not None and not (isinstance(v, list) and all(t in ("global", "local") for t in v)):
                bad(k, f"must be null or a list of 'global'/'local', got {v!r:.40}")
        else:
            bad(k, "is not an allowed HookedTransformerConfig field")
    for k in _INT:
        if k not in cfg and k not in ("d_vocab_out",):
            bad(k, "is missing")
    return cfg


def read_config(path: str | Path) -> dict:
    """A model directory's config.json, parsed and checked (:func:`check_config`)."""
    try:
        cfg = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"{path}: not a readable JSON config ({type(err).__name__}: {str(err)[:80]})") from None
    return check_config(cfg, path)


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
    cfg = read_config(d / CONFIG)
    cfg.update({k: True for k in GRAPH_FLAGS}, device=str(device), dtype=torch.float32)
    model = HookedTransformer(HookedTransformerConfig(**cfg), move_to_device=True)
    model.load_state_dict(load_file(str(d / WEIGHTS), device=str(device)), strict=True)
    model.eval()
    return model, Circuit.from_json(json.loads((d / GROUND_TRUTH).read_text()))


def read_metadata(directory: str | Path) -> dict:
    p = Path(directory) / ARGS
    return json.loads(p.read_text()) if p.is_file() else {}


def load_correspondence(directory: str | Path):
    from training.correspondence import Correspondence

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
