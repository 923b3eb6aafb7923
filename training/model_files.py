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

import dataclasses
import json
import math
import shutil
from pathlib import Path

import torch

from core.circuit import Circuit
from core.results import write_atomic, write_json_atomic
from training.correspondence import Correspondence

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
FIXED = {"tokenizer_name": None, "trust_remote_code": False, "load_in_4bit": False, "quantization_method": None,
         "from_checkpoint": False, "checkpoint_label_type": None, "checkpoint_index": None, "checkpoint_value": None,
         "n_devices": 1}
_LABELS = ("model_name", "original_architecture")  # names recorded, never looked up (str or null)
_MAX_DIM = 1 << 20  # a size beyond this is a corrupt file, not a model (and would exhaust memory)
_OPTIONAL_FLOAT = ("rotary_base_local", "clip_qkv")


class ConfigError(ValueError):
    """A config field outside the allow-list: ``SOURCE: field 'FIELD': what was expected`` (one line).
    ``field`` is None for a config that is not a JSON object; ``expected`` says what was expected."""

    def __init__(self, source: str | Path, field: str | None, expected: str):
        where = "" if field is None else f" field {field!r}:"
        super().__init__(f"{source}:{where} {expected}")
        self.source, self.field, self.expected = str(source), field, expected


def _show(v) -> str:
    s = json.dumps(v)
    return s if len(s) <= 40 else s[:37] + "..."


def _check_int(k: str, v) -> str | None:
    if v is None and k in _OPT_INT:
        return None
    if not isinstance(v, int) or isinstance(v, bool):
        return f"expected int{' or null' if k in _OPT_INT else ''}, got {_show(v)}"
    lo = 1 if k in _INT or k in ("d_mlp", "n_key_value_heads", "rotary_dim") else 0
    hi = 2 ** 63 - 1 if k in ("seed", "n_params", "decoder_start_token_id") else _MAX_DIM
    if k in ("seed", "n_params", "decoder_start_token_id"):
        lo = 0
    return None if lo <= v <= hi else f"must be in [{lo}, {hi}], got {v}"


def _check_field(k: str, v) -> str | None:
    """What was expected of field ``k`` if ``v`` is not allowed there, else None."""
    if k in _INT or k in _OPT_INT:
        return _check_int(k, v)
    if k in _BOOL:
        ok = isinstance(v, bool) or (v is None and k == "tokenizer_prepends_bos")
        return None if ok else f"expected bool, got {_show(v)}"
    if k in _FLOAT:
        if v is None and k in _OPTIONAL_FLOAT:
            return None
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (isinstance(v, float) or abs(v) < 2 ** 63) \
            and math.isfinite(v)
        return None if ok else f"expected a finite number, got {_show(v)}"
    if k in _CHOICES:
        ok = isinstance(v, (str, type(None))) and v in _CHOICES[k]
        return None if ok else f"must be one of {sorted(map(str, _CHOICES[k]))}, got {_show(v)}"
    if k in FIXED:
        ok = v == FIXED[k] and type(v) is type(FIXED[k])
        return None if ok else (f"must be {json.dumps(FIXED[k])} (a config may not name code or files to load), "
                                f"got {_show(v)}")
    if k in _LABELS:
        return None if v is None or (isinstance(v, str) and len(v) <= 200) else \
            f"must be a short string or null, got {_show(v)}"
    if k == "attn_types":
        ok = v is None or (isinstance(v, list) and all(t in ("global", "local") for t in v))
        return None if ok else f"must be null or a list of 'global'/'local', got {_show(v)}"
    return "not a HookedTransformerConfig field that a config may set"


def check_config(cfg, source: str | Path) -> dict:
    """``cfg`` (a config.json's content) checked against the allow-list; returns it. Raises a one-line
    :class:`ConfigError` (a ``ValueError``) naming ``source`` and the field for anything else. The one
    validator of TransformerLens configs: model directories, Tracr cache entries and case files."""
    if not isinstance(cfg, dict):
        raise ConfigError(source, None, f"not a JSON object (a {type(cfg).__name__})")
    for k, v in cfg.items():
        why = _check_field(k, v)
        if why is not None:
            raise ConfigError(source, k, why)
    for k in _INT:
        if k not in cfg and k not in ("d_vocab_out",):
            raise ConfigError(source, k, "missing (expected an integer)")
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
