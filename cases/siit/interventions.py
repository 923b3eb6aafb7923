"""Interchange interventions on any ``HookedRootModule`` through named node locations.

``capture(model, tokens, locs)`` runs the source input and returns each location's value;
``patched_forward(model, tokens, patches)`` runs the base input with some rows of some locations
overwritten by those values. One patch is ``(loc, rows, value)``: ``rows`` is a slice of the batch
(so several interventions share one forward pass on a concatenated batch) and ``value`` the source
activation for those rows (the full hook tensor; the head index of ``loc`` picks dim 2).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch

from cases.siit.correspondence import NodeLoc

Patch = tuple[NodeLoc, slice, torch.Tensor]


def capture(model, tokens: torch.Tensor, hooks: Iterable[str], grad: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(output, {hook name: activation}) of one forward pass; activations are detached unless ``grad``."""
    store: dict[str, torch.Tensor] = {}

    def save(x, hook):
        store[hook.name] = x if grad else x.detach()

    names = sorted(set(hooks))
    with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        out = model.run_with_hooks(tokens, fwd_hooks=[(n, save) for n in names])
    return out, store


def patched_forward(model, tokens: torch.Tensor, patches: Sequence[Patch]) -> torch.Tensor:
    """The model's output on ``tokens`` with every patch applied (rows and head as in the patch)."""
    by_hook: dict[str, list[tuple[int | None, slice, torch.Tensor]]] = {}
    for loc, rows, value in patches:
        by_hook.setdefault(loc.hook, []).append((loc.head, rows, value))

    def make_hook(items):
        def hook_fn(x, hook):
            x = x.clone()
            for head, rows, value in items:
                if head is None:
                    x[rows] = value.to(x.dtype)
                else:
                    x[rows, :, head] = value[:, :, head].to(x.dtype)
            return x
        return hook_fn

    if not by_hook:
        return model(tokens)
    return model.run_with_hooks(tokens, fwd_hooks=[(h, make_hook(items)) for h, items in by_hook.items()])


def interchange(model, base: torch.Tensor, source: torch.Tensor, locs: Sequence[NodeLoc]) -> torch.Tensor:
    """Output on ``base`` with every location in ``locs`` taken from the run on ``source``."""
    _, cache = capture(model, source, [loc.hook for loc in locs])
    rows = slice(0, base.shape[0])
    return patched_forward(model, base, [(loc, rows, cache[loc.hook]) for loc in locs])
