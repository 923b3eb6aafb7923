"""``TracrCase``: one class for every InterpBench Tracr case, driven by ``cases.tracr.table``.

Input/output convention (the same as the compiled model's): every input is a list that starts with
``"BOS"``, optionally ends with ``"PAD"`` tokens; every output list has one entry per input position,
``"BOS"`` at position 0 and ``None`` at PAD positions, so ``case.evaluate(x)`` lines up with
``case.run(model, x)`` position by position. The RASP reference evaluator runs on the tokens
without BOS and PAD; causal cases use tracr's causal evaluator (selectors ANDed with a
lower-triangular mask), which is what the compiled causal model computes.

Datasets (:meth:`TracrCase.dataset`) are deterministic in ``(n, seed)``: exhaustive when the input
space has at most ``n`` members (each input once; fewer than ``n`` rows then, said in ``meta``),
otherwise ``n`` distinct sampled inputs. Lengths vary from ``spec.min_len`` to ``max_seq_len``
(PAD after the input) unless the case is flagged ``fixed_length``. Each corrupted input is another
draw from the same distribution, never equal to its clean partner.
"""

from __future__ import annotations

import itertools
import json
import math
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch

from core.circuit import Circuit
from core.data import CaseData
from core.metrics import IGNORE, accuracy, atol_accuracy, kl_divergence, logit_diff, mse
from core.protocols import Case
from core.provenance import ModelRef, hash_files
from core.registry import UnknownNameError
from training import registry
from cases.tracr import cache as cache_mod
from cases.tracr import rasp
from cases.tracr.compiled import META_FILE, PLAIN_WEIGHTS_FILE, WEIGHTS_FILE, CompiledModel
from cases.tracr.compiler import compile_rasp_to_model
from cases.tracr.ground_truth import without_constant_reads
from cases.tracr.programs import build
from cases.tracr.table import TRACR_CASES, TracrCaseSpec

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer

BOS, PAD = "BOS", "PAD"


# ---------------------------------------------------------------------------------------------------
# samplers: (rng, vocab, length, **params) -> list of tokens (without BOS)
# ---------------------------------------------------------------------------------------------------

def _uniform(rng, vocab, n, **_):
    return [vocab[i] for i in rng.integers(len(vocab), size=n)]


def _rotation(rng, vocab, n, offset=2, p_all_true=0.15, p_all_false=0.15, **_):
    """Case 1: x[i] == x[i-offset] everywhere (p_all_true), nowhere (p_all_false), else uniform."""
    u = rng.random()
    x = _uniform(rng, vocab, n)
    if u < p_all_true:
        for i in range(offset, n):
            x[i] = x[i - offset]
    elif u < p_all_true + p_all_false:
        for i in range(offset, n):
            others = [v for v in vocab if v != x[i - offset]]
            x[i] = others[rng.integers(len(others))]
    return x


def _dyck(rng, vocab, n, pairs=("()", "{}"), p_balanced=0.5, **_):
    """Case 5: a balanced shuffled-Dyck word (each bracket pair balanced) with probability p_balanced."""
    if rng.random() >= p_balanced:
        return _uniform(rng, vocab, n)
    fillers = [v for v in vocab if all(v not in p for p in pairs)]
    open_count = [0] * len(pairs)
    out = []
    for i in range(n):
        left = n - i
        need = sum(open_count)
        choices = []
        if need + 2 <= left:
            choices += [("open", k) for k in range(len(pairs))]
        if need + 1 <= left and fillers:
            choices += [("fill", None)]
        if need > 0:
            choices += [("close", k) for k in range(len(pairs)) if open_count[k] > 0]
        if need == left:  # must close
            choices = [c for c in choices if c[0] == "close"]
        kind, k = choices[rng.integers(len(choices))]
        if kind == "open":
            open_count[k] += 1
            out.append(pairs[k][0])
        elif kind == "close":
            open_count[k] -= 1
            out.append(pairs[k][1])
        else:
            out.append(fillers[rng.integers(len(fillers))])
    return out


def _palindrome(rng, vocab, n, p_true=0.5, **_):
    x = _uniform(rng, vocab, n)
    if rng.random() < p_true:
        for i in range(n // 2):
            x[n - 1 - i] = x[i]
    return x


def _sorted(rng, vocab, n, order="ascending", p_true=0.5, **_):
    x = _uniform(rng, vocab, n)
    if rng.random() < p_true:
        x = sorted(x, reverse=(order == "descending"))
    return x


def _has_duplicate(rng, vocab, n, p_true=0.5, **_):
    if rng.random() < p_true or n > len(vocab):
        x = _uniform(rng, vocab, n)
        if n >= 2:
            i, j = rng.choice(n, size=2, replace=False)
            x[j] = x[i]
        return x
    return [vocab[i] for i in rng.choice(len(vocab), size=n, replace=False)]


def _last_two_equal(rng, vocab, n, p_true=0.5, **_):
    x = _uniform(rng, vocab, n)
    if n >= 2 and rng.random() < p_true:
        x[-1] = x[-2]
    return x


def _all_equal(rng, vocab, n, p_true=0.5, **_):
    if rng.random() < p_true:
        return [vocab[rng.integers(len(vocab))]] * n
    return _uniform(rng, vocab, n)


def _alternating_parity(rng, vocab, n, p_true=0.5, **_):
    if rng.random() >= p_true:
        return _uniform(rng, vocab, n)
    by_parity = [[v for v in vocab if v % 2 == p] for p in (0, 1)]
    p0 = int(rng.integers(2))
    return [by_parity[(p0 + i) % 2][rng.integers(len(by_parity[(p0 + i) % 2]))] for i in range(n)]


def _all_even(rng, vocab, n, p_true=0.5, **_):
    if rng.random() >= p_true:
        return _uniform(rng, vocab, n)
    even = [v for v in vocab if v % 2 == 0]
    return [even[i] for i in rng.integers(len(even), size=n)]


SAMPLERS: dict[str, Callable[..., list]] = {
    "uniform": _uniform, "rotation": _rotation, "dyck": _dyck, "palindrome": _palindrome, "sorted": _sorted,
    "has_duplicate": _has_duplicate, "last_two_equal": _last_two_equal, "all_equal": _all_equal,
    "alternating_parity": _alternating_parity, "all_even": _all_even,
}


# ---------------------------------------------------------------------------------------------------
# value sets and encoders, computed without compiling (checked against the compiled model in tests)
# ---------------------------------------------------------------------------------------------------

def _sorted_values(values) -> list:
    """Values in tracr's basis order (sorted by (name, value), falling back to the string form)."""
    from tracr.craft import bases  # numpy only

    return [d.value for d in sorted(bases.BasisDirection("x", v) for v in values)]


def value_set(expr, vocab, max_seq_len: int, _memo: dict | None = None) -> set:
    """The values an SOp can take, with tracr's rules (basis_inference): None and arithmetic errors dropped."""
    memo = {} if _memo is None else _memo
    if id(expr) in memo:
        return memo[id(expr)]

    def safe(f, *a):
        try:
            return f(*a)
        except ArithmeticError:
            return None

    if isinstance(expr, rasp.TokensType):
        out = set(vocab)
    elif isinstance(expr, rasp.IndicesType):
        out = set(range(max_seq_len))
    elif isinstance(expr, rasp.SelectorWidth):
        out = set(range(max_seq_len + 1))
    elif isinstance(expr, rasp.Full):
        out = {expr.fill}
    elif isinstance(expr, rasp.Map):
        out = {safe(expr.f, x) for x in value_set(expr.inner, vocab, max_seq_len, memo)} - {None}
    elif isinstance(expr, rasp.SequenceMap):
        a = value_set(expr.fst, vocab, max_seq_len, memo)
        b = value_set(expr.snd, vocab, max_seq_len, memo)
        out = {safe(expr.f, x, y) for x, y in itertools.product(a, b)} - {None}
    elif isinstance(expr, rasp.Aggregate):
        inner = value_set(expr.sop, vocab, max_seq_len, memo)
        out = set(inner) if rasp.is_categorical(expr) else {v / n for v in inner for n in range(1, max_seq_len + 1)}
    else:
        raise ValueError(f"no value set for {expr}")
    memo[id(expr)] = out
    return out


# ---------------------------------------------------------------------------------------------------


def scrambled_positions(n: int, width: int, seed: int) -> torch.Tensor:
    """Position scrambling for the corrupted run (ACDC does the same for Tracr models): each row is
    BOS's position 0 followed by a seeded random permutation of 1..width-1. The input node carries
    token + position, and every input has the same positions, so without this, resample ablation
    could never show the effect of an edge that reads only positions (findings.md)."""
    g = torch.Generator().manual_seed(10_007 * seed + 1)
    rest = torch.stack([torch.randperm(width - 1, generator=g) + 1 for _ in range(n)]) if n else \
        torch.zeros(0, width - 1, dtype=torch.long)
    return torch.cat([torch.zeros(n, 1, dtype=torch.long), rest], 1)


class TracrCase(Case):
    """A Tracr case from :data:`cases.tracr.table.TRACR_CASES`."""

    kind = "tracr"
    cache_dir: str | None = None  # compiled-model cache (None: cases.tracr.cache.default_cache_dir())

    @property
    def models(self) -> tuple[str, ...]:
        """``tracr`` (compiled) plus every trained kind (siit, iit, natural) shipped for this case."""
        return ("tracr", *registry.available_models(self.id))

    def model_ref(self, model: str | None = None, model_dir: str | None = None, model_seed: int | None = None):
        """Where the model comes from and its weights' sha256, from files only (compiles nothing):
        the cache entry for ``tracr``, the shipped directory for a trained kind (of training seed
        ``model_seed``: :meth:`seed_dir`), or ``model_dir``."""
        if model_dir is not None:
            return registry.explicit_ref(self.id, model_dir, model)
        kind = self.resolve_model(model)
        if kind != "tracr":
            return registry.shipped_ref(self.id, kind, model_seed)  # a seed not shipped: FileNotFoundError
        if model_seed is not None:
            raise self._compiled_has_no_seeds()
        key = self.cache_key()
        entry = cache_mod.find_entry(key)
        if entry is None:  # compiled on first use: identified by its cache key until then
            return ModelRef(kind="tracr", source="compiled", extra={"cache_key": key})
        shipped = entry.parent.resolve() == cache_mod.SHIPPED_CACHE.resolve()
        return ModelRef(kind="tracr", source="shipped" if shipped else "compiled", directory=str(entry),
                        files=hash_files(entry, (WEIGHTS_FILE, PLAIN_WEIGHTS_FILE)), extra={"cache_key": key})

    def model_seeds(self, model: str | None = None) -> list[int]:
        """The training seeds of the shipped models of a trained kind ([] for ``tracr``: it is compiled)."""
        kind = self.resolve_model(model)
        return [] if kind == "tracr" else list(registry.model_seeds(self.id, kind))

    def seed_dir(self, model: str | None, seed: int):
        """The directory of the shipped model of a trained kind with training seed ``seed`` (``benchmark
        --model-seeds``); ValueError for the compiled model or a seed that is not shipped."""
        kind = self.resolve_model(model)
        if kind == "tracr":
            raise self._compiled_has_no_seeds()
        d = registry.model_dir(self.id, kind, seed)
        if d is None:
            have = ", ".join(map(str, self.model_seeds(kind))) or "none"
            raise ValueError(f"case {self.id} ships no {kind} model of training seed {seed} (its {kind} model seeds: "
                             f"{have}; train one with the shipped model's command and --seed {seed})")
        return d

    def _compiled_has_no_seeds(self) -> ValueError:
        return ValueError(f"case {self.id}: the compiled tracr model has no training seeds; --model-seeds needs a "
                          f"trained model kind ({', '.join(registry.available_models(self.id)) or 'none shipped'})")

    def load_dir(self, directory, device: str = "cpu"):
        """(model, ground truth) of a trained model directory of this case (``--model-dir``)."""
        return registry.load_trained(self.id, device=device, directory=directory)

    def data_spec(self, model: str | None = None) -> dict[str, Any]:
        """How :meth:`dataset` makes its pairs (recorded in results and run ids)."""
        scramble = (model or "tracr") == "tracr"
        return {"corruption": "resample", "sampler": self.spec.sampler,
                "sampler_params": dict(self.spec.sampler_params), "lengths": list(self.spec.lengths),
                "position_scrambling": scramble}

    def __init__(self, spec: TracrCaseSpec | str):
        if isinstance(spec, str):
            if spec not in TRACR_CASES:
                raise UnknownNameError("tracr case", spec, TRACR_CASES)
            spec = TRACR_CASES[spec]
        self.spec = spec
        self.id = spec.id
        self.description = spec.description
        self.output_type = spec.output_type
        self._flags: dict[str, str] | None = None
        self._compiled: CompiledModel | None = None

    def __repr__(self) -> str:
        return f"TracrCase({self.id!r})"

    # -- program and reference evaluator ---------------------------------------------------------
    @cached_property
    def program(self):
        """The RASP program (built once; tracr's label counter is reset first, so labels are stable)."""
        return build(self.spec.builder)

    @property
    def vocab(self) -> tuple:
        return self.spec.vocab

    @property
    def max_seq_len(self) -> int:
        """Tracr's max_seq_len: real tokens, BOS excluded (the model's n_ctx is one more)."""
        return self.spec.max_seq_len

    def _evaluator(self):
        from tracr.rasp import causal_eval
        return causal_eval.evaluate if self.spec.causal else rasp.evaluate

    def evaluate(self, inputs: Sequence[Sequence[Any]]) -> list[list]:
        """Reference outputs: for each input (``["BOS", tok, ..., "PAD"...]``) a list of the same length,
        ``"BOS"`` first, the program's outputs, ``None`` at PAD positions."""
        ev = self._evaluator()
        outs = []
        for x in inputs:
            toks = self._strip(x)
            out = ev(self.program, toks) if toks else []
            outs.append([BOS] + list(out) + [None] * (len(x) - 1 - len(toks)))
        return outs

    def _strip(self, x: Sequence[Any]) -> list:
        x = list(x)
        if not x or x[0] != BOS:
            raise ValueError(f"case {self.id}: inputs start with 'BOS', got {x[:3]!r}")
        toks = x[1:]
        while toks and toks[-1] == PAD:
            toks.pop()
        if len(toks) > self.max_seq_len:
            raise ValueError(f"case {self.id}: input has {len(toks)} tokens, max_seq_len is {self.max_seq_len}")
        bad = [t for t in toks if t not in self._vocab_set]
        if bad:
            raise ValueError(f"case {self.id}: tokens {bad[:3]!r} are not in the vocab")
        return toks

    @cached_property
    def _vocab_set(self) -> set:
        return set(self.spec.vocab)

    # -- encoders ---------------------------------------------------------------------------------
    @cached_property
    def input_encoder(self) -> dict:
        """token -> id, tracr's ids (sorted token basis including BOS and PAD)."""
        if self._compiled is not None:
            return dict(self._compiled.input_encoder)
        return {v: i for i, v in enumerate(_sorted_values(set(self.vocab) | {BOS, PAD}))}

    @cached_property
    def output_encoder(self) -> dict | None:
        """output value -> logit index (categorical), None (numerical)."""
        if self._compiled is not None:
            return None if self._compiled.output_encoder is None else dict(self._compiled.output_encoder)
        if self.output_type != "categorical":
            return None
        return {v: i for i, v in enumerate(_sorted_values(value_set(self.program, self.vocab, self.max_seq_len)))}

    def encode(self, inputs: Sequence[Sequence[Any]], width: int | None = None) -> torch.Tensor:
        """Token ids ``[n, width]`` (default: the model's n_ctx), PAD after each input."""
        width = width or self.max_seq_len + 1
        enc = self.input_encoder
        rows = [[enc[t] for t in list(x) + [PAD] * (width - len(x))] for x in inputs]
        return torch.tensor(rows, dtype=torch.long)

    def encode_labels(self, outputs: Sequence[Sequence[Any]], width: int | None = None) -> torch.Tensor:
        """Outputs (as from :meth:`evaluate`) -> labels: logit index / -100 (categorical), float / NaN (numerical)."""
        width = width or self.max_seq_len + 1
        if self.output_type == "categorical":
            enc = self.output_encoder
            rows = [[IGNORE] + [IGNORE if v is None else enc[v] for v in o[1:]] + [IGNORE] * (width - len(o))
                    for o in outputs]
            return torch.tensor(rows, dtype=torch.long)
        rows = [[math.nan] + [math.nan if v is None else float(v) for v in o[1:]] + [math.nan] * (width - len(o))
                for o in outputs]
        return torch.tensor(rows, dtype=torch.float32)

    # -- models -----------------------------------------------------------------------------------
    def compile_kwargs(self) -> dict:
        return dict(vocab=set(self.vocab), max_seq_len=self.max_seq_len, compiler_bos=BOS, compiler_pad=PAD,
                    causal=self.spec.causal)

    def compiled_model(self, cache: bool = True) -> "CompiledModel":
        """The tracr-compiled model (from the on-disk cache after the first compile)."""
        if self._compiled is None:
            self._compiled = compile_rasp_to_model(self.program, cache=cache, cache_dir=self.cache_dir,
                                                   **self.compile_kwargs())
            for k in ("input_encoder", "output_encoder"):  # from now on the model's own encoders
                self.__dict__.pop(k, None)
        return self._compiled

    @property
    def flags(self) -> dict[str, str]:
        """The table's flags (trivial, consecutive_attention, ...) plus every tracr defect found when
        the program was compiled (``tracr:<code>`` -> message), read from the cache's JSON only."""
        if self._flags is None:
            flags = dict(self.spec.flags)
            entry = cache_mod.find_entry(self.cache_key(), self.cache_dir)
            meta = entry / META_FILE if entry is not None else None
            if meta is not None and meta.is_file():
                for d in json.loads(meta.read_text()).get("defects", []):
                    flags.setdefault(f"tracr:{d['code']}", d["message"])
            self._flags = flags
        return self._flags

    @cached_property
    def _cache_key(self) -> str:
        kw = self.compile_kwargs()
        return cache_mod.cache_key(self.program, kw["vocab"], kw["max_seq_len"], causal=kw["causal"],
                                   compiler_bos=BOS, compiler_pad=PAD)

    def cache_key(self) -> str:
        """The key of this case's compiled model in the cache (computed once; no JAX)."""
        return self._cache_key

    def cached_model(self) -> "CompiledModel | None":
        """The compiled model if it is already in the cache (never compiles, never imports JAX)."""
        if self._compiled is not None:
            return self._compiled
        return cache_mod.load_cached(self.cache_key(), self.cache_dir)

    def load_model(self, model: str | None = None, device: str = "cpu") -> "HookedTransformer":
        model = self.resolve_model(model)
        if model != "tracr":
            return registry.load_trained(self.id, model, device)[0]
        return self.compiled_model().model.to(device)

    def ground_truth(self, model: str | None = None) -> Circuit:
        """The compiled model's circuit, without edges that read only constant directions (a
        SelectorWidth head's value reads the BOS token): see ``ground_truth.without_constant_reads``."""
        model = self.resolve_model(model)
        if model != "tracr":
            return registry.trained_ground_truth(self.id, model)
        return without_constant_reads(self.compiled_model())

    def decode(self, logits: torch.Tensor, lengths: Sequence[int]) -> list[list]:
        """Model outputs ``[n, seq, d_out]`` -> value lists (``"BOS"`` first, None at PAD positions)."""
        outs = []
        if self.output_type == "categorical":
            values = [v for v, _ in sorted(self.output_encoder.items(), key=lambda kv: kv[1])]
            idx = logits.argmax(-1).tolist()
            for row, n in zip(idx, lengths):
                outs.append([BOS] + [values[i] for i in row[1:n]] + [None] * (len(row) - n))
        else:
            vals = logits[..., 0].tolist()
            for row, n in zip(vals, lengths):
                outs.append([BOS] + row[1:n] + [None] * (len(row) - n))
        return outs

    def run(self, model: "HookedTransformer | CompiledModel | None", inputs: Sequence[Sequence[Any]],
            pad: bool = False) -> list[list]:
        """Decoded model outputs, lined up with :meth:`evaluate`. By default each input is run at its own
        length (no PAD in the model); ``pad=True`` runs all inputs padded to n_ctx, as datasets do."""
        if model is None:
            model = self.compiled_model().model
        model = getattr(model, "model", model)
        inputs = [list(x) for x in inputs]
        real = [1 + len(self._strip(x)) for x in inputs]
        outs: list = [None] * len(inputs)
        groups: dict[int, list[int]] = {}
        for i, x in enumerate(inputs):
            groups.setdefault(self.max_seq_len + 1 if pad else real[i], []).append(i)
        with torch.no_grad():
            for width, rows in groups.items():
                toks = self.encode([inputs[i][:real[i]] for i in rows], width=width)
                logits = model(toks.to(model.cfg.device))
                for i, o in zip(rows, self.decode(logits.cpu(), [real[i] for i in rows])):
                    outs[i] = o[:len(inputs[i])] + [None] * (len(inputs[i]) - len(o))
        return outs

    # -- data -------------------------------------------------------------------------------------
    def input_space_size(self) -> int:
        return sum(len(self.vocab) ** n for n in self.spec.lengths)

    def _sample(self, rng: np.random.Generator) -> tuple:
        n = self.spec.lengths[rng.integers(len(self.spec.lengths))]
        return tuple(SAMPLERS[self.spec.sampler](rng, list(self.vocab), int(n), **self.spec.sampler_params))

    def sample_inputs(self, n: int, seed: int = 0) -> tuple[list[tuple], list[tuple], dict]:
        """(clean, corrupted, meta): distinct clean inputs (without BOS) and a different corrupted partner each."""
        rng = np.random.default_rng(seed)
        meta: dict[str, Any] = {"requested": n, "sampler": self.spec.sampler, "lengths": list(self.spec.lengths)}
        space = self.input_space_size()
        if space <= n:
            clean = [tuple(t) for L in self.spec.lengths for t in itertools.product(self.vocab, repeat=L)]
            clean = [clean[i] for i in rng.permutation(len(clean))]
            corrupted = []
            for i in range(len(clean)):
                j = int(rng.integers(len(clean) - 1))
                corrupted.append(clean[j + (j >= i)])
            meta["exhaustive"] = True
            if len(clean) < n:
                meta["note"] = f"the input space has only {len(clean)} members; returned each once (asked for {n})"
        else:
            seen, clean = set(), []
            tries = 0
            while len(clean) < n and tries < 200 * n:
                x = self._sample(rng)
                tries += 1
                if x not in seen:
                    seen.add(x)
                    clean.append(x)
            corrupted = []
            for x in clean:
                for _ in range(1000):
                    y = self._sample(rng)
                    if y != x:
                        break
                else:  # pragma: no cover - a sampler that can only produce x
                    raise RuntimeError(f"case {self.id}: could not draw a corrupted input different from {x}")
                corrupted.append(y)
            meta["exhaustive"] = False
            if len(clean) < n:
                meta["note"] = f"found only {len(clean)} distinct inputs in {tries} draws (asked for {n})"
        meta["returned"] = len(clean)
        return clean, corrupted, meta

    def dataset(self, n: int = 200, seed: int = 0, model: str | None = "tracr") -> CaseData:
        """Clean/corrupted pairs. For the compiled model (``model="tracr"``, the default) the corrupted
        run also scrambles positions (:func:`scrambled_positions`); trained models (siit, iit, natural)
        get plain resample pairs, because scrambled positions are off their training distribution."""
        clean, corrupted, meta = self.sample_inputs(n, seed)
        scramble = (model or "tracr") == "tracr"
        clean_in = [[BOS, *x] for x in clean]
        corr_in = [[BOS, *x] for x in corrupted]
        width = self.max_seq_len + 1
        lengths = torch.tensor([len(x) for x in clean_in])
        mask = (torch.arange(width)[None, :] < lengths[:, None]) & (torch.arange(width)[None, :] > 0)
        meta.update(clean_inputs=clean_in, corrupted_inputs=corr_in, case=self.id,
                    clean_outputs=self.evaluate(clean_in), corrupted_outputs=self.evaluate(corr_in),
                    position_scrambling=("corrupted run reads W_pos at a random permutation of positions 1..L"
                                         if scramble else None))
        return CaseData(clean=self.encode(clean_in, width), corrupted=self.encode(corr_in, width),
                        clean_labels=self.encode_labels(meta["clean_outputs"], width),
                        corrupted_labels=self.encode_labels(meta["corrupted_outputs"], width),
                        mask=mask, seed=seed, meta=meta,
                        corrupted_pos=scrambled_positions(len(clean_in), width, seed) if scramble else None)

    # -- metrics ----------------------------------------------------------------------------------
    def metrics(self, logits: torch.Tensor, data: CaseData, clean_logits: torch.Tensor | None = None,
                atol: float = 0.05) -> dict[str, float]:
        """Case metrics over masked (non-BOS, non-PAD) positions. Categorical: ``kl`` (KL from the clean
        model's output on the clean inputs; computed with the compiled model unless ``clean_logits`` is
        given), ``accuracy`` (argmax vs labels) and ``logit_diff`` (label logit minus the best other
        logit). Numerical: ``mse`` and ``atol_accuracy`` (|error| < atol)."""
        labels, mask = data.clean_labels, data.mask
        if self.output_type == "numerical":
            return {"mse": float(mse(logits, labels, mask)), "atol_accuracy": float(atol_accuracy(logits, labels, mask, atol))}
        if clean_logits is None:
            model = self.compiled_model().model
            with torch.no_grad():
                clean_logits = model(data.clean.to(model.cfg.device)).to(logits.device)
        lab = labels.clamp_min(0).expand(logits.shape[:-1]).unsqueeze(-1)
        wrong = logits.scatter(-1, lab, float("-inf")).argmax(-1)
        wrong = torch.where(labels == IGNORE, torch.full_like(wrong, IGNORE), wrong)
        if logits.dim() == 3:
            ld = logit_diff(logits, labels, wrong, mask)
        else:  # leading dims (one per circuit): reduce each over [n, seq] only
            flat, wflat = logits.reshape(-1, *logits.shape[-3:]), wrong.reshape(-1, *wrong.shape[-2:])
            ld = torch.stack([logit_diff(f, labels, w, mask) for f, w in zip(flat, wflat)]).reshape(logits.shape[:-3])
        return {"kl": _item(kl_divergence(logits, clean_logits, mask)), "accuracy": _item(accuracy(logits, labels, mask)),
                "logit_diff": _item(ld)}

    # -- info -------------------------------------------------------------------------------------
    def program_summary(self) -> list[str]:
        """One line per RASP expression in tracr's BFS order: ``label: Type(children) [encoding]``."""
        lines = []
        for e in cache_mod.bfs_expressions(self.program):
            kids = ", ".join(c.label for c in e.children)
            enc = f" [{rasp.get_encoding(e).value}]" if isinstance(e, rasp.SOp) else ""
            extra = f" {e.predicate.name}" if isinstance(e, rasp.Select) and isinstance(e.predicate, rasp.Comparison) else ""
            lines.append(f"{e.label}: {type(e).__name__}({kids}){extra}{enc}")
        return lines

    def info(self) -> dict[str, Any]:
        d = super().info()
        s = self.spec
        d.update(task=s.description, program=self.program_summary(), vocab=list(s.vocab), vocab_size=len(s.vocab),
                 max_seq_len=s.max_seq_len, n_ctx=s.max_seq_len + 1, causal=s.causal,
                 attention="causal" if s.causal else "bidirectional", sampler=s.sampler,
                 sampler_params=dict(s.sampler_params), lengths=[min(s.lengths), max(s.lengths)],
                 trivial=s.trivial)
        try:
            cm = self.cached_model()
        except Exception:  # noqa: BLE001 - info must not fail because the cache is unreadable
            cm = None
        if cm is not None:
            c = cm.config
            d["model_sizes"] = {"tracr": {k: c[k] for k in ("n_layers", "n_heads", "d_model", "d_head", "d_mlp",
                                                           "d_vocab", "d_vocab_out", "n_ctx") if k in c}}
            d["ground_truth"] = {"tracr": cm.ground_truth.to_json()}
            d["defects"] = [{"code": x.code, "message": x.message} for x in cm.defects]
        else:
            d["model_sizes"] = {"tracr": "not compiled yet (cases.tracr.case.TracrCase.compiled_model() compiles it)"}
        return d


def _item(x: torch.Tensor):
    return float(x) if x.dim() == 0 else x.tolist()


def train_test_split(data: CaseData, test_fraction: float = 0.2, seed: int = 0) -> tuple[CaseData, CaseData]:
    """Disjoint (train, test) row splits of a dataset (its clean inputs are distinct, so the splits share none)."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n = len(data)
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(n))
    k = max(1, int(round(n * test_fraction))) if n > 1 else 0
    test_idx, train_idx = perm[:k].sort().values, perm[k:].sort().values

    def sub(idx):
        d = data.subset(idx)
        meta = dict(data.meta)
        for key in ("clean_inputs", "corrupted_inputs", "clean_outputs", "corrupted_outputs"):
            if key in meta:
                meta[key] = [meta[key][i] for i in idx.tolist()]
        d.meta = meta
        return d

    return sub(train_idx), sub(test_idx)
