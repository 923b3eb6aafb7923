"""Compile a RASP program with DeepMind's tracr and convert it to a TransformerLens model.

This module imports tracr's compiler (and with it JAX) only inside functions, and only when a
program is really compiled: a cache hit never touches them.

The stages are tracr's own functions, called in the order of tracr's ``compile_rasp_to_model``
(``tracr/compiler/compiling.py``); we call them one by one because the public entry point returns
only the assembled model, and the ground truth needs the intermediate graph and craft model. The
exact-conversion tests compare against tracr's public entry point.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any, Iterable

import numpy as np

from cases.tracr import cache as cache_mod
from cases.tracr.compiled import CONVERTER_VERSION, CompiledModel
from cases.tracr.defects import TracrCompileError, check_head_sizes, find_defects, warn
from cases.tracr.convert import to_hooked_transformer
from cases.tracr.ground_truth import build_ground_truth, locate_components


def compile_rasp_to_model(program, vocab: Iterable[Any], max_seq_len: int, compiler_bos: Any = "BOS",
                          compiler_pad: Any = "PAD", causal: bool = False, cache: bool = True,
                          cache_dir: str | None = None, mlp_exactness: float = 100,
                          device: str = "cpu") -> CompiledModel:
    """Compile ``program`` (a tracr RASP SOp) for ``vocab`` and ``max_seq_len`` (BOS excluded).

    Returns a ``CompiledModel`` whose ``.model`` is an exact HookedTransformer copy of tracr's model.
    With ``cache=True`` the result is read from / written to the compiled-model cache
    (``cases.tracr.cache``); a hit does not import tracr's compiler or JAX. Known tracr defects
    that apply are warned about (``TracrDefectWarning``) and listed in ``.defects``.

    Raises what tracr raises for unsupported programs (NotImplementedError, ValueError, TypeError)
    and ``TracrCompileError`` where tracr would fail obscurely (d_head overflow).
    """
    vocab = set(vocab)
    if max_seq_len < 1:
        raise ValueError(f"max_seq_len must be >= 1, got {max_seq_len}")
    key = cache_mod.cache_key(program, vocab, max_seq_len, causal=causal, compiler_bos=compiler_bos,
                              compiler_pad=compiler_pad, mlp_exactness=mlp_exactness)
    labels = [e.label for e in cache_mod.bfs_expressions(program)]
    if cache:
        hit = cache_mod.load_cached(key, cache_dir, device=device)
        if hit is not None and len(hit.expr_labels) == len(labels):
            hit = hit.relabelled(labels)
            warn(hit.defects)
            return hit
    compiled = compile_uncached(program, vocab, max_seq_len, compiler_bos=compiler_bos, compiler_pad=compiler_pad,
                                causal=causal, mlp_exactness=mlp_exactness, device=device)
    warn(compiled.defects)
    compiled.key = key
    if cache:
        cache_mod.store(compiled, key, cache_dir)
    return compiled


def compile_uncached(program, vocab: set, max_seq_len: int, *, compiler_bos: Any = "BOS", compiler_pad: Any = "PAD",
                     causal: bool = False, mlp_exactness: float = 100, device: str = "cpu") -> CompiledModel:
    """Run tracr and convert; no cache involved, no warnings (the defects are in ``.defects``)."""
    import jax
    from tracr.compiler import (basis_inference, craft_graph_to_model, craft_model_to_transformer,
                                expr_to_craft_graph, nodes, rasp_to_graph, validating)
    from tracr.craft import bases
    from tracr.rasp import rasp

    for special, what in ((compiler_bos, "BOS"), (compiler_pad, "PAD")):
        if special in vocab:
            raise ValueError(f"the compiler {what} token {special!r} must not be in the vocab {sorted(map(repr, vocab))}")
    unsupported = validating.static_validate(program)
    if unsupported:
        raise NotImplementedError("Unsupported RASP expressions:\n" +
                                  "\n".join(f"{u.expr.name}: {u.reason}" for u in unsupported))

    extracted = rasp_to_graph.extract_rasp_graph(program)
    graph, sources, sink = extracted.graph, extracted.sources, extracted.sink
    basis_inference.infer_bases(graph, sink, vocab, max_seq_len)
    expr_to_craft_graph.add_craft_components_to_rasp_graph(
        graph, bos_dir=bases.BasisDirection(rasp.tokens.label, compiler_bos), mlp_exactness=mlp_exactness)
    craft_model = craft_graph_to_model.craft_graph_to_model(graph, sources)
    check_head_sizes(graph, craft_model)
    try:
        assembled = craft_model_to_transformer.craft_model_to_transformer(
            craft_model=craft_model, graph=graph, sink=sink, max_seq_len=max_seq_len, causal=causal,
            compiler_bos=compiler_bos, compiler_pad=compiler_pad)
    except ValueError as e:
        if "broadcast" in str(e):
            raise TracrCompileError(f"d_head_overflow: tracr could not assemble the weights ({e})") from e
        raise

    params = {name: {p: np.asarray(v) for p, v in group.items()} for name, group in assembled.params.items()}
    cfg = assembled.model_config
    output_labels = [str(d) for d in sink[nodes.OUTPUT_BASIS]]
    model, config = to_hooked_transformer(
        params, n_layers=cfg.num_layers, n_heads=cfg.num_heads, key_size=cfg.key_size,
        mlp_hidden_size=cfg.mlp_hidden_size, residual_labels=assembled.residual_labels,
        output_labels=output_labels, causal=causal, device=device)
    categorical = rasp.is_categorical(sink[nodes.EXPR])

    sink_label = sink[nodes.ID]
    component_of = locate_components(graph, craft_model)
    ground_truth = build_ground_truth(graph, sink_label, component_of)
    defects = find_defects(graph, sink_label, component_of, max_seq_len=max_seq_len, causal=causal,
                           mlp_exactness=mlp_exactness)
    return CompiledModel(
        model=model,
        input_encoder=dict(assembled.input_encoder.encoding_map),
        output_encoder=dict(assembled.output_encoder.encoding_map) if categorical else None,
        output_type="categorical" if categorical else "numerical",
        residual_labels=list(assembled.residual_labels),
        max_seq_len=max_seq_len, causal=causal, bos=compiler_bos, pad=compiler_pad,
        ground_truth=ground_truth, component_of=component_of, defects=defects,
        expr_labels=list(graph.nodes), output_label=sink_label, config=config,
        versions={"tracr-pypi": cache_mod.tracr_version(), "jax": jax.__version__,
                  "transformer-lens": _version("transformer-lens"), "torch": _version("torch"),
                  "converter": CONVERTER_VERSION},
    )


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"
