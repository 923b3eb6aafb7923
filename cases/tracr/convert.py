"""tracr's assembled (Haiku) parameters -> a ``transformer_lens.HookedTransformer``, exactly.

Pure numpy / torch: the caller passes the parameter arrays (``np.asarray`` of tracr's params), so
this module does not import tracr or JAX.

Layout facts used here (tracr.md §2.6-2.7):
- Haiku linear weights are ``[d_in, heads * d_head]``; TransformerLens wants ``[heads, d_in, d_head]``.
- tracr divides attention logits by ``sqrt(key_size)``; TransformerLens's default ``attn_scale`` is
  ``sqrt(d_head)`` and ``d_head = key_size``, so the scale is the same.
- The attention output bias (``attn/linear/b``) belongs to no head: it stays in ``b_O``.
- The unembedding projects the residual onto the output space, found by residual label.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from cases.tracr.compiled import build_hooked_transformer


def hooked_config(*, n_layers: int, n_heads: int, d_head: int, d_mlp: int, d_model: int, d_vocab: int,
                  n_ctx: int, d_vocab_out: int, causal: bool) -> dict:
    """The HookedTransformerConfig arguments of a converted tracr model (JSON-serialisable)."""
    return dict(
        n_layers=n_layers, n_heads=n_heads, d_head=d_head, d_mlp=d_mlp, d_model=d_model,
        d_vocab=d_vocab, n_ctx=n_ctx, d_vocab_out=d_vocab_out,
        act_fn="relu", normalization_type=None, attention_dir="causal" if causal else "bidirectional",
        use_attn_result=True, use_split_qkv_input=True, use_hook_mlp_in=True,
        positional_embedding_type="standard", default_prepend_bos=False,
        original_architecture="tracr", init_weights=False,
    )


def unembedding(residual_labels: Sequence[str], output_labels: Sequence[str]) -> np.ndarray:
    """``[d_model, len(output_labels)]``: column j reads the residual direction named ``output_labels[j]``."""
    index = {s: i for i, s in enumerate(residual_labels)}
    missing = [s for s in output_labels if s not in index]
    if missing:
        raise ValueError(f"output directions {missing} are not in the residual stream")
    w = np.zeros((len(residual_labels), len(output_labels)), dtype=np.float64)
    for j, s in enumerate(output_labels):
        w[index[s], j] = 1.0
    return w


def to_hooked_transformer(params: Mapping[str, Mapping[str, np.ndarray]], *, n_layers: int, n_heads: int,
                          key_size: int, mlp_hidden_size: int, residual_labels: Sequence[str],
                          output_labels: Sequence[str], causal: bool, device: str = "cpu"):
    """Build the HookedTransformer and copy every tracr weight into it. Returns ``(model, config)``."""
    W_E = np.asarray(params["token_embed"]["embeddings"])
    W_pos = np.asarray(params["pos_embed"]["embeddings"])
    d_model = W_E.shape[1]
    if d_model != len(residual_labels):
        raise ValueError(f"token embedding width {d_model} != {len(residual_labels)} residual labels")
    config = hooked_config(n_layers=n_layers, n_heads=n_heads, d_head=key_size, d_mlp=mlp_hidden_size,
                           d_model=d_model, d_vocab=W_E.shape[0], n_ctx=W_pos.shape[0],
                           d_vocab_out=len(output_labels), causal=causal)
    H, dh = n_heads, key_size

    def heads_in(w):   # [d_model, H*dh] -> [H, d_model, dh]
        return np.asarray(w).reshape(d_model, H, dh).transpose(1, 0, 2)

    def heads_bias(b):  # [H*dh] -> [H, dh]
        return np.asarray(b).reshape(H, dh)

    state: dict[str, np.ndarray] = {"embed.W_E": W_E, "pos_embed.W_pos": W_pos,
                                    "unembed.W_U": unembedding(residual_labels, output_labels),
                                    "unembed.b_U": np.zeros(len(output_labels))}
    for l in range(n_layers):
        attn, mlp = f"transformer/layer_{l}/attn", f"transformer/layer_{l}/mlp"
        for name, tl in (("query", "Q"), ("key", "K"), ("value", "V")):
            state[f"blocks.{l}.attn.W_{tl}"] = heads_in(params[f"{attn}/{name}"]["w"])
            state[f"blocks.{l}.attn.b_{tl}"] = heads_bias(params[f"{attn}/{name}"]["b"])
        state[f"blocks.{l}.attn.W_O"] = np.asarray(params[f"{attn}/linear"]["w"]).reshape(H, dh, d_model)
        state[f"blocks.{l}.attn.b_O"] = np.asarray(params[f"{attn}/linear"]["b"])
        state[f"blocks.{l}.mlp.W_in"] = np.asarray(params[f"{mlp}/linear_1"]["w"])
        state[f"blocks.{l}.mlp.b_in"] = np.asarray(params[f"{mlp}/linear_1"]["b"])
        state[f"blocks.{l}.mlp.W_out"] = np.asarray(params[f"{mlp}/linear_2"]["w"])
        state[f"blocks.{l}.mlp.b_out"] = np.asarray(params[f"{mlp}/linear_2"]["b"])

    model = build_hooked_transformer(config, device=device)
    current = model.state_dict()
    tensors = {}
    for k, v in state.items():
        if k not in current:
            raise KeyError(f"HookedTransformer has no parameter {k}")
        t = torch.tensor(np.array(v, dtype=np.float32))
        if t.shape != current[k].shape:
            raise ValueError(f"{k}: tracr shape {tuple(t.shape)} != HookedTransformer shape {tuple(current[k].shape)}")
        tensors[k] = t
    leftover = [k for k in current if k not in tensors and k.endswith(tuple(f".{p}" for p in
                ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O", "W_in", "W_out", "b_in", "b_out")))]
    if leftover:
        raise KeyError(f"parameters not filled from tracr: {leftover}")
    model.load_state_dict(tensors, strict=False)
    model.eval()
    return model, config
