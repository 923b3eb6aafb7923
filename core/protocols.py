"""The two small protocols everything is built on: a Case and a Method.

A *case* is a task with a model (or several: ``tracr`` compiled, ``siit`` trained, ``natural``
trained on behaviour only), data and a ground-truth circuit. A *method* takes a :class:`Problem`
(model + graph + data + how to ablate) and returns edge scores, or a sweep of circuits.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from core import metrics
from core.circuit import Circuit
from core.data import CaseData, OutputType
from core.patching import PatchEngine
from core.provenance import ModelRef

from core.graph import Graph

if TYPE_CHECKING:  # heavy imports stay lazy
    from transformer_lens import HookedTransformer


# The losses a run can minimise (``--metric``). ``faithfulness``: KL (categorical) / MSE (numerical) to
# the clean model's output; ``task``: cross-entropy / MSE to the labels; ``logit-diff``: minus the mean
# logit difference label - wrong answer (MIB's metric; needs ``CaseData.wrong_labels``).
METRICS = ("faithfulness", "task", "logit-diff")
# Spellings a user may give for the same losses (``--metric kl``, ``metric = "ce"`` in a case file):
# alias -> (metric, the output type it needs).
METRIC_ALIASES = {"kl": ("faithfulness", "categorical"), "ce": ("task", "categorical"),
                  "mse": ("task", "numerical")}


def resolve_metric(metric: str, output_type: str) -> str:
    """A metric name or alias -> one of :data:`METRICS`; a ValueError names what was expected."""
    if metric in METRICS:
        return metric
    if metric in METRIC_ALIASES:
        canonical, needs = METRIC_ALIASES[metric]
        if output_type != needs:
            raise ValueError(f"metric {metric!r} needs {needs} outputs; this case's are {output_type}")
        return canonical
    raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS + tuple(METRIC_ALIASES))}")


class Case(abc.ABC):
    """A benchmark case. Subclasses set the attributes and implement the four methods.

    Optional attributes: ``wrong_answers`` (True when the datasets carry ``wrong_labels``, so that
    ``--metric logit-diff`` works), ``default_metric`` (the metric a run uses without ``--metric``).
    ``ground_truth`` may return None (a case without a known circuit: ROC is skipped, faithfulness
    evaluations still work).
    """

    id: str
    kind: str  # "tracr" | "siit" | "ioi" | "toy" | ...
    description: str
    output_type: OutputType
    models: tuple[str, ...] = ("tracr",)  # model kinds this case can load; the first is the default
    flags: dict[str, str]  # flag -> reason, e.g. {"trivial": "a single component"}
    wrong_answers: bool = False  # datasets carry wrong_labels (logit-diff works)
    default_metric: str = "faithfulness"

    @abc.abstractmethod
    def load_model(self, model: str | None = None, device: str = "cpu") -> "HookedTransformer":
        """The model of the given kind, ready for the graph (attn result, split qkv, mlp_in hooks on)."""

    @abc.abstractmethod
    def ground_truth(self, model: str | None = None) -> Circuit:
        """The ground truth of the given model kind; its type is per case kind. Circuit cases (tracr, siit,
        ioi, toy, file cases): the true ``Circuit``, at node and edge level (edges may split q/k/v).
        Direction cases (``kind == "direction"``): the known direction and its site, a
        ``cases.direction.case.DirectionSite``."""

    @abc.abstractmethod
    def dataset(self, n: int = 200, seed: int = 0, model: str | None = None) -> CaseData:
        """Deterministic data: the same (n, seed, model) gives the same data; its type is per case kind.
        Circuit cases: clean/corrupted pairs with labels, a ``CaseData``; ``model`` (a model kind) lets a
        case tailor the corrupted run to the model: Tracr cases scramble positions for compiled models only
        (a trained model would see off-distribution activations). Direction cases: labelled sentences, a
        ``cases.direction.data.SentimentData`` (with a keyword ``split``: ``fit`` or ``test``)."""

    def check_metric(self, metric: str | None) -> str:
        """The canonical metric a run of this case uses (``None``: the case's default); a ValueError
        (one line) when the case cannot compute it, so the CLI stops before any work."""
        metric = resolve_metric(metric or self.default_metric, self.output_type)
        if metric == "logit-diff" and not self.wrong_answers:
            raise ValueError(f"case {self.id} has no answer/wrong-answer tokens, which --metric logit-diff needs "
                             "(a file case's data gives 'answer' and 'wrong' on each line); use faithfulness or task")
        return metric

    def info(self) -> dict[str, Any]:
        """What ``cases show`` prints. Subclasses extend it."""
        return {"id": self.id, "kind": self.kind, "description": self.description,
                "output_type": self.output_type, "models": list(self.models), "flags": dict(self.flags)}

    def resolve_model(self, model: str | None) -> str:
        model = model or self.models[0]
        if model not in self.models:
            raise ValueError(f"case {self.id} has no model {model!r}; it has {', '.join(self.models)}")
        return model

    def model_ref(self, model: str | None = None, model_dir: str | None = None) -> ModelRef:
        """Where the model of ``model`` (a kind) comes from, with its weights' sha256, resolved from files
        without building it. Cases that ship or train models override this; the default knows nothing
        of the model but its kind."""
        if model_dir is not None:
            raise ValueError(f"case {self.id} does not load models from a directory (--model-dir)")
        return ModelRef(kind=self.resolve_model(model), source="case")

    def load_dir(self, directory, device: str = "cpu") -> tuple["HookedTransformer", Circuit]:
        """(model, ground truth) from a model directory (``--model-dir``), for cases that support it."""
        raise ValueError(f"case {self.id} does not load models from a directory (--model-dir)")

    def data_spec(self, model: str | None = None) -> dict[str, Any]:
        """How :meth:`dataset` builds its clean/corrupted pairs (the corruption), recorded in results."""
        return {}


@dataclass
class Problem:
    """Everything a method needs, so that a method file holds the algorithm and nothing else."""

    model: "HookedTransformer"
    graph: "Graph"
    data: CaseData
    output_type: OutputType
    ablation: str = "corrupted"  # "corrupted" | "mean" | "zero" | "optimal"
    device: str = "cpu"
    seed: int = 0
    case_id: str = ""
    metric: str = "faithfulness"  # "faithfulness": KL/MSE to the clean model; "task": CE/MSE to the labels;
    # "logit-diff": -(logit[label] - logit[wrong answer]) (METRICS)

    def loss_fn(self):
        """The loss methods minimise, ``logits [K, n, seq, vocab] -> [K]`` (lower = closer to the model)."""
        eng = self.engine()
        if self.metric == "faithfulness":
            return eng.default_loss()
        if self.metric == "task":
            labels, mask = self.data.clean_labels.to(eng.device), eng.mask
            if self.output_type == "numerical":
                return lambda logits: metrics.mse(logits, labels, mask)
            return lambda logits: metrics.cross_entropy(logits, labels, mask)
        if self.metric == "logit-diff":
            if self.data.wrong_labels is None or self.output_type != "categorical":
                raise ValueError(f"case {self.case_id or '?'}: metric logit-diff needs categorical outputs and "
                                 "wrong-answer labels (CaseData.wrong_labels)")
            labels, mask = self.data.clean_labels.to(eng.device), eng.mask
            wrong = self.data.wrong_labels.to(eng.device)
            return lambda logits: -metrics.logit_diff(logits, labels, wrong, mask)
        raise ValueError(f"unknown metric {self.metric!r}; expected one of {', '.join(METRICS)}")

    def engine(self):
        """The patching engine for this problem (built once, cached)."""
        if getattr(self, "_engine", None) is None:
            self._engine = PatchEngine(self.model, self.graph, self.data, self.output_type, ablation=self.ablation)
        return self._engine


@dataclass
class MethodOutput:
    """A method's answer: continuous scores, or one circuit per hyper-parameter value, or both.

    ``edge_scores``/``node_scores``: higher = more important (ranked by absolute value unless the
    method says otherwise in ``info``). ``sweep``: (hyper-parameter value, circuit) pairs.
    ``signed_edges``/``signed_nodes``: the signed estimates behind scores that rank by magnitude (attribution
    methods), where the method has them; result files record them as ``method_info.signed`` and
    ``method_info.signed_nodes``.
    """

    edge_scores: dict[str, float] | None = None
    node_scores: dict[str, float] | None = None
    sweep: list[tuple[float, Circuit]] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    signed_edges: dict[str, float] | None = None
    signed_nodes: dict[str, float] | None = None


def label_number(x: Any) -> str:
    """A parameter value in a variant label: numbers in ``g`` form (``0.01``, ``1e-05``), anything else as text."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    return f"{x:g}"


def sweep_label(params: Mapping[str, Any], many: str, one: str, word: str, symbol: str) -> str | None:
    """A grid parameter's label part: ``"11 lambdas"`` when ``params[many]`` is a list, ``"lambda=0.1"`` when
    the single-value ``params[one]`` is there, else None (for :meth:`Method.variant_parts`)."""
    values = params.get(many)
    if isinstance(values, list):
        return f"{len(values)} {word}"
    if one in params:
        return f"{symbol}={label_number(params[one])}"
    return None


class Method(abc.ABC):
    """A circuit-discovery method. Hyper-parameters are constructor arguments with defaults.

    What orchestration needs to know about a method is declared here, on the class, with defaults that
    fit most methods: its ``family``, the parameters that are ``speed_only``, whether it is built with the
    case's ground truth (``needs_ground_truth``), its default sweep and short labels for its variants."""

    name: ClassVar[str]
    #: the method family (``methods.FAMILIES``); circuit methods ``discover`` scores or circuits
    family: ClassVar[str] = "circuit"
    #: parameters that change speed or memory only, never what the method computes: they are not part of a
    #: result's variant (``benchmark.variants``), so runs that differ only in them are one leaderboard row
    speed_only: ClassVar[tuple[str, ...]] = ()
    #: the method is built, per job, with the case's ground truth as its ``truth`` argument (the oracle
    #: baseline); ``truth`` is not a hyper-parameter and is never recorded
    needs_ground_truth: ClassVar[bool] = False
    #: a single-value hyper-parameter that replaces a sweep: ``{"thresholds": "threshold"}`` means a user's
    #: ``threshold`` (or ``thresholds``) replaces the default grid of ``thresholds``
    sweep_single: ClassVar[dict[str, str]] = {}

    @abc.abstractmethod
    def discover(self, problem: Problem) -> MethodOutput: ...

    @classmethod
    def default_sweep(cls) -> dict[str, Any]:
        """The hyper-parameter grid that ``run`` and ``benchmark`` both use when the user gives none
        (``{}``: one run with the constructor's defaults)."""
        return {}

    @classmethod
    def with_default_sweep(cls, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` plus the default sweep's grids that the user did not replace (by the grid itself
        or by its single-value parameter, :attr:`sweep_single`)."""
        out = dict(params)
        for key, grid in cls.default_sweep().items():
            if key not in out and cls.sweep_single.get(key) not in out:
                out[key] = grid
        return out

    @classmethod
    def variant_parts(cls, differing: set[str], params: Mapping[str, Any]) -> tuple[list[str], set[str]]:
        """Short label parts for a variant of this method whose ``differing`` parameters (those whose values
        differ between the variants of the method in a result set) take the values in ``params``:
        ``(parts, keys they cover)``, e.g. ``(["inputs", "5 steps"], {"ig_variant", "integrated_grad_steps"})``
        for ``eap-ig (inputs, 5 steps)``. Keys not covered are shown as ``key=value``; the default covers none."""
        return [], set()

    def params(self) -> dict[str, Any]:
        """Hyper-parameters as recorded in result files (defaults to the instance's public attributes)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}
