"""tracr's known defects (tracr.md §0, §3, §6.3): detected at compile time, reported, never hidden.

Each detected defect becomes a ``Defect(code, message)`` in ``CompiledModel.defects`` and a
``TracrDefectWarning``. The ground truth is never adjusted to paper over one: it describes what
the compiled weights compute.

Codes:

- ``negative_clamped``: a categorical->numerical Map has negative outputs; tracr's MLP passes them
  through a ReLU, so the model outputs 0 there (found by evaluating f over the input value set).
- ``shared_bos_neuron``: two or more SelectorWidths share an MLP layer; their clean-BOS neurons
  merge into one (``_hidden_clean_bos_``), so the BOS position ends at -1 in their dimensions.
- ``pad_counted``: a selector's keys are non-zero at PAD positions (anything derived from
  ``indices``, a SelectorWidth, a numerical MLP...), and tracr never masks PAD: in a padded batch
  the PAD positions are selected like real ones. Non-causal models only (causally, PAD comes after
  every real query). ``CompiledModel.run`` avoids padding; padded batched calls do not.
- ``none_output``: the categorical output can be None (a categorical Aggregate that selects nothing,
  or a function returning None). None is (almost) the zero vector: its argmax is the first output
  value, or whatever the softmax leaks in from unselected positions (weight ~exp(-50/sqrt(d_head)))
  -- a real value either way, never None.
- ``selector_width_imprecise``: a SelectorWidth's decoding MLP does not recover every width exactly
  (max_seq_len > 6 at mlp_exactness 100); verified numerically on the compiled block.
- ``discretisation_gap``: a numerical->* Map's input values are closer than 2/mlp_exactness, so the
  discretising MLP mixes neighbouring outputs.
- ``incomplete_value_set``: a numerical->* Map reads a numerical mean, whose value set tracr infers
  as {v/n} only (no k/n for k > 1); where f is not constant on a discretisation region, means like
  2/3 get f of the wrong value (checked by evaluating f over every k/n).
- ``d_head_overflow`` (an error, not a defect): a head's OV output is wider than the key size;
  tracr would fail with a numpy broadcast error, we raise ``TracrCompileError`` naming the head.
"""

from __future__ import annotations

import warnings

import numpy as np

from cases.tracr.compiled import Defect

SW_PRECISION = 1e-3


class TracrCompileError(ValueError):
    """tracr cannot compile this program correctly; the message names the defect."""


class TracrDefectWarning(UserWarning):
    """A known tracr defect applies to a compiled program (see ``CompiledModel.defects``)."""


def warn(defects: list[Defect], stacklevel: int = 3) -> None:
    for d in defects:
        warnings.warn(f"tracr defect [{d.code}]: {d.message}", TracrDefectWarning, stacklevel=stacklevel)


def _values(f, xs):
    """f over xs, skipping ArithmeticError like tracr's basis inference."""
    out = []
    for x in xs:
        try:
            out.append((x, f(x)))
        except ArithmeticError:
            continue
    return out


def _incomplete_mean_errors(expr, xs: list, value_set, max_seq_len: int) -> list[tuple]:
    """For a numerical Map fed by a numerical Aggregate: means k/n that the MLP maps wrongly.

    tracr infers a mean's value set as {v/n} (tracr.md §2.2); the discretising MLP (§3.4) gives
    f(v_j) for the region [t_j, t_{j+1}) an input falls in, which is f(x) only if f is constant there.
    """
    from tracr.rasp import rasp

    inner = expr.inner
    if not (isinstance(inner, rasp.Aggregate) and rasp.is_numerical(inner)) or len(xs) < 1:
        return []
    sop_values = set(value_set(inner.sop))
    if not sop_values <= {0, 1}:
        return []
    means = sorted({k / n for n in range(1, max_seq_len + 1) for k in range(n + 1)} | {0})
    thresholds = [(a + b) / 2 for a, b in zip(xs, xs[1:])]
    wrong = []
    for x in means:
        region = xs[sum(1 for t in thresholds if x >= t)]
        try:
            want, got = expr.f(x), expr.f(region)
        except ArithmeticError:
            continue
        if want != got:
            wrong.append((x, want, got))
    return wrong


def check_head_sizes(graph, craft_model) -> None:
    """Raise ``TracrCompileError`` where tracr's assembly would fail on d_head (tracr.md §0.9)."""
    from tracr.compiler import nodes
    from tracr.craft import transformers

    heads = [h for b in craft_model.blocks if not isinstance(b, transformers.MLP) for h in b.as_multi().heads()]
    if not heads:
        return
    key_size = max(max(h.w_qk.matrix.shape) for h in heads)
    owner = {}
    for label, node in graph.nodes.items():
        block = node.get(nodes.MODEL_BLOCK)
        if block is not None and not isinstance(block, transformers.MLP):
            attn = block.blocks[0] if isinstance(block, transformers.SeriesWithResiduals) else block
            for h in attn.as_multi().heads():
                owner[id(h)] = label
    for h in heads:
        width = h.w_ov.matrix.shape[1]
        if width > key_size:
            raise TracrCompileError(
                f"d_head_overflow: the head of {owner.get(id(h), '?')!r} writes {width} output dimensions but "
                f"tracr's d_head (key size) is {key_size}; tracr sizes heads by their query/key spaces only "
                f"and cannot assemble this program (it fails with a numpy broadcast error). Shrink the "
                f"aggregated SOp's value set or widen the selector's query/key value sets.")


def _nonzero_at_pad(graph) -> dict[str, bool]:
    """Whether each SOp's residual encoding can be non-zero at a PAD position (tracr.md §6.3)."""
    from tracr.compiler import nodes
    from tracr.rasp import rasp

    memo: dict[str, bool] = {}

    def nz(expr) -> bool:
        if expr.label in memo:
            return memo[expr.label]
        if isinstance(expr, rasp.TokensType):
            r = False  # tokens:PAD lies outside every space a block reads
        elif isinstance(expr, rasp.IndicesType):
            r = True
        elif isinstance(expr, rasp.SelectorWidth):
            r = True   # a PAD query attends to BOS only and decodes width 0
        elif isinstance(expr, rasp.Aggregate):
            r = nz(expr.selector.queries)  # a zero query attends to BOS only -> default 0
        elif isinstance(expr, rasp.Map):
            r = True if rasp.is_numerical(expr.inner) else nz(expr.inner)
        elif isinstance(expr, rasp.LinearSequenceMap):
            r = nz(expr.fst) or nz(expr.snd)
        elif isinstance(expr, rasp.SequenceMap):
            r = nz(expr.fst) and nz(expr.snd)  # the hidden AND needs both one-hots
        else:
            r = True
        memo[expr.label] = r
        return r

    for node in graph.nodes.values():
        expr = node[nodes.EXPR]
        if isinstance(expr, rasp.SOp):
            nz(expr)
    return memo


def _selector_width_errors(block, label: str, n: int, categorical: bool) -> list[tuple[int, float]]:
    """Run the SelectorWidth's decoding MLP on its ideal inputs 1/(w+1); return (w, error) pairs."""
    mlp = block.blocks[1]
    in_basis = list(mlp.fst.input_space.basis)
    out_basis = list(mlp.snd.output_space.basis)
    errors = []
    for w in range(n + 1):
        x = np.zeros(len(in_basis))
        for i, d in enumerate(in_basis):
            if d.name == "one":
                x[i] = 1.0
            elif d.name == f"{label}_selector_width_attn_output":
                x[i] = 1.0 / (w + 1)
        y = np.maximum(x @ mlp.fst.matrix, 0.0) @ mlp.snd.matrix
        if categorical:
            target = np.array([1.0 if d.name == label and d.value == w else 0.0 for d in out_basis])
            keep = [i for i, d in enumerate(out_basis) if d.name == label]
        else:
            target = np.array([float(w) if d.name == label else 0.0 for d in out_basis])
            keep = [i for i, d in enumerate(out_basis) if d.name == label]
        errors.append((w, float(np.max(np.abs(y[keep] - target[keep])))))
    return errors


def find_defects(graph, sink_label: str, component_of: dict[str, list[str]], *, max_seq_len: int,
                 causal: bool, mlp_exactness: float) -> list[Defect]:
    from tracr.compiler import nodes
    from tracr.rasp import rasp

    found: list[Defect] = []
    exprs = {label: node[nodes.EXPR] for label, node in graph.nodes.items()}
    value_set = lambda e: graph.nodes[e.label].get(nodes.VALUE_SET, set())  # noqa: E731

    # negative_clamped / discretisation_gap
    for label, expr in exprs.items():
        if not isinstance(expr, rasp.Map):
            continue
        if rasp.is_numerical(expr) and rasp.is_categorical(expr.inner):
            neg = sorted((x, y) for x, y in _values(expr.f, value_set(expr.inner))
                         if isinstance(y, (int, float)) and y < 0)
            if neg:
                found.append(Defect("negative_clamped",
                                    f"{label}: categorical->numerical Map has negative outputs "
                                    f"{neg[:4]}{'...' if len(neg) > 4 else ''}; tracr's ReLU outputs 0 there"))
        elif rasp.is_numerical(expr.inner):
            xs = sorted(x for x, _ in _values(expr.f, value_set(expr.inner)))
            gaps = np.diff(xs) if len(xs) > 1 else np.array([np.inf])
            if gaps.min() < 2.0 / mlp_exactness:
                found.append(Defect("discretisation_gap",
                                    f"{label}: input values of this numerical MLP are {gaps.min():.4g} apart, "
                                    f"below 2/mlp_exactness = {2.0 / mlp_exactness:.4g}; neighbouring outputs mix"))
            wrong = _incomplete_mean_errors(expr, xs, value_set, max_seq_len)
            if wrong:
                shown = ", ".join(f"f({x:.4g})={want!r} but the MLP gives {got!r}" for x, want, got in wrong[:3])
                found.append(Defect("incomplete_value_set",
                                    f"{label}: its input is a numerical mean whose inferred value set lacks k/n for "
                                    f"k > 1, and the discretising MLP rounds those means into the wrong region: {shown}"))

    # shared_bos_neuron
    by_mlp: dict[str, list[str]] = {}
    for label, expr in exprs.items():
        if isinstance(expr, rasp.SelectorWidth):
            by_mlp.setdefault(component_of[label][-1], []).append(label)
    for mlp, labels in sorted(by_mlp.items()):
        if len(labels) > 1:
            found.append(Defect("shared_bos_neuron",
                                f"SelectorWidths {sorted(labels)} share MLP {mlp}: their clean-BOS neurons merge, "
                                f"so the BOS position holds -1 in their ':0' and attention-output dimensions"))

    # pad_counted
    if not causal:
        nz = _nonzero_at_pad(graph)
        for label, expr in exprs.items():
            if isinstance(expr, rasp.Select) and nz.get(expr.keys.label, True):
                found.append(Defect("pad_counted",
                                    f"{label}: keys {expr.keys.label!r} are non-zero at PAD positions and tracr does "
                                    f"not mask PAD, so in inputs padded to max_seq_len={max_seq_len} PAD positions "
                                    f"can be selected (run() avoids padding; padded batches do not)"))

    # none_output
    sink = exprs[sink_label]
    if rasp.is_categorical(sink):
        reason = None
        if isinstance(sink, rasp.Aggregate):
            if not (isinstance(sink.selector, rasp.Select) and sink.selector.predicate == rasp.Comparison.TRUE):
                reason = "a categorical Aggregate outputs None where its selector selects nothing"
        elif isinstance(sink, rasp.Map):
            if any(y is None for _, y in _values(sink.f, value_set(sink.inner))):
                reason = "its function returns None for some inputs"
        elif isinstance(sink, rasp.SequenceMap):
            pairs = [(a, b) for a in value_set(sink.fst) for b in value_set(sink.snd)]
            if any(y is None for _, y in _values(lambda p: sink.f(*p), pairs)):
                reason = "its function returns None for some inputs"
        if reason:
            basis = graph.nodes[sink_label].get(nodes.OUTPUT_BASIS) or []
            first = basis[0].value if basis else None
            found.append(Defect("none_output",
                                f"{sink_label}: {reason}; None is (almost) the zero vector and decodes to a real "
                                f"value: the first output value {first!r}, or whatever unselected positions "
                                f"leak through the softmax"))

    # selector_width_imprecise (numerical check of the compiled decoding MLP)
    for label, expr in exprs.items():
        if isinstance(expr, rasp.SelectorWidth):
            block = graph.nodes[label][nodes.MODEL_BLOCK]
            errs = _selector_width_errors(block, label, max_seq_len, rasp.is_categorical(expr))
            bad = [(w, e) for w, e in errs if e > SW_PRECISION]
            if bad:
                shown = ", ".join(f"w={w}: {e:.3f}" for w, e in bad[:4])
                found.append(Defect("selector_width_imprecise",
                                    f"{label}: the decoding MLP misses widths ({shown}) at max_seq_len={max_seq_len} "
                                    f"(exact only up to 6 at mlp_exactness=100)"))
    return found
