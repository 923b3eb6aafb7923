"""The two small protocols everything is built on: a Case and a Method.

A *case* is a task with a model (or several: ``tracr`` compiled, ``siit`` trained, ``natural``
trained on behaviour only), data and a ground-truth circuit. A *method* takes a :class:`Problem`
(model + graph + data + how to ablate) and returns edge scores, or a sweep of circuits.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from core.circuit import Circuit
from core.data import CaseData, OutputType

if TYPE_CHECKING:  # heavy imports stay lazy
    from transformer_lens import HookedTransformer

    from core.graph import Graph


class Case(abc.ABC):
    """A benchmark case. Subclasses set the attributes and implement the four methods."""

    id: str
    kind: str  # "tracr" | "siit" | "ioi" | "toy" | ...
    description: str
    output_type: OutputType
    models: tuple[str, ...] = ("tracr",)  # model kinds this case can load; the first is the default
    flags: dict[str, str]  # flag -> reason, e.g. {"trivial": "a single component"}

    @abc.abstractmethod
    def load_model(self, model: str | None = None, device: str = "cpu") -> "HookedTransformer":
        """The model of the given kind, ready for the graph (attn result, split qkv, mlp_in hooks on)."""

    @abc.abstractmethod
    def ground_truth(self, model: str | None = None) -> Circuit:
        """The true circuit of the given model kind, at node and edge level (edges may split q/k/v)."""

    @abc.abstractmethod
    def dataset(self, n: int = 200, seed: int = 0, model: str | None = None) -> CaseData:
        """Deterministic clean/corrupted pairs with labels: the same (n, seed, model) gives the same data.
        ``model`` (a model kind) lets a case tailor the corrupted run to the model: Tracr cases scramble
        positions for compiled models only (a trained model would see off-distribution activations)."""

    def info(self) -> dict[str, Any]:
        """What ``cases show`` prints. Subclasses extend it."""
        return {"id": self.id, "kind": self.kind, "description": self.description,
                "output_type": self.output_type, "models": list(self.models), "flags": dict(self.flags)}

    def resolve_model(self, model: str | None) -> str:
        model = model or self.models[0]
        if model not in self.models:
            raise ValueError(f"case {self.id} has no model {model!r}; it has {', '.join(self.models)}")
        return model


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
    metric: str = "faithfulness"  # "faithfulness": KL/MSE to the clean model; "task": CE/MSE to the labels

    def loss_fn(self):
        """The loss methods minimise, ``logits [K, n, seq, vocab] -> [K]`` (lower = closer to the model)."""
        from core import metrics

        eng = self.engine()
        if self.metric == "faithfulness":
            return eng.default_loss()
        if self.metric == "task":
            labels, mask = self.data.clean_labels.to(eng.device), eng.mask
            if self.output_type == "numerical":
                return lambda logits: metrics.mse(logits, labels, mask)
            return lambda logits: metrics.cross_entropy(logits, labels, mask)
        raise ValueError(f"unknown metric {self.metric!r}; expected faithfulness or task")

    def engine(self):
        """The patching engine for this problem (built once, cached)."""
        if getattr(self, "_engine", None) is None:
            from core.patching import PatchEngine
            self._engine = PatchEngine(self.model, self.graph, self.data, self.output_type, ablation=self.ablation)
        return self._engine


@dataclass
class MethodOutput:
    """A method's answer: continuous scores, or one circuit per hyper-parameter value, or both.

    ``edge_scores``/``node_scores``: higher = more important (ranked by absolute value unless the
    method says otherwise in ``info``). ``sweep``: (hyper-parameter value, circuit) pairs.
    """

    edge_scores: dict[str, float] | None = None
    node_scores: dict[str, float] | None = None
    sweep: list[tuple[float, Circuit]] | None = None
    info: dict[str, Any] = field(default_factory=dict)


class Method(abc.ABC):
    """A circuit-discovery method. Hyper-parameters are constructor arguments with defaults."""

    name: ClassVar[str]

    @abc.abstractmethod
    def discover(self, problem: Problem) -> MethodOutput: ...

    def params(self) -> dict[str, Any]:
        """Hyper-parameters as recorded in result files (defaults to the instance's public attributes)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}
