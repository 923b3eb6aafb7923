"""Known-direction cases: a trained model whose sentiment feature lives on a stored unit vector u*.

A model directory (``cases/direction/models/<case>/<model>/``) holds ``model.safetensors``, ``config.json``
(HookedTransformerConfig arguments), ``tokenizer.json``, ``direction.json`` (the site s* -- hook name,
layer, position -- the true unit vector u* and the distractor directions the training put there) and
``training_args.json`` (the command that reproduces it, the training config, metrics and timing).

Direction cases implement the ``Case`` protocol, with two per-kind types: their ground truth is a
:class:`DirectionSite` (the site s* and the true direction u*), not a circuit, and their dataset is
:class:`~cases.direction.data.SentimentData` (tokens, labels and the latent variables), not clean/corrupted
pairs. Circuit methods do not run on them. ``cases list`` shows them with kind ``direction``;
``run das -i sentiment`` scores direction methods against u*.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cases.direction.data import ANSWERS, FINAL_POS, SentimentData, build_tokenizer, sentiment_dataset
from cases.tokenizer import WordTokenizer
from core.naming import NodeLoc
from core.patching import patched_forward
from core.protocols import Case
from core.results import write_atomic, write_json_atomic
from training.model_files import config_of, read_config
from training.registry import directory_ref
from core.naming import act_name

MODELS_DIR = Path(__file__).parent / "models"
DIRECTION_FILE = "direction.json"
TOKENIZER_FILE = "tokenizer.json"


@dataclass
class DirectionSite:
    """Where the feature lives: ``hook_name`` at ``position`` (the layer is the hook's block), and how."""

    hook_name: str
    layer: int
    position: int
    vector: torch.Tensor  # (d_model,) unit vector u*
    distractors: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> unit vector orthogonal to u*
    scales: dict[str, float] = field(default_factory=dict)  # feature -> target projection scale in training

    def to_json(self) -> dict[str, Any]:
        return {"schema": 1, "hook_name": self.hook_name, "layer": self.layer, "position": self.position,
                "vector": self.vector.tolist(), "distractors": {k: v.tolist() for k, v in self.distractors.items()},
                "scales": dict(self.scales)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "DirectionSite":
        return cls(d["hook_name"], int(d["layer"]), int(d["position"]), torch.tensor(d["vector"], dtype=torch.float32),
                   {k: torch.tensor(v, dtype=torch.float32) for k, v in d.get("distractors", {}).items()},
                   {k: float(v) for k, v in d.get("scales", {}).items()})


def logits_from_site(model, resid: torch.Tensor, layer: int, position: int,
                     a_new: torch.Tensor | None = None) -> torch.Tensor:
    """Final-position logits of ``model`` run on from ``resid`` = ``blocks.{layer}.hook_resid_pre``, with
    the residual at ``position`` replaced by ``a_new`` (rows; differentiable) if given: a site patch at
    ``NodeLoc(blocks.{layer}.hook_resid_pre)``, which fires first when the run starts at ``layer``."""
    patches = []
    if a_new is not None:
        def value(act: torch.Tensor) -> torch.Tensor:
            return torch.cat([act[:, :position], a_new[:, None, :].to(act.dtype), act[:, position + 1:]], dim=1)
        patches = [(NodeLoc(act_name("resid_pre", layer)), slice(None), value)]
    return patched_forward(model, resid, patches, start_at_layer=layer)[:, -1]


def save_direction_model(directory: str | Path, model, tokenizer: WordTokenizer, site: DirectionSite,
                         metadata: dict) -> Path:
    """Write a direction model directory, every file atomically."""
    from safetensors.torch import save

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    write_atomic(d / "model.safetensors", save(state))
    write_json_atomic(d / "config.json", config_of(model))
    write_json_atomic(d / TOKENIZER_FILE, tokenizer.to_json())
    write_json_atomic(d / DIRECTION_FILE, site.to_json())
    write_json_atomic(d / "training_args.json", metadata)
    return d


def load_direction_model(directory: str | Path, device: str = "cpu"):
    """(HookedTransformer in eval mode, WordTokenizer, DirectionSite)."""
    from safetensors.torch import load_file
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    d = Path(directory)
    missing = [f for f in ("model.safetensors", "config.json", DIRECTION_FILE) if not (d / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{d} is not a direction model directory (missing {', '.join(missing)})")
    cfg = read_config(d / "config.json")
    cfg.update(device=str(device), dtype=torch.float32)
    model = HookedTransformer(HookedTransformerConfig(**cfg), move_to_device=True)
    model.load_state_dict(load_file(str(d / "model.safetensors"), device=str(device)), strict=True)
    model.eval()
    tok = WordTokenizer.load(d / TOKENIZER_FILE) if (d / TOKENIZER_FILE).is_file() else build_tokenizer()
    site = DirectionSite.from_json(json.loads((d / DIRECTION_FILE).read_text()))
    return model, tok, site


# case id -> description; each has cases/direction/models/<id>/siit/ (the command is in its training_args.json)
DIRECTION_CASES = {
    "sentiment": "toy reviews -> good/bad; sentiment trained (SIIT-style) onto a known random direction u* at "
                 "blocks.1.hook_resid_pre (2 layers, d_model 48), with correlated distractors",
    "sentiment-deep": "the same task, 3 layers, d_model 64, u* at blocks.2.hook_resid_pre (another seed)",
}


class SentimentDirectionCase(Case):
    """A toy-sentiment known-direction case (ids in ``DIRECTION_CASES``).

    A ``Case`` whose ground truth is its :class:`DirectionSite` (:meth:`ground_truth`) and whose dataset is
    :class:`SentimentData` of one split (:meth:`dataset`); the same checks as other cases apply otherwise."""

    kind = "direction"
    output_type = "categorical"
    models: tuple[str, ...] = ("siit",)
    flags: dict[str, str] = {}

    def __init__(self, case_id: str = "sentiment", models_dir: str | Path | None = None):
        if case_id not in DIRECTION_CASES:
            raise ValueError(f"unknown direction case {case_id!r}; known: {', '.join(DIRECTION_CASES)}")
        self.id = case_id
        self.description = DIRECTION_CASES[case_id]
        self.models_dir = Path(models_dir) if models_dir is not None else MODELS_DIR / case_id
        self._loaded: dict[str, tuple] = {}

    def model_dir(self, model: str | None = None) -> Path:
        return self.models_dir / self.resolve_model(model)

    def model_ref(self, model: str | None = None, model_dir: str | None = None):
        """The shipped model directory with its weights, direction and tokenizer hashed (nothing loaded)."""
        if model_dir is not None:
            raise ValueError(f"case {self.id}: direction cases load their shipped model only (no --model-dir)")
        kind = self.resolve_model(model)
        return directory_ref(self.model_dir(kind), kind, "shipped",
                             ("model.safetensors", DIRECTION_FILE, TOKENIZER_FILE))

    def _load(self, model: str | None):
        name = self.resolve_model(model)
        if name not in self._loaded:
            d = self.model_dir(name)
            if not (d / "model.safetensors").is_file():
                raise FileNotFoundError(f"no trained model at {d}; train it with: python main.py train direction "
                                        f"--out {d}")
            self._loaded[name] = load_direction_model(d)
        return self._loaded[name]

    def load_model(self, model: str | None = None, device: str = "cpu"):
        return self._load(model)[0]

    def tokenizer(self, model: str | None = None) -> WordTokenizer:
        return self._load(model)[1]

    def site(self, model: str | None = None) -> DirectionSite:
        return self._load(model)[2]

    def ground_truth(self, model: str | None = None) -> DirectionSite:
        """The known direction: the :class:`DirectionSite` (hook, layer, position, u*, distractors) of the
        model. A direction case's ground truth is a site and a vector, not a ``Circuit``: callers that
        need a circuit check the case's ``kind`` first (``direction``)."""
        return self.site(model)

    def answer_ids(self, model: str | None = None) -> tuple[int, int]:
        """Token ids of the (negative, positive) answers, indexed by label."""
        tok = self.tokenizer(model)
        good, bad = (tok.token_id(a) for a in ANSWERS)
        return bad, good

    def dataset(self, n: int = 512, seed: int = 0, model: str | None = None, *, split: str = "test") -> SentimentData:
        """``n`` seeded reviews of ``split`` (``fit``: what direction methods are fitted on, ``test``: held
        out, ``train``: the model's training split), tokenised for ``model``. The ``Case`` signature; the
        data is :class:`SentimentData` (tokens, labels, latent variables), not clean/corrupted pairs."""
        return sentiment_dataset(split, n, seed, tokenizer=self.tokenizer(model))

    def metadata(self, model: str | None = None) -> dict:
        p = self.model_dir(model) / "training_args.json"
        return json.loads(p.read_text()) if p.is_file() else {}

    def info(self) -> dict[str, Any]:
        out = {"id": self.id, "kind": self.kind, "description": self.description, "output_type": self.output_type,
               "models": list(self.models), "flags": dict(self.flags), "position": FINAL_POS}
        try:
            site = self.site()
            out.update(hook_name=site.hook_name, layer=site.layer, d_model=int(site.vector.shape[0]),
                       reproduce=self.metadata().get("command"))
        except FileNotFoundError as err:
            out["model_error"] = str(err)
        return out
