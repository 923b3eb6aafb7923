"""A case from files, no code: ``-i path/to/case.toml`` (or a directory holding ``case.toml``).

::

    name = "my-case"                 # optional (shown by `cases show`)
    description = "..."              # optional
    output_type = "categorical"      # optional: categorical (default) | numerical
    metric = "logit-diff"            # optional default for runs: faithfulness (= kl) | task (= ce / mse) | logit-diff

    [model]                          # one of:
    dir = "model"                    #   a folder with config.json + model.safetensors (TransformerLens layout)
    config = "model/config.json"     #   the same two files named one by one
    weights = "model/model.safetensors"
    hf_checkpoint = "my-gpt2"        #   a local Hugging Face checkpoint folder (loaded offline through TransformerLens)
    tokenizer = "my-tokenizer"       # optional: a local Hugging Face tokenizer folder (default: the checkpoint's own)

    [data]
    path = "data.jsonl"              # one JSON object a line (below)
    prepend_bos = true               # optional, prompts only (default: when the tokenizer has a BOS token)

    [ground_truth]                   # optional: without it ROC is skipped, faithfulness still works
    path = "ground_truth.json"       # {"nodes": [...], "edges": [...]}, or inline:
    edges = ["input->a0.h0<q>", "a0.h0->logits"]   # nodes optional (taken from the edges)

Paths are relative to the TOML file. A data line::

    {"clean": "When Mary and John went", "corrupted": "When Alice and Bob went", "answer": " Mary", "wrong": " John"}
    {"clean": [3, 1, 4], "corrupted": [2, 7, 1], "labels": [1, null, 5], "mask": [1, 0, 1]}

``clean``/``corrupted``: a prompt (tokenised with the model's tokenizer) or token ids, the same
length. ``answer`` (+ ``wrong`` for logit difference): the correct (wrong) next token at the last
position, a one-token string or an id (a float for numerical outputs); or ``labels``: one per
position (null = none). ``mask`` (optional): the positions scored (default: the last position with
``answer``, the labelled positions with ``labels``). Optional ``corrupted_answer`` /
``corrupted_labels`` and ``corrupted_pos`` (positions the corrupted run reads W_pos at).

Every malformed file is a :class:`CaseFileError`: one line naming the file, the field and what was
expected (the CLI exits 2), raised when the case is built, before any run starts.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import torch

from core import naming
from core.circuit import Circuit
from core.data import CaseData
from core.graph import Graph
from core.metrics import IGNORE
from core.protocols import Case, resolve_metric
from core.provenance import ModelRef, sha256_file
from core.results import write_atomic, write_json_atomic
from training.model_files import FIXED, ConfigError, check_config, config_of

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CASE_FILE = "case.toml"
TL_CONFIG, TL_WEIGHTS = "config.json", "model.safetensors"
GRAPH_FLAGS = ("use_attn_result", "use_split_qkv_input", "use_hook_mlp_in")
MODEL_KIND = "file"

TOP_KEYS = {"name", "description", "output_type", "metric", "model", "data", "ground_truth"}
MODEL_KEYS = {"dir", "config", "weights", "hf_checkpoint", "tokenizer"}
DATA_KEYS = {"path", "prepend_bos"}
GT_KEYS = {"path", "nodes", "edges"}
LINE_KEYS = {"clean", "corrupted", "answer", "wrong", "labels", "mask", "corrupted_answer", "corrupted_labels",
             "corrupted_pos"}


def _short(err: BaseException, limit: int = 300) -> str:
    """A library's error message on one line, cut to ``limit`` characters."""
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[:limit] + " ..."


class CaseFileError(ValueError):
    """A malformed case file: ``FILE: FIELD: what was expected``."""

    def __init__(self, file: str | Path, field: str, expected: str):
        expected = " ".join(str(expected).split())  # always one line
        super().__init__(f"{file}: {field}: {expected}")
        self.file, self.field, self.expected = str(file), field, expected


# ---------------------------------------------------------------------------------------------------
# TransformerLens config validation: the allow-list of ``training.model_files.check_config`` (the one
# validator of configs), reported as a case-file error.
# ---------------------------------------------------------------------------------------------------

DROPPED = ("device", "dtype")  # ignored if present (the loader chooses them)


def validate_tl_config(doc: Any, file: str | Path) -> dict[str, Any]:
    """A TransformerLens config JSON -> the keyword arguments of ``HookedTransformerConfig``, or a
    :class:`CaseFileError` naming the field. Unknown fields, wrong types, tokenizer names and remote
    code are rejected (:func:`training.model_files.check_config`); ``device``/``dtype`` are dropped."""
    if isinstance(doc, dict):
        doc = {k: v for k, v in doc.items() if k not in DROPPED}
    try:
        check_config(doc, file)
    except ConfigError as err:
        raise CaseFileError(file, err.field or "(top level)", err.expected) from None
    return {k: v for k, v in doc.items() if k not in FIXED}


# ---------------------------------------------------------------------------------------------------


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as err:
        raise CaseFileError(path, what, f"cannot read the file ({err.strerror or err})") from None
    except ValueError as err:
        raise CaseFileError(path, what, f"not valid JSON ({err})") from None


def _check_keys(table: Any, allowed: set[str], file: Path, where: str) -> dict:
    if not isinstance(table, dict):
        raise CaseFileError(file, where, "expected a table")
    unknown = sorted(set(table) - allowed)
    if unknown:
        prefix = f"{where}." if where != "(top level)" else ""
        raise CaseFileError(file, prefix + unknown[0], f"unknown field (expected one of {', '.join(sorted(allowed))})")
    return table


def _str(table: dict, key: str, file: Path, where: str, required: bool = False) -> str | None:
    v = table.get(key)
    if v is None:
        if required:
            raise CaseFileError(file, f"{where}.{key}" if where else key, "missing (expected a string)")
        return None
    if not isinstance(v, str) or not v:
        raise CaseFileError(file, f"{where}.{key}" if where else key, f"expected a non-empty string, got {v!r}")
    return v


def load_case_file(spec: str | Path) -> "FileCase":
    """The case a TOML file (or a folder with ``case.toml``) describes, read and validated now."""
    path = Path(spec).expanduser()
    if path.is_dir():
        path = path / CASE_FILE
    if not path.is_file():
        raise CaseFileError(path, "(file)", "no such case file (expected a case.toml, or a folder holding one)")
    return FileCase(path.resolve())


class FileCase(Case):
    """A case described by files (see the module docstring). Everything is validated on construction."""

    kind = "file"
    models = (MODEL_KIND,)

    def __init__(self, path: str | Path):
        self.path = path = Path(path)
        self.id = str(path)
        self.flags = {}
        try:
            doc = tomllib.loads(path.read_text())
        except OSError as err:
            raise CaseFileError(path, "(file)", f"cannot read it ({err.strerror or err})") from None
        except tomllib.TOMLDecodeError as err:
            raise CaseFileError(path, "(syntax)", f"not valid TOML ({err})") from None
        _check_keys(doc, TOP_KEYS, path, "(top level)")
        self.root = path.parent
        self.name = _str(doc, "name", path, "") or path.parent.name
        self.description = _str(doc, "description", path, "") or f"case from files {path}"
        self.output_type = doc.get("output_type", "categorical")
        if self.output_type not in ("categorical", "numerical"):
            raise CaseFileError(path, "output_type", f"expected categorical or numerical, got {self.output_type!r}")
        self._load_model_spec(doc.get("model"))
        self._n_layers, self._n_heads, self._attn_only, self._causal = self._architecture()
        self._tokenizer = self._load_tokenizer()
        self._rows = self._read_data(doc.get("data"))
        self.truth = self._read_ground_truth(doc.get("ground_truth"))
        if self.truth is None:
            self.flags["no_ground_truth"] = "the case file gives no ground truth: ROC is skipped"
        metric = doc.get("metric", "faithfulness")
        try:
            self.default_metric = resolve_metric(metric, self.output_type) if isinstance(metric, str) else \
                resolve_metric(repr(metric), self.output_type)
        except ValueError as err:
            raise CaseFileError(path, "metric", str(err)) from None
        if self.default_metric == "logit-diff" and not self.wrong_answers:
            raise CaseFileError(path, "metric", "logit-diff needs a 'wrong' answer on every data line")

    # ---- the model ------------------------------------------------------------------------------
    def _file(self, rel: str, field: str, must: str = "file") -> Path:
        p = (self.root / rel).expanduser()
        if must == "file" and not p.is_file():
            raise CaseFileError(self.path, field, f"no such file {p}")
        if must == "dir" and not p.is_dir():
            raise CaseFileError(self.path, field, f"no such directory {p}")
        return p

    def _load_model_spec(self, table: Any) -> None:
        f = self.path
        if table is None:
            raise CaseFileError(f, "model", "missing (expected a [model] table with dir, config + weights, "
                                            "or hf_checkpoint)")
        t = _check_keys(table, MODEL_KEYS, f, "model")
        given = [k for k in ("dir", "config", "hf_checkpoint") if k in t]
        if len(given) != 1 or ("weights" in t) != ("config" in t):
            raise CaseFileError(f, "model", "expected exactly one of: dir = FOLDER, config = JSON + weights = "
                                            "SAFETENSORS, hf_checkpoint = FOLDER")
        self.hf_dir = self.config_file = self.weights_file = None
        if "hf_checkpoint" in t:
            self.hf_dir = self._file(_str(t, "hf_checkpoint", f, "model"), "model.hf_checkpoint", "dir")
            if not (self.hf_dir / "config.json").is_file():
                raise CaseFileError(f, "model.hf_checkpoint", f"{self.hf_dir} has no config.json (expected a "
                                                              "Hugging Face checkpoint folder)")
        elif "dir" in t:
            d = self._file(_str(t, "dir", f, "model"), "model.dir", "dir")
            self.config_file, self.weights_file = d / TL_CONFIG, d / TL_WEIGHTS
            for p, name in ((self.config_file, TL_CONFIG), (self.weights_file, TL_WEIGHTS)):
                if not p.is_file():
                    raise CaseFileError(f, "model.dir", f"{d} has no {name} (expected config.json + model.safetensors)")
        else:
            self.config_file = self._file(_str(t, "config", f, "model"), "model.config")
            self.weights_file = self._file(_str(t, "weights", f, "model"), "model.weights")
        tok = _str(t, "tokenizer", f, "model")
        self.tokenizer_dir = self._file(tok, "model.tokenizer", "dir") if tok else None
        if self.config_file is not None:
            self.tl_config = validate_tl_config(_read_json(self.config_file, "(file)"), self.config_file)
            self._check_weights()

    def _tl_cfg(self, device: str = "cpu"):
        from transformer_lens import HookedTransformerConfig

        cfg = dict(self.tl_config, **{k: True for k in GRAPH_FLAGS}, device=str(device))
        try:
            return HookedTransformerConfig(**cfg)
        except Exception as err:  # noqa: BLE001 -- TransformerLens' own consistency checks
            raise CaseFileError(self.config_file, "(config)", f"TransformerLens rejects it: "
                                                              f"{type(err).__name__}: {_short(err)}") from None

    def _check_weights(self) -> None:
        """The safetensors header against the shapes the config implies (no weights are read)."""
        from safetensors import safe_open
        from transformer_lens import HookedTransformer

        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in HookedTransformer(self._tl_cfg("meta"), move_to_device=False)
                        .state_dict().items()}
        try:
            with safe_open(str(self.weights_file), framework="pt") as sf:
                found = {k: tuple(sf.get_slice(k).get_shape()) for k in sf.keys()}
        except Exception as err:  # noqa: BLE001 -- any unreadable header
            raise CaseFileError(self.weights_file, "(file)", f"not a readable safetensors file ({_short(err)})") from None
        for k, shape in expected.items():
            if k not in found:
                if k.endswith(("IGNORE", ".mask")):  # buffers TransformerLens rebuilds
                    continue
                raise CaseFileError(self.weights_file, k, f"missing (the config {self.config_file.name} needs "
                                                          f"a tensor of shape {list(shape)})")
            if found[k] != shape:
                raise CaseFileError(self.weights_file, k, f"has shape {list(found[k])}, but the config "
                                                          f"{self.config_file.name} implies {list(shape)}")
        extra = sorted(set(found) - set(expected))
        if extra:
            raise CaseFileError(self.weights_file, extra[0], f"not a parameter of the model {self.config_file.name} "
                                                             "describes")

    def _architecture(self) -> tuple[int, int, bool, bool]:
        if self.config_file is not None:
            c = self._tl_cfg("meta")
            return c.n_layers, c.n_heads, c.attn_only, c.attention_dir == "causal"
        from transformers import AutoConfig

        try:
            hf = AutoConfig.from_pretrained(str(self.hf_dir), local_files_only=True)
        except Exception as err:  # noqa: BLE001
            raise CaseFileError(self.hf_dir / "config.json", "(file)", f"not a Hugging Face config: {_short(err)}") from None
        n_layers = getattr(hf, "num_hidden_layers", None) or getattr(hf, "n_layer", None)
        n_heads = getattr(hf, "num_attention_heads", None) or getattr(hf, "n_head", None)
        if not n_layers or not n_heads:
            raise CaseFileError(self.hf_dir / "config.json", "num_hidden_layers", "expected layer and head counts")
        self._hf_vocab = getattr(hf, "vocab_size", None)
        if getattr(hf, "model_type", None) == "gpt2" and "n_ctx" not in _read_json(self.hf_dir / "config.json", "(file)"):
            raise CaseFileError(self.hf_dir / "config.json", "n_ctx", "missing (TransformerLens reads it for GPT-2 "
                                f"models; set it to n_positions = {getattr(hf, 'n_positions', '?')}, as the hub's "
                                "GPT-2 configs do)")
        self._check_hf_weights(hf)
        return int(n_layers), int(n_heads), False, True

    def _check_hf_weights(self, hf_config) -> None:
        """``model.safetensors`` of a checkpoint against the parameters its config implies."""
        weights = self.hf_dir / TL_WEIGHTS
        if not weights.is_file():
            return  # other weight formats are checked when the model loads
        from safetensors import safe_open
        from transformers import AutoModelForCausalLM

        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in AutoModelForCausalLM.from_config(hf_config).state_dict().items()}
        with safe_open(str(weights), framework="pt") as sf:
            found = {k: tuple(sf.get_slice(k).get_shape()) for k in sf.keys()}
        for k, shape in expected.items():  # in the model's order: the embedding first
            name = k if k in found else k.split(".", 1)[-1]  # checkpoints saved without the base prefix
            if name in found and found[name] != shape:
                raise CaseFileError(weights, name, f"has shape {list(found[name])}, but "
                                                   f"{self.hf_dir / 'config.json'} implies {list(shape)}")

    def _load_tokenizer(self):
        src = self.tokenizer_dir or self.hf_dir
        if src is None:
            return None
        names = ("tokenizer.json", "tokenizer_config.json", "vocab.json")
        if not any((src / n).is_file() for n in names):
            if self.tokenizer_dir is not None:
                raise CaseFileError(self.path, "model.tokenizer", f"{src} holds no tokenizer files")
            return None
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(str(src), local_files_only=True, trust_remote_code=False)
        except Exception as err:  # noqa: BLE001
            raise CaseFileError(src, "(tokenizer)", f"cannot load it offline: {type(err).__name__}: {_short(err)}") from None

    @property
    def d_vocab(self) -> int | None:
        if self.config_file is not None:
            return int(self.tl_config["d_vocab"])
        return self._hf_vocab

    def model_ref(self, model: str | None = None, model_dir: str | None = None):
        """The user's model with the sha256 of its files (weights and config), so that changing them in
        place gives other run ids; the case file and the data file enter through :meth:`data_spec`."""
        if model_dir is not None:
            raise ValueError(f"case {self.id} names its model in its case file; --model-dir does not apply")
        if self.hf_dir is not None:
            paths = [q for q in sorted(self.hf_dir.iterdir()) if q.is_file() and q.suffix in (".safetensors", ".bin", ".json")]
            where = self.hf_dir
        else:
            paths, where = [self.config_file, self.weights_file], self.weights_file.parent
        return ModelRef(kind=self.resolve_model(model), source="case file", directory=str(where),
                        files={q.name: sha256_file(q) for q in paths})

    def data_spec(self, model: str | None = None) -> dict:
        """The data is the file's lines (no sampling, no seed): recorded with the case file's and the data
        file's sha256."""
        return {"source": "case file", "case_file_sha256": sha256_file(self.path),
                "data_file": str(self.data_file), "data_file_sha256": sha256_file(self.data_file),
                "seeded": False}

    def load_model(self, model: str | None = None, device: str = "cpu"):
        self.resolve_model(model)
        if self.config_file is not None:
            from safetensors.torch import load_file
            from transformer_lens import HookedTransformer

            m = HookedTransformer(self._tl_cfg(device), move_to_device=True)
            m.load_state_dict(load_file(str(self.weights_file), device=str(device)), strict=False)
            return m.eval()
        return self._load_hf(device)

    def _load_hf(self, device: str):
        from transformer_lens import HookedTransformer
        from transformers import AutoModelForCausalLM

        from transformer_lens import loading_from_pretrained as loading

        # TransformerLens' own loaders, given the local folder (its HookedTransformer.from_pretrained
        # accepts only official hub names, and would fetch their configs): config from the folder's
        # config.json, weights from the model loaded with local files only, no weight processing (the
        # model computes exactly what the checkpoint does).
        path = str(self.hf_dir.resolve())
        try:
            hf = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, trust_remote_code=False)
            cfg = loading.get_pretrained_model_config(path, hf_cfg=hf.config.to_dict(), fold_ln=False, device=device,
                                                      local_files_only=True)
            state = loading.get_pretrained_state_dict(path, cfg, hf)
            model = HookedTransformer(cfg, self._tokenizer, move_to_device=False)
            model.load_and_process_state_dict(state, fold_ln=False, center_writing_weights=False, center_unembed=False,
                                              fold_value_biases=False, refactor_factored_attn_matrices=False)
            model.move_model_modules_to_device()
        except Exception as err:  # noqa: BLE001 -- the user's checkpoint: one line
            raise CaseFileError(self.hf_dir, "(checkpoint)", f"TransformerLens cannot load it offline: "
                                                             f"{type(err).__name__}: {_short(err)}") from None
        model.set_use_attn_result(True)
        model.set_use_split_qkv_input(True)
        if not model.cfg.attn_only:
            model.set_use_hook_mlp_in(True)
        return model.eval()

    # ---- data -----------------------------------------------------------------------------------
    def _tokens(self, value: Any, field: str, file: Path, line: int, prepend_bos: bool) -> list[int]:
        if isinstance(value, str):
            if self._tokenizer is None:
                raise CaseFileError(file, f"line {line}: {field}", "a prompt needs a tokenizer (the model has none: "
                                                                   "give token ids, or [model] tokenizer = FOLDER)")
            ids = self._tokenizer(value, add_special_tokens=False)["input_ids"]
            if prepend_bos:
                ids = [self._tokenizer.bos_token_id] + ids
            if not ids:
                raise CaseFileError(file, f"line {line}: {field}", "the prompt has no tokens")
            return ids
        if isinstance(value, list) and value and all(isinstance(t, int) and not isinstance(t, bool) for t in value):
            V = self.d_vocab
            bad = [t for t in value if t < 0 or (V is not None and t >= V)]
            if bad:
                raise CaseFileError(file, f"line {line}: {field}", f"token id {bad[0]} is outside the vocabulary "
                                                                   f"(0..{V - 1})")
            return list(value)
        raise CaseFileError(file, f"line {line}: {field}", "expected a prompt string or a non-empty list of token ids")

    def _answer(self, value: Any, field: str, file: Path, line: int):
        if self.output_type == "numerical":
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            raise CaseFileError(file, f"line {line}: {field}", "expected a number (numerical outputs)")
        if isinstance(value, int) and not isinstance(value, bool):
            V = self.d_vocab
            if value < 0 or (V is not None and value >= V):
                raise CaseFileError(file, f"line {line}: {field}", f"token id {value} is outside the vocabulary")
            return value
        if isinstance(value, str):
            if self._tokenizer is None:
                raise CaseFileError(file, f"line {line}: {field}", "a string answer needs a tokenizer; give a token id")
            ids = self._tokenizer(value, add_special_tokens=False)["input_ids"]
            if len(ids) != 1:
                raise CaseFileError(file, f"line {line}: {field}", f"{value!r} is {len(ids)} tokens; an answer must "
                                                                   "be exactly one token")
            return ids[0]
        raise CaseFileError(file, f"line {line}: {field}", "expected a token (a one-token string or an id)")

    def _labels(self, value: Any, field: str, file: Path, line: int, length: int) -> list:
        if not isinstance(value, list) or len(value) != length:
            raise CaseFileError(file, f"line {line}: {field}", f"expected a list of {length} labels (one per token; "
                                                               "null = none)")
        return [None if v is None else self._answer(v, f"{field}[{i}]", file, line) for i, v in enumerate(value)]

    def _read_data(self, table: Any) -> list[dict]:
        f = self.path
        if table is None:
            raise CaseFileError(f, "data", "missing (expected a [data] table with path = JSONL)")
        t = _check_keys(table, DATA_KEYS, f, "data")
        data_file = self._file(_str(t, "path", f, "data", required=True), "data.path")
        bos = t.get("prepend_bos")
        if bos is not None and not isinstance(bos, bool):
            raise CaseFileError(f, "data.prepend_bos", f"expected true or false, got {bos!r}")
        if bos is None:
            bos = self._tokenizer is not None and self._tokenizer.bos_token_id is not None
        self.data_file = data_file
        rows = []
        try:
            lines = data_file.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise CaseFileError(data_file, "(file)", f"cannot read it ({err})") from None
        for i, text in enumerate(lines, 1):
            if not text.strip():
                continue
            try:
                d = json.loads(text)
            except ValueError as err:
                raise CaseFileError(data_file, f"line {i}", f"not valid JSON ({err})") from None
            if not isinstance(d, dict):
                raise CaseFileError(data_file, f"line {i}", "expected a JSON object")
            unknown = sorted(set(d) - LINE_KEYS)
            if unknown:
                raise CaseFileError(data_file, f"line {i}: {unknown[0]}", f"unknown field (expected "
                                                                          f"{', '.join(sorted(LINE_KEYS))})")
            for key in ("clean", "corrupted"):
                if key not in d:
                    raise CaseFileError(data_file, f"line {i}: {key}", "missing (every line needs clean and corrupted)")
            clean = self._tokens(d["clean"], "clean", data_file, i, bos)
            corrupted = self._tokens(d["corrupted"], "corrupted", data_file, i, bos)
            if len(clean) != len(corrupted):
                raise CaseFileError(data_file, f"line {i}", f"clean and corrupted have different lengths "
                                                            f"({len(clean)} and {len(corrupted)} tokens); they must match")
            L = len(clean)
            if ("answer" in d) == ("labels" in d):
                raise CaseFileError(data_file, f"line {i}", "expected exactly one of answer (the last position's "
                                                            "token) or labels (one per position)")
            row: dict[str, Any] = {"clean": clean, "corrupted": corrupted, "line": i}
            if "answer" in d:
                row["labels"] = [None] * (L - 1) + [self._answer(d["answer"], "answer", data_file, i)]
                row["mask"] = [False] * (L - 1) + [True]
                if "corrupted_answer" in d:
                    row["corrupted_labels"] = [None] * (L - 1) + [self._answer(d["corrupted_answer"],
                                                                               "corrupted_answer", data_file, i)]
                if "wrong" in d:
                    if self.output_type != "categorical":
                        raise CaseFileError(data_file, f"line {i}: wrong", "a wrong answer needs categorical outputs")
                    row["wrong"] = [None] * (L - 1) + [self._answer(d["wrong"], "wrong", data_file, i)]
            else:
                row["labels"] = self._labels(d["labels"], "labels", data_file, i, L)
                row["mask"] = [v is not None for v in row["labels"]]
                if "corrupted_labels" in d:
                    row["corrupted_labels"] = self._labels(d["corrupted_labels"], "corrupted_labels", data_file, i, L)
                if "wrong" in d:
                    row["wrong"] = self._labels(d["wrong"], "wrong", data_file, i, L)
            if "mask" in d:
                m = d["mask"]
                if not isinstance(m, list) or len(m) != L or not all(v in (0, 1, True, False) for v in m):
                    raise CaseFileError(data_file, f"line {i}: mask", f"expected a list of {L} 0/1 values")
                row["mask"] = [bool(v) for v in m]
            if not any(row["mask"]):
                raise CaseFileError(data_file, f"line {i}: mask", "no position is scored")
            if "corrupted_pos" in d:
                p = d["corrupted_pos"]
                if not isinstance(p, list) or len(p) != L or not all(isinstance(v, int) and 0 <= v for v in p):
                    raise CaseFileError(data_file, f"line {i}: corrupted_pos", f"expected a list of {L} positions")
                row["corrupted_pos"] = p
            rows.append(row)
        if not rows:
            raise CaseFileError(data_file, "(file)", "no data lines (expected one JSON object a line)")
        for key in ("wrong", "corrupted_pos"):
            have = [key in r for r in rows]
            if any(have) and not all(have):
                first = rows[have.index(False)]["line"]
                raise CaseFileError(data_file, f"line {first}: {key}", f"missing (other lines give {key}: all or none)")
        lengths = {len(r["clean"]) for r in rows}
        if len(lengths) > 1 and not self._causal:
            r = next(r for r in rows if len(r["clean"]) != len(rows[0]["clean"]))
            raise CaseFileError(data_file, f"line {r['line']}", f"{len(r['clean'])} tokens, line "
                                f"{rows[0]['line']} has {len(rows[0]['clean'])}: rows of different lengths need a "
                                "causal model (they are right-padded)")
        n_ctx = self.tl_config.get("n_ctx") if self.config_file is not None else None
        if n_ctx is not None and max(lengths) > n_ctx:
            r = next(r for r in rows if len(r["clean"]) > n_ctx)
            raise CaseFileError(data_file, f"line {r['line']}", f"{len(r['clean'])} tokens; the model's n_ctx is {n_ctx}")
        self.wrong_answers = "wrong" in rows[0]
        return rows

    def dataset(self, n: int = 200, seed: int = 0, model: str | None = None) -> CaseData:
        """The first ``n`` lines of the data file, in file order (the data is fixed: ``seed`` changes
        nothing and is only recorded); rows of different lengths are right-padded (unscored)."""
        self.resolve_model(model)
        rows = self._rows[:n]
        width = max(len(r["clean"]) for r in rows)
        pad = 0
        if self._tokenizer is not None:
            pad = self._tokenizer.pad_token_id if self._tokenizer.pad_token_id is not None else \
                (self._tokenizer.eos_token_id or 0)
        cat = self.output_type == "categorical"
        none = IGNORE if cat else math.nan

        def grid(key, fill, dtype):
            return torch.tensor([[fill if v is None else v for v in r.get(key, [None] * len(r["clean"]))]
                                 + [fill] * (width - len(r["clean"])) for r in rows], dtype=dtype)
        label_dtype = torch.long if cat else torch.float32
        meta = {"file": str(self.data_file), "sha256": sha256_file(self.data_file), "rows": len(rows),
                "lines": [r["line"] for r in rows], "requested": n,
                "order": "the first n lines of the file (fixed data: the seed is not used)"}
        if len(rows) < n:
            meta["note"] = f"the file has {len(rows)} rows; returned each once (asked for {n})"
        return CaseData(
            clean=grid("clean", pad, torch.long), corrupted=grid("corrupted", pad, torch.long),
            clean_labels=grid("labels", none, label_dtype),
            corrupted_labels=grid("corrupted_labels", none, label_dtype),
            mask=grid("mask", False, torch.bool), seed=seed, meta=meta,
            corrupted_pos=grid("corrupted_pos", 0, torch.long) if "corrupted_pos" in rows[0] else None,
            wrong_labels=grid("wrong", IGNORE, torch.long) if self.wrong_answers else None)

    # ---- ground truth ---------------------------------------------------------------------------
    def graph(self, split_qkv: bool = True):
        return Graph(self._n_layers, self._n_heads, has_mlp=not self._attn_only, split_qkv=split_qkv)

    def _read_ground_truth(self, table: Any) -> Circuit | None:
        if table is None:
            return None
        f = self.path
        t = _check_keys(table, GT_KEYS, f, "ground_truth")
        if "path" in t and ("nodes" in t or "edges" in t):
            raise CaseFileError(f, "ground_truth", "expected either path = JSON or inline nodes/edges, not both")
        if "path" in t:
            src = self._file(_str(t, "path", f, "ground_truth"), "ground_truth.path")
            doc = _read_json(src, "(file)")
            if not isinstance(doc, dict):
                raise CaseFileError(src, "(top level)", 'expected {"nodes": [...], "edges": [...]}')
            unknown = sorted(set(doc) - {"nodes", "edges"})
            if unknown:
                raise CaseFileError(src, unknown[0], "unknown field (expected nodes and edges)")
            where = ""
        else:
            src, doc, where = f, t, "ground_truth."
        graph = self.graph()
        desc = f"({self._n_layers} layers, {self._n_heads} heads{', attention only' if self._attn_only else ''})"
        edges = doc.get("edges")
        if not isinstance(edges, list) or not edges or not all(isinstance(e, str) for e in edges):
            raise CaseFileError(src, f"{where}edges", "expected a non-empty list of edge names ('SENDER->RECEIVER', "
                                                      "q/k/v split or not)")
        names: list[str] = []
        for i, e in enumerate(edges):
            try:
                p = naming.parse_edge(e)
            except ValueError as err:
                raise CaseFileError(src, f"{where}edges[{i}]", str(err)) from None
            for node in (p.sender, p.receiver):
                if node not in graph.nodes:
                    raise CaseFileError(src, f"{where}edges[{i}]", f"{e!r} names node {node!r}, which is not in the "
                                                                   f"model's graph {desc}")
            try:
                names += graph.edge_names([e])
            except ValueError:
                raise CaseFileError(src, f"{where}edges[{i}]", f"{e!r} is not an edge of the model's graph {desc} "
                                                               "(a sender must come before its receiver)") from None
        nodes = doc.get("nodes")
        if nodes is not None:
            if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
                raise CaseFileError(src, f"{where}nodes", "expected a list of node names")
            for i, node in enumerate(nodes):
                if node not in graph.nodes:
                    raise CaseFileError(src, f"{where}nodes[{i}]", f"{node!r} is not a node of the model's graph "
                                                                   f"{desc} (input, aL.hH, mL, logits)")
        if not any(naming.parse_edge(e).qkv for e in edges):
            names = list(edges)  # q/k/v not split: kept as given (ROC then merges the scores' q/k/v)
        return Circuit.from_edges(names, extra_nodes=nodes or ())

    def ground_truth(self, model: str | None = None) -> Circuit | None:
        self.resolve_model(model)
        return self.truth

    # ---- info -----------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        d = super().info()
        model = ({"hf_checkpoint": str(self.hf_dir)} if self.hf_dir is not None else
                 {"config": str(self.config_file), "weights": str(self.weights_file),
                  "weights_sha256": sha256_file(self.weights_file)})
        d.update(name=self.name, file=str(self.path), model=model, layers=self._n_layers, heads=self._n_heads,
                 data={"file": str(self.data_file), "rows": len(self._rows), "sha256": sha256_file(self.data_file)},
                 default_metric=self.default_metric, wrong_answers=self.wrong_answers,
                 ground_truth=None if self.truth is None else self.truth.to_json())
        return d


# ---------------------------------------------------------------------------------------------------
# Export a case to files (a template for your own, and the round-trip test)
# ---------------------------------------------------------------------------------------------------

def export_case(case: Case, directory: str | Path, n: int = 200, seed: int = 0, model: str | None = None,
                metric: str | None = None) -> Path:
    """Write ``case`` (its model, ``case.dataset(n, seed)`` and ground truth) as a case folder:
    ``model/config.json`` + ``model/model.safetensors``, ``data.jsonl``, ``ground_truth.json`` and
    ``case.toml``. Returns the TOML file's path."""
    from safetensors.torch import save_file

    d = Path(directory)
    (d / "model").mkdir(parents=True, exist_ok=True)
    kind = case.resolve_model(model)
    m = case.load_model(kind)
    cfg = {k: v for k, v in config_of(m).items() if k not in FIXED and k not in DROPPED}
    write_json_atomic(d / "model" / TL_CONFIG, cfg)
    save_file({k: v.detach().cpu().contiguous() for k, v in m.state_dict().items()}, str(d / "model" / TL_WEIGHTS))
    data = case.dataset(n=n, seed=seed, model=kind)
    cat = case.output_type == "categorical"

    def lab(row):
        return [None if (cat and int(v) == IGNORE) or (not cat and math.isnan(float(v))) else
                (int(v) if cat else float(v)) for v in row]
    lines = []
    for i in range(len(data)):
        doc = {"clean": data.clean[i].tolist(), "corrupted": data.corrupted[i].tolist(),
               "labels": lab(data.clean_labels[i]), "corrupted_labels": lab(data.corrupted_labels[i]),
               "mask": [int(v) for v in data.mask[i].tolist()]}
        if data.wrong_labels is not None:
            doc["wrong"] = lab(data.wrong_labels[i])
        if data.corrupted_pos is not None:
            doc["corrupted_pos"] = data.corrupted_pos[i].tolist()
        lines.append(json.dumps(doc))
    write_atomic(d / "data.jsonl", "\n".join(lines) + "\n")
    truth = case.ground_truth(kind)
    toml = [f'name = "{case.id}-export"', f'description = "case {case.id} ({kind}) exported by cases.files.export_case"',
            f'output_type = "{case.output_type}"']
    if metric:
        toml.append(f'metric = "{metric}"')
    toml += ["", "[model]", 'dir = "model"', "", "[data]", 'path = "data.jsonl"']
    if truth is not None:
        write_json_atomic(d / "ground_truth.json", {"nodes": sorted(truth.nodes), "edges": sorted(truth.edges)})
        toml += ["", "[ground_truth]", 'path = "ground_truth.json"']
    return write_atomic(d / CASE_FILE, "\n".join(toml) + "\n")
