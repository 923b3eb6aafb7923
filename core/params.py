"""Model parameters held fixed while a method differentiates in its own tensors (gates, probes, constants)."""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def frozen_parameters(model: torch.nn.Module):
    """The model's parameters without ``requires_grad`` inside the block (restored after, also on error):
    a pass that differentiates only in its own tensors records no graph through the weights, and the
    fast path keeps its cached folded weights and MLP compactions. Parameters frozen before stay frozen."""
    tracked = [p for p in model.parameters() if p.requires_grad]
    for p in tracked:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in tracked:
            p.requires_grad_(True)
