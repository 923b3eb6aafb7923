"""A compiled Tracr program as a TransformerLens model plus everything needed to use it.

Pure torch / numpy / json: nothing here imports tracr or JAX, so a model loaded from the cache
(``CompiledModel.load``) never pays for them.

Conventions:

- ``max_seq_len`` is tracr's: the number of *real* tokens, BOS excluded. The model's ``n_ctx`` is
  ``max_seq_len + 1`` and every input starts with the BOS token (``["BOS", "a", "b"]``).
- ``input_encoder`` maps a token to its id, exactly tracr's ids (BOS and PAD included).
- ``output_encoder`` maps an output value to its logit index (categorical outputs); ``None`` for
  numerical outputs, which have one logit reading the output direction.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from core.circuit import Circuit
from training.model_files import check_config

CONVERTER_VERSION = "1"
WEIGHTS_FILE = "model.safetensors.gz"  # gzip: tracr weights are one-hot and compress ~100x
PLAIN_WEIGHTS_FILE = "model.safetensors"
META_FILE = "compiled.json"
SW_SUFFIX = "_selector_width_attn_output"


@dataclass(frozen=True)
class Defect:
    """A known tracr defect that applies to this compiled program (see ``cases.tracr.defects``)."""

    code: str
    message: str


# ---------------------------------------------------------------------------------------------
# JSON encoding of RASP values (tokens and outputs can be str, int, float, bool, None or tuples).

def encode_value(v: Any) -> list:
    if v is None:
        return ["none", None]
    if isinstance(v, bool):
        return ["bool", v]
    if isinstance(v, int):
        return ["int", v]
    if isinstance(v, float):
        return ["float", v if math.isfinite(v) else repr(v)]
    if isinstance(v, str):
        return ["str", v]
    if isinstance(v, tuple):
        return ["tuple", [encode_value(x) for x in v]]
    raise TypeError(f"cannot store RASP value {v!r} of type {type(v).__name__} in JSON")


def decode_value(t: list) -> Any:
    kind, v = t
    if kind == "none":
        return None
    if kind == "bool":
        return bool(v)
    if kind == "int":
        return int(v)
    if kind == "float":
        return float(v)
    if kind == "str":
        return str(v)
    if kind == "tuple":
        return tuple(decode_value(x) for x in v)
    raise ValueError(f"unknown stored value kind {kind!r}")


def _encode_map(d: dict | None) -> list | None:
    return None if d is None else [[encode_value(k), i] for k, i in d.items()]


def _decode_map(pairs: list | None) -> dict | None:
    return None if pairs is None else {decode_value(k): int(i) for k, i in pairs}


# ---------------------------------------------------------------------------------------------

class CompiledModel:
    """A RASP program compiled by tracr and converted to a ``HookedTransformer``."""

    def __init__(self, *, model, input_encoder: dict, output_encoder: dict | None, output_type: str,
                 residual_labels: list[str], max_seq_len: int, causal: bool, bos: Any, pad: Any,
                 ground_truth: Circuit, component_of: dict[str, list[str]], defects: list[Defect],
                 expr_labels: list[str], output_label: str, config: dict, versions: dict,
                 key: str | None = None):
        if output_type not in ("categorical", "numerical"):
            raise ValueError(f"output_type must be 'categorical' or 'numerical', got {output_type!r}")
        self.model = model
        self.input_encoder = dict(input_encoder)
        self.output_encoder = None if output_encoder is None else dict(output_encoder)
        self.output_type = output_type
        self.residual_labels = list(residual_labels)
        self.max_seq_len = int(max_seq_len)
        self.causal = bool(causal)
        self.bos = bos
        self.pad = pad
        self.ground_truth = ground_truth
        self.component_of = {k: list(v) for k, v in component_of.items()}
        self.defects = list(defects)
        self.expr_labels = list(expr_labels)   # every RASP expression label, in tracr's BFS order
        self.output_label = output_label
        self.config = dict(config)             # the HookedTransformerConfig arguments
        self.versions = dict(versions)
        self.key = key
        self._output_values = (None if output_encoder is None else
                               [v for v, _ in sorted(self.output_encoder.items(), key=lambda kv: kv[1])])

    # -- basic facts ---------------------------------------------------------------------------
    @property
    def n_ctx(self) -> int:
        return self.max_seq_len + 1

    @property
    def is_categorical(self) -> bool:
        return self.output_type == "categorical"

    @property
    def output_values(self) -> list | None:
        """Output values in logit order (categorical), else None."""
        return None if self._output_values is None else list(self._output_values)

    def __repr__(self) -> str:
        c = self.config
        return (f"CompiledModel(output={self.output_label!r} {self.output_type}, layers={c['n_layers']}, "
                f"heads={c['n_heads']}, d_head={c['d_head']}, d_mlp={c['d_mlp']}, d_model={c['d_model']}, "
                f"max_seq_len={self.max_seq_len}, causal={self.causal}, defects={[d.code for d in self.defects]})")

    # -- encoding / decoding -------------------------------------------------------------------
    def encode(self, inputs: Sequence[Sequence[Any]]) -> torch.Tensor:
        """Token ids ``[n, seq]``; every input starts with BOS, shorter inputs are padded with PAD.

        Note: tracr never masks PAD, so padded positions can change what real positions compute
        (defect ``pad_counted``); ``run`` avoids padding by running each length separately.
        """
        inputs = [list(x) for x in inputs]
        if not inputs:
            raise ValueError("encode() needs at least one input")
        width = max(len(x) for x in inputs)
        ids = []
        for x in inputs:
            if not x or x[0] != self.bos:
                raise ValueError(f"every input must start with the BOS token {self.bos!r}; got {x[:3]!r}...")
            if len(x) > self.n_ctx:
                raise ValueError(f"input of length {len(x)} (BOS included) exceeds max_seq_len+1 = {self.n_ctx}")
            unknown = [t for t in x if t not in self.input_encoder]
            if unknown:
                raise ValueError(f"unknown tokens {sorted(set(map(repr, unknown)))}; vocabulary is "
                                 f"{sorted(map(repr, self.input_encoder))}")
            ids.append([self.input_encoder[t] for t in x] + [self.input_encoder[self.pad]] * (width - len(x)))
        return torch.tensor(ids, dtype=torch.long)

    def decode(self, logits: torch.Tensor) -> list[list]:
        """Decoded outputs, position 0 replaced by BOS as in tracr's ``apply(...).decoded``."""
        logits = logits.detach()
        if logits.dim() == 2:
            logits = logits[None]
        if self.is_categorical:
            idx = logits.argmax(-1).tolist()
            out = [[self._output_values[i] for i in row] for row in idx]
        else:
            out = [[float(v) for v in row] for row in logits[..., 0].tolist()]
        for row in out:
            row[0] = self.bos
        return out

    @torch.no_grad()
    def logits(self, inputs: Sequence[Sequence[Any]]) -> torch.Tensor:
        """Model logits ``[n, seq, d_vocab_out]`` for (padded) inputs."""
        device = next(self.model.parameters()).device
        return self.model(self.encode(inputs).to(device))

    @torch.no_grad()
    def run(self, inputs: Sequence[Sequence[Any]]) -> list[list]:
        """Decoded outputs, one list per input, with tracr's ``apply(x).decoded`` semantics.

        Inputs of different lengths are run in separate batches (no padding), exactly like tracr.
        """
        inputs = [list(x) for x in inputs]
        by_len: dict[int, list[int]] = {}
        for i, x in enumerate(inputs):
            by_len.setdefault(len(x), []).append(i)
        out: list[list | None] = [None] * len(inputs)
        for idxs in by_len.values():
            decoded = self.decode(self.logits([inputs[i] for i in idxs]))
            for i, d in zip(idxs, decoded):
                out[i] = d
        return out  # type: ignore[return-value]

    # -- labels --------------------------------------------------------------------------------
    def relabelled(self, new_labels: Sequence[str]) -> "CompiledModel":
        """The same model with RASP labels renamed (``expr_labels[i] -> new_labels[i]``).

        tracr labels are ``name_{id}`` with a process-global id, so a model loaded from the cache
        is renamed to the labels the caller's program object carries.
        """
        new_labels = list(new_labels)
        if len(new_labels) != len(self.expr_labels):
            raise ValueError("relabel: the program has a different number of expressions")
        mapping = dict(zip(self.expr_labels, new_labels))
        if all(k == v for k, v in mapping.items()):
            return self

        def rename_dir(label: str) -> str:
            name, sep, rest = label.partition(":")
            if name in mapping:
                return mapping[name] + sep + rest
            if sep == "" and name.endswith(SW_SUFFIX) and name[: -len(SW_SUFFIX)] in mapping:
                return mapping[name[: -len(SW_SUFFIX)]] + SW_SUFFIX
            return label

        clone = CompiledModel(**{**self._fields(), "residual_labels": [rename_dir(s) for s in self.residual_labels],
                                 "component_of": {mapping.get(k, k): v for k, v in self.component_of.items()},
                                 "expr_labels": new_labels, "output_label": mapping.get(self.output_label, self.output_label),
                                 "defects": [Defect(d.code, _rename_words(d.message, mapping)) for d in self.defects]})
        return clone

    def _fields(self) -> dict:
        return dict(model=self.model, input_encoder=self.input_encoder, output_encoder=self.output_encoder,
                    output_type=self.output_type, residual_labels=self.residual_labels,
                    max_seq_len=self.max_seq_len, causal=self.causal, bos=self.bos, pad=self.pad,
                    ground_truth=self.ground_truth, component_of=self.component_of, defects=self.defects,
                    expr_labels=self.expr_labels, output_label=self.output_label, config=self.config,
                    versions=self.versions, key=self.key)

    # -- persistence ---------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {
            "schema": 1,
            "key": self.key,
            "config": self.config,
            "input_encoder": _encode_map(self.input_encoder),
            "output_encoder": _encode_map(self.output_encoder),
            "output_type": self.output_type,
            "residual_labels": self.residual_labels,
            "max_seq_len": self.max_seq_len,
            "causal": self.causal,
            "bos": encode_value(self.bos),
            "pad": encode_value(self.pad),
            "ground_truth": self.ground_truth.to_json(),
            "component_of": self.component_of,
            "defects": [asdict(d) for d in self.defects],
            "expr_labels": self.expr_labels,
            "output_label": self.output_label,
            "versions": self.versions,
        }

    def save(self, directory: str | Path) -> Path:
        """Write ``model.safetensors.gz`` (gzip-compressed safetensors) and ``compiled.json`` into
        ``directory`` (created if needed)."""
        import gzip

        from safetensors.torch import save

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        (directory / WEIGHTS_FILE).write_bytes(gzip.compress(save(state), compresslevel=6, mtime=0))
        (directory / META_FILE).write_text(json.dumps(self.to_json(), indent=1, sort_keys=True))
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> "CompiledModel":
        import gzip

        from safetensors.torch import load, load_file

        directory = Path(directory)
        meta = json.loads((directory / META_FILE).read_text())
        if meta.get("schema") != 1:
            raise ValueError(f"{directory}: unsupported compiled-model schema {meta.get('schema')!r}")
        model = build_hooked_transformer(check_config(meta["config"], directory / META_FILE), device=device)
        if (directory / WEIGHTS_FILE).exists():
            state = load(gzip.decompress((directory / WEIGHTS_FILE).read_bytes()))
        else:  # uncompressed files written by older versions
            state = load_file(str(directory / PLAIN_WEIGHTS_FILE))
        model.load_state_dict({k: v.to(device) for k, v in state.items()}, strict=True)
        model.eval()
        return cls(model=model, input_encoder=_decode_map(meta["input_encoder"]),
                   output_encoder=_decode_map(meta["output_encoder"]), output_type=meta["output_type"],
                   residual_labels=meta["residual_labels"], max_seq_len=meta["max_seq_len"], causal=meta["causal"],
                   bos=decode_value(meta["bos"]), pad=decode_value(meta["pad"]),
                   ground_truth=Circuit.from_json(meta["ground_truth"]), component_of=meta["component_of"],
                   defects=[Defect(**d) for d in meta["defects"]], expr_labels=meta["expr_labels"],
                   output_label=meta["output_label"], config=meta["config"], versions=meta["versions"],
                   key=meta.get("key"))


def build_hooked_transformer(config: dict, device: str | torch.device = "cpu"):
    """An (uninitialised) HookedTransformer for a stored config dict."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(**{**config, "dtype": torch.float32, "device": str(device)})
    return HookedTransformer(cfg, move_to_device=True)


def _rename_words(text: str, mapping: dict[str, str]) -> str:
    if not mapping:
        return text
    pattern = re.compile("|".join(re.escape(k) for k in sorted(mapping, key=len, reverse=True)) + r"(?![0-9])")
    return pattern.sub(lambda m: mapping[m.group(0)], text)
