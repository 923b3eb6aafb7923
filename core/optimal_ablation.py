"""Optimal ablation (Li & Janson 2024; MIB's oa.py; methods.md §1.6): learned per-component constants.

The ablated value of a component u is the constant c_u that minimises the loss of the model in which
u alone is replaced by c_u (every other component clean):

    c_u = argmin_c  E_x [ L( model(x) with a_u := c ) ]

``L`` is the patching engine's default loss (KL / MSE to the clean model's own output on the scored
positions: "faithfulness" optimal ablation); the data is the problem's clean data. The constants then
enter the patching engine like mean ablation's per-sender means (``PatchEngine(ablation="optimal")``),
so every method and evaluation can use them.

Choices (MIB's oa.py and the paper differ or leave them open; ours are recorded in ``info``):

* **one constant per position** ``[pos, d]`` (like our per-position mean ablation; MIB's are
  position-independent, which suits padded natural-language batches, not fixed-length Tracr inputs);
* **components**: the input sender(s), every head, every MLP, each optimised *separately* with only
  itself ablated (as MIB); all components train together in one batched pass (row block k ablates
  component k only; the loss is the sum of the blocks' losses and Adam is elementwise, so each follows
  the trajectory it would follow alone);
* **heads in z-space**: a head's constant is a ``hook_z`` value ``[pos, d_head]`` and its output
  constant is ``z W_O[h]`` (no ``b_O``, which hook_result excludes): an output the head can produce,
  and the value node-level gating at ``hook_z`` needs (``PatchEngine.run_nodes``);
* **initialisation and step size**: c = mean + sigma * delta with delta = 0 at the start (the mean
  ablation) and sigma the component's activation standard deviation over the data (per position and
  dimension, floored at 1e-3 of its mean magnitude), Adam on delta (lr ``LR``, ``STEPS`` full-data
  steps, deterministic); the best iterate of each component is kept, so its ablated loss is never
  above the mean ablation's (the step-0 value).

**Cache.** Learning the constants is the expensive part (``STEPS`` forward and backward passes over
K copies of the data: minutes on a large compiled Tracr model), and every method and evaluation of
the same (model, data) needs the same constants. :func:`cached_optimal_ablation` keeps them on disk,
keyed by a SHA-256 of everything they depend on: the model's parameters (names, shapes, dtypes,
bytes), the clean tokens, the scored-position mask, the output type, the sender groups, ``steps``,
``lr``, the torch version and this module's source (so a change to the algorithm never reads an old
entry). Location: ``$CIRCUIT_BENCH_OA_CACHE`` (``off`` turns the cache off), else
``$CIRCUIT_BENCH_CACHE/optimal_ablation``, else the user cache directory's ``optimal_ablation``.
Entries are written atomically; an unreadable entry is recomputed and replaced. The result's
``ablation_info`` says whether the constants were computed or read (``cache``) and under which key.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import torch

from core import naming
from core.results import write_atomic

STEPS = 100
LR = 0.1


def _components(engine) -> list[tuple[int, int, str]]:
    """(sender group index, index within the group, sender name) for every optimised component."""
    out = []
    for gi, g in enumerate(engine.senders):
        for j in range(g.size):
            out.append((gi, j, engine.graph.senders[g.start + j]))
    return out


@torch.no_grad()
def _clean_values(engine) -> dict[int, torch.Tensor]:
    """The value each group is optimised in: ``[n, pos, size, d]`` (heads: hook_z, d = d_head)."""
    z: dict[str, torch.Tensor] = {}

    def save(x, hook):
        z[hook.name] = x.detach()
    hooks = [(g.hook.replace("attn.hook_result", "attn.hook_z"), save) for g in engine.senders if g.per_head]
    engine.model.run_with_hooks(engine.clean, fwd_hooks=hooks)
    out = {}
    for gi, g in enumerate(engine.senders):
        out[gi] = z[g.hook.replace("attn.hook_result", "attn.hook_z")] if g.per_head else engine.clean_acts[gi]
    return out


def optimal_ablation(engine, steps: int = STEPS, lr: float = LR) -> tuple[list[torch.Tensor], dict[str, torch.Tensor],
                                                                         dict[str, Any]]:
    """Learn the constants for a (partly built) ``PatchEngine``.

    Uses only ``engine.model``, ``.graph``, ``.senders``, ``.clean``, ``.clean_acts`` and ``.default_loss()``.
    Returns ``(ablated, ablated_z, info)``: per sender group the constant output ``[1, pos, size, d_model]``
    (the shape the engine's mean-ablation path holds), per attention layer the ``hook_z`` constant
    ``[1, pos, heads, d_head]``, and what was done (losses per component before and after).
    """
    model, loss_fn = engine.model, engine.default_loss()
    comps = _components(engine)
    K, n = len(comps), engine.clean.shape[0]
    clean = _clean_values(engine)
    means = {gi: v.mean(0, keepdim=True) for gi, v in clean.items()}
    sigmas = {gi: torch.maximum(v.std(0, keepdim=True, unbiased=False),
                                1e-3 * v.abs().mean().clamp_min(1e-6)) for gi, v in clean.items()}
    deltas = {gi: torch.zeros_like(m, requires_grad=True) for gi, m in means.items()}
    # one-hot [K, size] per group: which row block ablates which component of the group
    onehot = {gi: torch.zeros(K, g.size, dtype=model.cfg.dtype, device=engine.device) for gi, g in enumerate(engine.senders)}
    for k, (gi, j, _) in enumerate(comps):
        onehot[gi][k, j] = 1.0

    def hooks():
        out = []
        for gi, g in enumerate(engine.senders):
            hook = g.hook.replace("attn.hook_result", "attn.hook_z") if g.per_head else g.hook

            def fn(x, hook, gi=gi, g=g):
                cur = (x if g.per_head else x.unsqueeze(-2)).view(K, n, x.shape[1], g.size, x.shape[-1])
                c = (means[gi] + sigmas[gi] * deltas[gi]).unsqueeze(0)              # [1, 1, pos, size, d]
                z = onehot[gi].view(K, 1, 1, g.size, 1)
                new = (cur + z * (c - cur)).reshape(K * n, x.shape[1], g.size, x.shape[-1])
                return new if g.per_head else new[:, :, 0]
            out.append((hook, fn))
        return out

    params = [p for p in model.parameters() if p.requires_grad]
    cfg = model.cfg
    saved = cfg.use_attn_result, cfg.use_split_qkv_input
    opt = torch.optim.Adam(list(deltas.values()), lr=lr)
    best = torch.full((K,), float("inf"), dtype=torch.float64)
    best_delta = {gi: d.detach().clone() for gi, d in deltas.items()}
    first = None
    tokens = engine.clean.repeat(K, 1)
    try:
        for p in params:
            p.requires_grad_(False)
        cfg.use_attn_result = cfg.use_split_qkv_input = False
        was = model.training
        model.eval()
        for step in range(steps + 1):
            with torch.enable_grad():
                logits = model.run_with_hooks(tokens, fwd_hooks=hooks())
                losses = loss_fn(logits.view(K, n, *logits.shape[1:]))
                cur = losses.detach().double().cpu()
                if first is None:
                    first = cur.clone()
                better = cur < best
                for k in better.nonzero().flatten().tolist():  # keep each component's best iterate
                    gi, j, _ = comps[k]
                    best_delta[gi][..., j, :] = deltas[gi].detach()[..., j, :]
                best = torch.where(better, cur, best)
                if step == steps:
                    break
                opt.zero_grad()
                losses.sum().backward()
                opt.step()
        model.train(was)
    finally:
        cfg.use_attn_result, cfg.use_split_qkv_input = saved
        for p in params:
            p.requires_grad_(True)
    ablated, ablated_z = [], {}
    with torch.no_grad():
        for gi, g in enumerate(engine.senders):
            c = means[gi] + sigmas[gi] * best_delta[gi]                                 # [1, pos, size, d]
            if g.per_head:
                layer = naming.hook_layer(g.hook)
                ablated_z[naming.act_name("z", layer)] = c
                ablated.append(torch.einsum("bphd,hdm->bphm", c, model.blocks[layer].attn.W_O))
            else:
                ablated.append(c)
    info = {"ablation": "optimal", "loss": "the engine's default loss (KL / MSE to the clean model)",
            "constants": "one per position and component; heads in hook_z space (output z W_O)",
            "objective": "each component ablated alone, optimised separately (batched)",
            "init": "per-position mean over the clean data", "steps": steps, "lr": lr,
            "parametrisation": "mean + sigma * delta, Adam on delta, best iterate kept",
            "n_examples": n,
            "per_component": {name: {"mean_ablation_loss": float(first[k]), "optimal_ablation_loss": float(best[k])}
                              for k, (_, _, name) in enumerate(comps)}}
    return ablated, ablated_z, info


# ---- the cache ---------------------------------------------------------------------------------------
CACHE_ENV = "CIRCUIT_BENCH_OA_CACHE"
_SOURCE_SHA = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


def cache_dir() -> Path | None:
    """Where the constants are cached (None: turned off with ``CIRCUIT_BENCH_OA_CACHE=off``)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return None if env.strip().lower() == "off" else Path(env)
    if os.environ.get("CIRCUIT_BENCH_CACHE"):
        return Path(os.environ["CIRCUIT_BENCH_CACHE"]) / "optimal_ablation"
    import platformdirs
    return Path(platformdirs.user_cache_dir("circuit-bench", appauthor=False)) / "optimal_ablation"


def cache_key(engine, steps: int, lr: float) -> str:
    """SHA-256 of everything the constants depend on (module docstring)."""
    h = hashlib.sha256()

    def put(label: str, data: bytes) -> None:
        h.update(label.encode() + b"\0" + len(data).to_bytes(8, "little") + data)

    def tensor(label: str, t: torch.Tensor) -> None:
        t = t.detach().cpu().contiguous()
        put(label, f"{t.dtype}{tuple(t.shape)}".encode())
        put(label, t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")

    put("version", f"{_SOURCE_SHA} torch {torch.__version__} steps {steps} lr {lr!r}".encode())
    for name, t in engine.model.state_dict().items():
        tensor("param " + name, t)
    tensor("clean", engine.clean)
    tensor("mask", engine.mask)
    put("output_type", str(engine.output_type).encode())
    put("senders", repr([(g.hook, g.size, g.per_head, engine.graph.senders[g.start:g.start + g.size])
                         for g in engine.senders]).encode())
    return h.hexdigest()


def cached_optimal_ablation(engine, steps: int = STEPS, lr: float = LR):
    """:func:`optimal_ablation`, read from the cache when an entry with the same key exists."""
    root = cache_dir()
    if root is None:
        ablated, ablated_z, info = optimal_ablation(engine, steps, lr)
        return ablated, ablated_z, {**info, "cache": "off"}
    key = cache_key(engine, steps, lr)
    path = root / f"{key}.pt"
    replaced = None
    if path.is_file():
        try:
            entry = torch.load(path, map_location=engine.device, weights_only=True)
            if entry.get("key") == key:
                return entry["ablated"], entry["ablated_z"], {**entry["info"], "cache": "read", "cache_key": key}
            replaced = "held another key"
        except Exception as err:  # noqa: BLE001 - a truncated or foreign file: recompute and replace it
            replaced = f"was unreadable ({type(err).__name__})"
    ablated, ablated_z, info = optimal_ablation(engine, steps, lr)
    if replaced:
        info = {**info, "cache_replaced": f"the entry at {path} {replaced}; recomputed"}
    buf = io.BytesIO()
    torch.save({"key": key, "ablated": [a.cpu() for a in ablated],
                "ablated_z": {k: v.cpu() for k, v in ablated_z.items()}, "info": info}, buf)
    try:
        root.mkdir(parents=True, exist_ok=True)
        write_atomic(path, buf.getvalue())
    except OSError as err:  # a read-only cache costs time, not the run
        info = {**info, "cache_error": f"{type(err).__name__}: {err}"}
    return ablated, ablated_z, {**info, "cache": "computed", "cache_key": key}
