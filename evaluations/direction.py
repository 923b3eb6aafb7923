"""Scores of a found direction û against a case's true direction u* at the site s*.

- ``abs_cos``: |cos(û, u*)| (both unit-normed; the sign is arbitrary);
- directional patching at s* only: run the base input with a <- a + ((a_cf - a).û) û at s*, where the
  counterfactual a_cf comes from an input of the opposite label. ``flip_fraction`` is the share of
  pairs whose prediction becomes the counterfactual's label; with LD = logit(cf label) - logit(base label),
  ``D = mean(LD_patched - LD_base) / mean(LD_cf - LD_base)`` (0: no effect, 1: the full counterfactual);
- controls: the same patch along u* itself (~1), along the normalised 'ortho' residual of û
  (û - (û.u*) u*, ~0 when the case is strict) and along a seeded random direction (~0).

Every run of the model goes through the one site-patching mechanism (``core.patching.capture`` /
``patched_forward``) at the location ``NodeLoc(hook_name)``.

``leaderboard_rows`` / ``to_markdown`` / ``to_csv`` / ``to_html`` / ``plot_directions`` turn result
documents of ``run <direction-method>`` into the direction leaderboard (tables by ``evaluations.tables``).
"""

from __future__ import annotations

import html
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from core.naming import NodeLoc
from core.patching import capture, patched_forward
from evaluations.plots import _plt, _save
from evaluations.tables import csv_table, html_table, markdown_table


@dataclass
class PatchSite:
    """The model and where to patch: ``hook_name`` at ``position``; ``answer_ids`` = (negative, positive)."""

    model: Any
    hook_name: str
    position: int
    answer_ids: tuple[int, int]

    @property
    def loc(self) -> NodeLoc:
        return NodeLoc(self.hook_name)

    def at_position(self, change: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        """A site-patch value: the activation rows with ``change(rows at s*)`` written at ``position``."""
        def value(act: torch.Tensor) -> torch.Tensor:
            act = act.clone()
            act[:, self.position] = change(act[:, self.position])
            return act
        return value


@dataclass
class PatchEffect:
    flip_fraction: float
    D: float
    ld_base: float  # mean LD (toward the counterfactual label) of the unpatched base runs
    ld_cf: float  # mean LD of the counterfactual runs
    ld_patched: float

    def to_json(self) -> dict[str, float]:
        return asdict(self)


def abs_cos(u_hat: torch.Tensor, u_star: torch.Tensor) -> float:
    u_hat, u_star = u_hat.flatten().float(), u_star.flatten().float()
    return float(abs(u_hat @ u_star) / (torch.linalg.vector_norm(u_hat) * torch.linalg.vector_norm(u_star)))


def ortho_residual(u_hat: torch.Tensor, u_star: torch.Tensor, eps: float = 1e-6) -> torch.Tensor | None:
    """The normalised part of û orthogonal to u*, or None when û is (numerically) u* itself."""
    u_star = u_star / torch.linalg.vector_norm(u_star)
    u_hat = u_hat / torch.linalg.vector_norm(u_hat)
    r = u_hat - (u_hat @ u_star) * u_star
    n = torch.linalg.vector_norm(r)
    return None if n < eps else r / n


def random_unit(d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(d, generator=g)
    return v / torch.linalg.vector_norm(v)


@torch.no_grad()
def _answer_logits(site: PatchSite, tokens: torch.Tensor, change=None) -> torch.Tensor:
    """Answer logits (n, 2); with ``change``, the activation at s* is ``change(activation at s*)``."""
    patches = [(site.loc, slice(None), site.at_position(change))] if change is not None else []
    logits = patched_forward(site.model, tokens, patches)[:, -1]
    return logits[:, list(site.answer_ids)]


@torch.no_grad()
def activations_at(site: PatchSite, tokens: torch.Tensor) -> torch.Tensor:
    """(n, d_model) activations at ``hook_name``/``position``."""
    _, store = capture(site.model, tokens, [site.hook_name])
    return store[site.hook_name][:, site.position].clone()


@torch.no_grad()
def directional_patch(site: PatchSite, tokens: torch.Tensor, labels: torch.Tensor, pairs: torch.Tensor,
                      direction: torch.Tensor | None) -> PatchEffect:
    """Patch the projection on ``direction`` from each example's counterfactual ``pairs[i]`` at s* only.
    ``direction=None`` is the zero patch (D = 0 by definition)."""
    return _patch(site, tokens, labels, pairs, direction, activations_at(site, tokens), _answer_logits(site, tokens))


@torch.no_grad()
def _patch(site: PatchSite, tokens: torch.Tensor, labels: torch.Tensor, pairs: torch.Tensor,
           direction: torch.Tensor | None, acts: torch.Tensor, base: torch.Tensor) -> PatchEffect:
    """``directional_patch`` given the unpatched activations at s* and answer logits."""
    y_cf = labels[pairs]
    rows = torch.arange(len(labels))

    def ld(logits):  # logit(cf label) - logit(base label)
        return logits[rows, y_cf] - logits[rows, labels]
    ld_base, ld_cf = ld(base), ld(base[pairs])
    if direction is None:
        patched = base
    else:
        u = (direction / torch.linalg.vector_norm(direction)).to(acts.dtype)
        delta = ((acts[pairs] - acts) @ u)[:, None] * u[None, :]
        patched = _answer_logits(site, tokens, lambda a: a + delta)
    ld_p = ld(patched)
    denom = float((ld_cf - ld_base).mean())
    D = float((ld_p - ld_base).mean()) / denom if abs(denom) > 1e-9 else math.nan
    flips = float((patched.argmax(-1) == y_cf).float().mean())
    return PatchEffect(flips, D, float(ld_base.mean()), float(ld_cf.mean()), float(ld_p.mean()))


def score_direction(site: PatchSite, tokens: torch.Tensor, labels: torch.Tensor, pairs: torch.Tensor,
                    u_hat: torch.Tensor, u_star: torch.Tensor, seed: int = 0) -> dict[str, Any]:
    """Every metric of one found direction, with the u*, ortho and random controls (the unpatched
    activations and logits are computed once for all four patches)."""
    with torch.no_grad():
        acts, base = activations_at(site, tokens), _answer_logits(site, tokens)

    def effect(direction):
        return _patch(site, tokens, labels, pairs, direction, acts, base)
    main = effect(u_hat)
    ortho_eff = effect(ortho_residual(u_hat, u_star))
    star = effect(u_star)
    rnd = effect(random_unit(u_star.numel(), 7919 + seed))
    base_acc = float((base.argmax(-1) == labels).float().mean())
    return {"abs_cos": abs_cos(u_hat, u_star), "flip_fraction": main.flip_fraction, "D": main.D,
            "ortho_D": ortho_eff.D, "ortho_flip_fraction": ortho_eff.flip_fraction,
            "ortho_norm": math.sqrt(max(0.0, 1.0 - abs_cos(u_hat, u_star) ** 2)),
            "ustar_D": star.D, "ustar_flip_fraction": star.flip_fraction,
            "random_D": rnd.D, "random_flip_fraction": rnd.flip_fraction,
            "model_accuracy": base_acc, "n_pairs": int(len(labels)), "patch": main.to_json()}


# ---------------------------------------------------------------------------------------------------
# Leaderboard
# ---------------------------------------------------------------------------------------------------

COLUMNS = ("method", "seed", "abs_cos", "flip_fraction", "D", "ortho_D", "seconds")
HEADERS = {"method": "method", "seed": "seed", "abs_cos": "|cos|", "flip_fraction": "flip", "D": "D",
           "ortho_D": "ortho D", "seconds": "seconds"}


def leaderboard_rows(docs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per result document (finished ones), best |cos| first."""
    rows = []
    for d in docs:
        if d.get("status") != "ok":
            continue
        m = d.get("metrics") or {}
        rows.append({"case": d.get("case"), "model": d.get("model"), "method": d.get("method"), "seed": d.get("seed"),
                     **{k: m.get(k) for k in ("abs_cos", "flip_fraction", "D", "ortho_D")},
                     "seconds": (d.get("timing") or {}).get("fit_seconds")})
    return sorted(rows, key=lambda r: (str(r["case"]), -(r["abs_cos"] if r["abs_cos"] is not None else -1),
                                       str(r["method"])))


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "nan"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def cell(row: Mapping[str, Any], column: str) -> str:
    """A leaderboard cell's text (``evaluations.tables`` cell function)."""
    return _cell(row.get(column))


def to_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    return markdown_table(rows, COLUMNS, cell, HEADERS)


def to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    return csv_table(rows, ("case", "model") + COLUMNS, lambda r, c: r.get(c))


def to_html(rows: Sequence[Mapping[str, Any]], title: str = "Direction leaderboard", plot: str | None = None) -> str:
    table = html_table(rows, COLUMNS, cell, HEADERS, attrs=" border='1'", sections=False, th_attrs="")
    img = f'<p><img src="{html.escape(plot)}" alt="plot"></p>' if plot else ""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
            f"<h1>{html.escape(title)}</h1>{table}{img}</body></html>\n")


def plot_directions(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike, title: str = "") -> Path:
    """Grouped bars per method: |cos(û, u*)| and flip fraction."""
    plt = _plt()
    names = [f"{r['method']}" + (f" s{r['seed']}" if r.get("seed") not in (None, 0) else "") for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(rows) + 1), 3.5))
    for off, key, label in ((-0.2, "abs_cos", "|cos(û, u*)|"), (0.2, "flip_fraction", "flip fraction")):
        ax.bar(x + off, [r.get(key) or 0.0 for r in rows], width=0.4, label=label)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set(ylim=(0, 1.05), title=title or "direction methods")
    ax.axhline(1.0, ls=":", color="grey", lw=1)
    ax.legend(fontsize=8, loc="upper right")
    return _save(fig, path)
