"""A tiny built-in case with a planted circuit, for tests and smoke runs.

A hand-built 2-layer, 2-head transformer (seeded random weights, no LayerNorm). Heads ``a0.h1`` and
``a1.h0`` and the MLP ``m1`` have zero output weights, so they and every edge touching them are exactly
irrelevant; every edge among ``input``, ``a0.h0``, ``m0``, ``a1.h1`` and ``logits`` is in the planted
circuit (and has a non-zero effect on the dataset, which a test checks).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import torch

from core.circuit import Circuit
from core.data import CaseData
from core.graph import Graph
from core.protocols import Case
from core.provenance import ModelRef

D_VOCAB, SEQ, SEED = 6, 4, 1234
LIVE = ("input", "a0.h0", "m0", "a1.h1", "logits")


@lru_cache(maxsize=None)
def _weights(n_layers: int = 2, n_heads: int = 2, d_model: int = 16, d_mlp: int = 16) -> dict[str, torch.Tensor]:
    from transformer_lens import HookedTransformer

    model = HookedTransformer(toy_config(n_layers, n_heads, d_model, d_mlp))
    g = torch.Generator().manual_seed(SEED)
    sd = {}
    for name, p in model.state_dict().items():
        if p.dtype.is_floating_point and not name.endswith(("IGNORE", "mask")):
            sd[name] = torch.randn(p.shape, generator=g) * (0.6 if "b_" in name.split(".")[-1] else 1.0) / (p.shape[-2] ** 0.5 if p.dim() >= 2 else 1.0)
        else:
            sd[name] = p
    sd["blocks.0.attn.W_O"][1] = 0.0   # a0.h1 writes nothing
    sd["blocks.1.attn.W_O"][0] = 0.0   # a1.h0 writes nothing
    sd["blocks.1.mlp.W_out"][:] = 0.0  # m1 writes nothing
    sd["blocks.1.mlp.b_out"][:] = 0.0
    sd["blocks.0.attn.b_O"][:] = 0.0
    sd["blocks.1.attn.b_O"][:] = 0.0
    return sd


def toy_config(n_layers=2, n_heads=2, d_model=16, d_mlp=16):
    from transformer_lens import HookedTransformerConfig

    return HookedTransformerConfig(
        n_layers=n_layers, n_heads=n_heads, d_model=d_model, d_head=d_model // n_heads, d_mlp=d_mlp,
        d_vocab=D_VOCAB, n_ctx=SEQ, act_fn="relu", normalization_type=None, attention_dir="bidirectional",
        use_attn_result=True, use_split_qkv_input=True, use_hook_mlp_in=True, default_prepend_bos=False,
        seed=SEED, device="cpu")


class ToyCase(Case):
    id = "toy"
    kind = "toy"
    description = "Built-in 2-layer model with a planted circuit (a0.h0, m0, a1.h1); other components write nothing."
    output_type = "categorical"
    models = ("toy",)

    def __init__(self):
        self.flags = {}

    def load_model(self, model=None, device="cpu"):
        from transformer_lens import HookedTransformer

        self.resolve_model(model)
        m = HookedTransformer(toy_config())
        m.load_state_dict(_weights())
        return m.to(device).eval()

    def model_ref(self, model=None, model_dir=None):
        """The built-in model: its weights' sha256 is that of its state dict (safetensors bytes)."""
        from safetensors.torch import save

        if model_dir is not None:
            raise ValueError("case toy has one built-in model; it does not take --model-dir")
        kind = self.resolve_model(model)
        state = {k: v.contiguous() for k, v in sorted(_weights().items())}
        return ModelRef(kind=kind, source="builtin", files={"state": hashlib.sha256(save(state)).hexdigest()})

    def data_spec(self, model=None) -> dict:
        return {"corruption": "independent uniform random tokens (never equal to the clean row)"}

    def ground_truth(self, model=None) -> Circuit:
        self.resolve_model(model)
        g = Graph(2, 2)
        edges = []
        for name in g.edges:
            s, r = name.split("->")
            if s in LIVE and r.split("<")[0] in LIVE:
                edges.append(name)
        return Circuit(frozenset(LIVE), frozenset(edges))

    def dataset(self, n=200, seed=0, model=None) -> CaseData:
        g = torch.Generator().manual_seed(seed)
        clean = torch.randint(0, D_VOCAB, (n, SEQ), generator=g)
        corrupted = torch.randint(0, D_VOCAB, (n, SEQ), generator=g)
        same = (clean == corrupted).all(-1)
        corrupted[same, 0] = (corrupted[same, 0] + 1) % D_VOCAB  # never identical to its clean partner
        model = self.load_model()
        with torch.no_grad():
            clean_labels = model(clean).argmax(-1)
            corrupted_labels = model(corrupted).argmax(-1)
        return CaseData(clean, corrupted, clean_labels, corrupted_labels, torch.ones(n, SEQ, dtype=torch.bool), seed)
