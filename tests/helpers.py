"""Small random models and data shared by the engine and method tests."""

import shutil
from pathlib import Path

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from core.data import CaseData


def random_model(normalization, n_layers=2, n_heads=2, attn_only=False, seed=0, dtype=torch.float64,
                 d_mlp=20, scale=0.3):
    """A tiny HookedTransformer with the graph hooks on and every parameter (biases too) random."""
    cfg = HookedTransformerConfig(
        n_layers=n_layers, n_heads=n_heads, d_model=12, d_head=4, d_mlp=d_mlp, d_vocab=7, n_ctx=5,
        act_fn="gelu", normalization_type=normalization, attn_only=attn_only, seed=seed,
        use_attn_result=True, use_split_qkv_input=True, use_hook_mlp_in=True, default_prepend_bos=False,
        dtype=dtype)
    model = HookedTransformer(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return model.eval()


def random_data(n=6, seq=5, vocab=7, seed=0):
    """Random clean and corrupted tokens, every position scored, no labels."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, vocab, (n, seq), generator=g)
    corr = torch.randint(0, vocab, (n, seq), generator=g)
    zeros = torch.zeros(n, seq, dtype=torch.long)
    return CaseData(clean, corr, zeros, zeros, torch.ones(n, seq, dtype=torch.bool))


def loop_bootstrap(values, n_boot, seed, cases=None, level=0.95):
    """evaluations.stats' two-stage bootstrap as documented there, written out one replicate and one case
    at a time (the independent check of its vectorised draws): (point, low, high). ``cases``: the order
    in which the procedure saw the cases (default: the mapping's)."""
    import math

    import numpy as np

    cases = list(values) if cases is None else list(cases)
    width = max(len(values[c]) for c in cases)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(cases), size=(n_boot, len(cases)))
    u = rng.random((n_boot, len(cases), width))
    reps = []
    for b in range(n_boot):
        per_case = []
        for j, ci in enumerate(draws[b]):
            vs = values[cases[ci]]
            picks = [min(int(math.floor(u[b, j, s] * len(vs))), len(vs) - 1) for s in range(len(vs))]
            per_case.append(sum(vs[p] for p in picks) / len(vs))
        reps.append(sum(per_case) / len(per_case))
    point = sum(sum(values[c]) / len(values[c]) for c in cases) / len(cases)
    lo, hi = np.percentile(reps, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return point, float(lo), float(hi)


def perturbed_copy(src: Path, dst: Path) -> Path:
    """A copy of a model directory whose weights differ (one tensor scaled)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    state = load_file(str(dst / "model.safetensors"))
    name = next(k for k, v in state.items() if v.dtype.is_floating_point and v.numel() > 1)
    state[name] = state[name] * 1.5 + 0.1
    save_file(state, str(dst / "model.safetensors"))
    return dst
