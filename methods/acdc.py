"""ACDC (Automatic Circuit DisCovery): online greedy edge pruning against a loss threshold tau.

Semantics (one run for one tau), shared by :class:`ACDC` and the reference :class:`NaiveACDC`:

* Start from the full graph (every edge kept) and ``current = loss(full)``; the loss is
  ``problem.loss_fn()`` (KL / MSE to the clean model by default, the task loss with
  ``problem.metric="task"``), lower = better.
* Visit the receivers in reverse topological order: ``logits``, then the last layer's MLP, then
  its heads' ``<v>``, ``<k>``, ``<q>`` receivers (heads in descending index), ... down to layer 0
  (``reversed(graph.receivers)``; with ``split_qkv=False`` a head is one receiver).
* A receiver whose node has no kept outgoing edge (so no path to the logits) is skipped and all
  its incoming edges are removed, as ACDC does; this does not change the loss.
* Otherwise its incoming edges are tried one at a time, nearest sender first (descending sender
  index: ``m{l-1}``, ``a{l-1}.h{H-1}``, ..., ``a{l-1}.h0``, ``m{l-2}``, ..., ``input``). Trying an
  edge = evaluating the current circuit without it. If ``loss(without) - current < tau``
  (``|...| < tau`` with ``abs_value_threshold``) the edge stays removed and
  ``current = loss(without)``; otherwise it is restored. Later trials see earlier removals.

The fast :class:`ACDC` makes exactly these decisions with far fewer model passes:

* **Start at layer.** While receiver r in layer l is processed, every edge into a receiver below
  l is still kept, so the residual stream entering block l is the clean one; trials restart there
  from cached clean activations (``PatchEngine.run_from``), skipping blocks 0..l-1.
* **Speculative batches.** For the remaining edges e_1..e_k of a receiver, it guesses each
  decision (g_j = remove or keep) and evaluates in one batched pass the k trial masks that the
  sequential algorithm *would* evaluate if the guesses were right: trial j = current circuit minus
  {e_i : i < j, g_i = remove} minus e_j. Walking the results in order, trial j was evaluated on the
  true current circuit as long as every earlier guess was right, so its decision (and the new
  ``current``) is exactly the sequential one; the walk stops after the first wrong guess (whose
  own decision is still exact), and the next batch starts from the true state. Each batch settles
  at least one edge, so the result equals the sequential algorithm's; only the number of passes
  depends on the guesses: an edge is guessed removed iff its latest measured effect (in an
  earlier batch past a wrong guess, or in the run for the previous tau of a sweep) is below tau;
  never-measured edges are guessed removed (most edges are). The batch size adapts to how long
  guesses have tended to hold (rows past a wrong guess are wasted work).
* **Shared trials across a sweep.** A trial's loss depends only on its mask, so losses are
  memoised by mask (a 128-bit digest); runs for neighbouring taus share their common prefix of
  decisions and re-evaluate nothing there.

Losses enter the comparison as Python floats, in the same order in both implementations; the two
differ only by float rounding between a batched restart and a full pass (~1e-7 relative in
float32), which can flip a decision only when ``loss(without) - current`` is that close to tau.

Output: with ``threshold`` (default :data:`DEFAULT_THRESHOLD`), ``sweep = [(tau, circuit)]``; with
``thresholds``, one independent run per tau (ascending) and ``sweep = [(tau, circuit), ...]``. In
both cases ``edge_scores[e]`` = the largest tau of the sweep at which e survives (0.0 if it never
does), so ``score >= tau`` gives back the circuit of any tau where circuits are nested.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from core import naming
from core.protocols import Method, MethodOutput, Problem, sweep_label
from methods import _checks

DEFAULT_THRESHOLD = 0.01
ORDERS = ("reverse-topological", "given")


def default_thresholds(n: int = 21) -> list[float]:
    """The default tau sweep, 10^linspace(-5, 0, n) (the ACDC paper's Tracr grid, extended to 1), in Python
    floats: ``np.logspace`` rounds differently across numpy versions (2.4 gives 9.999999999999999e-06 for
    1e-05), and the grid is part of a run's identity, so runs made with two numpys would not pool."""
    return [10.0 ** (-5 + 5 * i / (n - 1)) for i in range(n)]


@dataclass(frozen=True)
class ReceiverStep:
    """One receiver as ACDC visits it: its node, block, and incoming edges in trial order."""

    name: str
    node: str
    layer: int
    edges: list[int]


def visiting_order(graph) -> tuple[list[ReceiverStep], dict[str, list[int]]]:
    """The receivers in visiting order, and each node's outgoing edges (indices)."""
    incoming: dict[str, list[tuple[int, int]]] = {}
    outgoing: dict[str, list[int]] = {}
    for e, name in enumerate(graph.edges):
        p = naming.parse_edge(name)
        key = p.receiver + (f"<{p.qkv}>" if p.qkv else "")
        incoming.setdefault(key, []).append((graph.sender_index[p.sender], e))
        outgoing.setdefault(p.sender, []).append(e)
    steps, seen = [], set()
    for r in reversed(graph.receivers):
        key = r.name if (graph.split_qkv or r.qkv is None) else r.node
        if key in seen:
            continue
        seen.add(key)
        layer = graph.n_layers - 1 if r.node == naming.LOGITS else naming.node_layer(r.node)[0]
        edges = [e for _, e in sorted(incoming[key], reverse=True)]  # nearest sender first
        steps.append(ReceiverStep(key, r.node, layer, edges))
    return steps, outgoing


def given_order(graph, edge_order: list[str]) -> list[ReceiverStep]:
    """Steps that visit ``edge_order`` (every edge of the graph once) as given: consecutive edges into
    the same block form one step (its trials restart at that block), named ``given:<block>``. Such
    steps have no node, so the dangling-receiver skip does not apply (auto-circuit's ACDC has none)."""
    idx = [graph.edge_index[e] for e in graph.edge_names(edge_order)]
    if sorted(idx) != list(range(graph.n_edges)):
        raise ValueError(f"edge_order must list each of the graph's {graph.n_edges} edges exactly once")
    layers = [graph.n_layers - 1 if r == naming.LOGITS else naming.node_layer(r)[0]
              for r in graph.edge_sender_receiver()[1]]
    steps: list[ReceiverStep] = []
    for e in idx:
        if steps and steps[-1].layer == layers[e]:
            steps[-1].edges.append(e)
        else:
            steps.append(ReceiverStep(f"given:{layers[e]}", naming.LOGITS, layers[e], [e]))
    for a, b in zip(steps, steps[1:]):
        if b.layer > a.layer:  # a later step would restart above edges already removed below it
            raise ValueError("edge_order must visit receivers block by block, last block first")
    return steps


class ACDC(Method):
    """Online greedy ACDC; batched and restarted from cached activations (exact, see module doc)."""

    name = "acdc"
    speed_only = ("min_window",)  # fewest trials per batch

    @classmethod
    def variant_parts(cls, differing, params):
        """``acdc (21 tau)``, ``acdc (tau=0.01)``."""
        if not differing & {"thresholds", "threshold"}:
            return [], {"thresholds", "threshold"}
        part = sweep_label(params, "thresholds", "threshold", "tau", "tau")
        return ([part] if part else []), {"thresholds", "threshold"}

    def __init__(self, threshold: float | None = None, thresholds: list[float] | None = None,
                 abs_value_threshold: bool = False, order: str = "reverse-topological", min_window: int = 4,
                 edge_order: list[str] | None = None):
        if order not in ORDERS:
            raise ValueError(f"unknown order {order!r}; expected one of {', '.join(ORDERS)}")
        if (order == "given") != (edge_order is not None):
            raise ValueError("order='given' needs edge_order (a list of every edge name), and edge_order needs it")
        if threshold is not None and thresholds is not None:
            raise ValueError("give either threshold or thresholds, not both")
        self.threshold = DEFAULT_THRESHOLD if threshold is None and thresholds is None else \
            (None if threshold is None else _checks.number("threshold", threshold, low=0))
        self.thresholds = None if thresholds is None else _checks.grid("thresholds", thresholds, low=0)
        self.abs_value_threshold = abs_value_threshold
        self.order = order
        self.min_window = _checks.integer("min_window", min_window)  # speed only: fewest trials per batch
        self.edge_order = None if edge_order is None else [str(e) for e in edge_order]

    sweep_single = {"thresholds": "threshold"}

    @classmethod
    def default_sweep(cls) -> dict:
        """``thresholds``: :func:`default_thresholds` (21 taus), for ``run acdc`` and ``benchmark`` alike."""
        return {"thresholds": default_thresholds()}

    # ---- the algorithm ----------------------------------------------------------------------------
    def discover(self, problem: Problem) -> MethodOutput:
        graph, engine, loss_fn = problem.graph, problem.engine(), problem.loss_fn()
        taus = self.thresholds if self.thresholds is not None else [float(self.threshold)]
        steps, outgoing = visiting_order(graph)
        if self.edge_order is not None:
            steps = given_order(graph, self.edge_order)
        scores = torch.zeros(graph.n_edges, dtype=torch.float64)
        sweep = []
        self._stats = {"passes": 0, "trials": 0, "cached": 0, "right": 0, "wrong": 0}
        self._losses: dict[bytes, float] = {}  # trial-mask digest -> loss, shared across the sweep
        self._effect: dict[int, float] = {}  # edge -> latest measured loss(without) - loss(with)
        with engine.eval_mode(), torch.no_grad():
            for tau in taus:
                mask = self._prune(engine, loss_fn, steps, outgoing, tau)
                sweep.append((tau, graph.circuit_from_mask(mask)))
                scores[mask.cpu() > 0.5] = tau
        stats, self._losses, self._effect = dict(self._stats), {}, {}
        return MethodOutput(
            edge_scores=dict(zip(graph.edges, scores.tolist())), sweep=sweep,
            info={"score": "largest tau of the sweep at which the edge survives (0: never)",
                  "loss": problem.metric, "order": self.order, **stats})

    def _prune(self, engine, loss_fn, steps, outgoing, tau: float) -> torch.Tensor:
        mask = engine.full_mask().clone()
        current = self._initial_loss(engine, loss_fn)
        for step in steps:
            if step.node != naming.LOGITS and not bool(mask[outgoing[step.node]].any()):
                mask[step.edges] = 0.0  # no path to the logits: drop its inputs, the loss is unchanged
                continue
            current = self._receiver(engine, loss_fn, step, mask, current, tau)
        return mask

    def _removes(self, delta: float, tau: float) -> bool:
        return (abs(delta) if self.abs_value_threshold else delta) < tau

    def _initial_loss(self, engine, loss_fn) -> float:
        return self._evaluate(engine, loss_fn, engine.graph.n_layers - 1, engine.full_mask().unsqueeze(0))[0]

    def _receiver(self, engine, loss_fn, step: ReceiverStep, mask: torch.Tensor, current: float,
                  tau: float) -> float:
        """Decide ``step.edges`` in order (updating ``mask`` in place); return the new current loss."""
        edges = step.edges
        # Guess ("removed?") from the edge's latest measured effect (stale: another tau, or another
        # circuit); never measured: removed (most edges are).
        guess = [self._removes(self._effect[e], tau) if e in self._effect else True for e in edges]
        chunk = max(1, engine.chunk_size())
        i = 0
        while i < len(edges):
            # Speculate about as far as guesses have tended to hold (rows past a wrong guess are wasted).
            right, wrong = self._stats["right"], self._stats["wrong"]
            window = min(chunk, max(self.min_window, int(2 * (right + wrong + 1) / (wrong + 1))))
            todo = list(range(i, min(len(edges), i + window)))
            trials = mask.repeat(len(todo), 1)
            path = mask.clone()  # the circuit along the guessed decisions
            for row, j in enumerate(todo):
                trials[row] = path
                trials[row, edges[j]] = 0.0
                if guess[j]:
                    path[edges[j]] = 0.0
            losses = self._evaluate(engine, loss_fn, step.layer, trials)
            base, exact = current, True  # base: loss of the guessed circuit trial `row` started from
            for row, j in enumerate(todo):
                self._effect[edges[j]] = losses[row] - base
                removed = self._removes(losses[row] - base, tau)
                if exact:
                    i += 1
                    if removed:
                        mask[edges[j]] = 0.0
                        current = losses[row]
                    exact = removed == guess[j]
                    self._stats["right" if exact else "wrong"] += 1
                if guess[j]:
                    base = losses[row]
                if not exact:  # later edges: guess from this batch's (stale) effect
                    guess[j] = removed
        return current

    def _evaluate(self, engine, loss_fn, layer: int, trials: torch.Tensor) -> list[float]:
        """Losses of the trial masks; masks seen before (e.g. at another tau) are not re-run."""
        keys = [hashlib.blake2b(np.packbits(t.cpu().numpy() > 0.5).tobytes(), digest_size=16).digest()
                for t in trials]
        todo = [k for k, key in enumerate(keys) if key not in self._losses]
        if todo:
            fresh = engine.evaluate_from(layer, trials[todo], loss_fn).tolist()
            self._losses.update((keys[k], v) for k, v in zip(todo, fresh))
            self._stats["passes"] += 1
        self._stats["trials"] += len(todo)
        self._stats["cached"] += len(keys) - len(todo)
        return [self._losses[key] for key in keys]


class NaiveACDC(ACDC):
    """Reference implementation: one full ``engine.run`` per trial, no batching, no restarts."""

    name = "acdc-naive"

    def _initial_loss(self, engine, loss_fn) -> float:
        self._stats["passes"] += 1
        return float(loss_fn(engine.run(engine.full_mask()))[0])

    def _receiver(self, engine, loss_fn, step, mask, current, tau):
        for e in step.edges:
            trial = mask.clone()
            trial[e] = 0.0
            loss = float(loss_fn(engine.run(trial))[0])
            self._stats["passes"] += 1
            self._stats["trials"] += 1
            if self._removes(loss - current, tau):
                mask[e] = 0.0
                current = loss
        return current

