"""The high-level (HL) causal model of IOI, as a ``HookedRootModule`` that supports interchanges.

Nodes (hook names), each computed per position s from the values before it (causal):

``hook_input``        the tokens ``[b, s]``.
``hook_duplicate``    duplicate-token head: ``dup[s]`` = index of the most recent earlier position
                      with the same token, else -1 ``[b, s]``.
``hook_s_inhibition`` S-inhibition: ``inh[s]`` = the name at the most recent position t <= s that the
                      duplicate node flags (``dup[t] >= 0``), read from the *input* (so patched flags
                      point into the base prompt), else -1 ``[b, s]``. At the last position of a clean
                      prompt this is S (flagged at S2), as the S-inhibition heads of real IOI carry S
                      from S2 to END.
``hook_name_mover``   name mover: the name it moves to the output ``[b, s]``. Every name in the
                      context up to s scores +10 per mention, and the name ``inh[s]`` (at the same
                      position: the name mover's query) scores -15; the answer is the unique
                      best-scoring name, else -1 (undefined: several names tie, as in an ABC prompt,
                      or no name yet).

Output: a one-hot ``[b, s, d_vocab]`` of the name mover's answer (all zero where it is undefined);
:func:`hl_labels` turns it into label ids with -100 for "undefined".

On a clean prompt (S twice, IO once) the last position gives IO (10) over S (20 - 15 = 5). On an ABC
prompt nobody is inhibited and the three names tie: undefined. Interchanging S-inhibition from an
ABC source removes the inhibition of S, so the base answer flips to S (20 vs 10); interchanging it
from a prompt with another subject inhibits a name that is not there, which also gives S.

What the reference HL got wrong and this one fixes (interpbench.md §2.3, §8.5): name ids are the
shipped tokenizer's own ids (no leading-space mismatch), only names present in the context are
candidates, ties are reported as undefined instead of the lowest token id winning, and S-inhibition
reads the token at the (possibly patched) duplicate flags. Inhibition acts at the name mover's own
position (its query), not through the keys/values at S2: trained models do it that way (EXPERIMENTS
§4), so the ground truth of ``cases.ioi.circuit`` follows.
"""

from __future__ import annotations

from typing import Iterable

import torch
from transformer_lens.hook_points import HookedRootModule, HookPoint

from cases.ioi.circuit import HL_EDGES, HL_NODES  # noqa: F401  (HL node -> hook name; defined with the correspondence)
from cases.ioi.data import build_tokenizer

NAME_SCORE, INHIBIT_SCORE = 10.0, -15.0
IGNORE = -100

def duplicate_index(tokens: torch.Tensor) -> torch.Tensor:
    """``[b, s]``: index of the most recent earlier position holding the same token, else -1."""
    b, n = tokens.shape
    same = tokens[:, :, None] == tokens[:, None, :]                      # [b, s, j]
    earlier = torch.ones(n, n, dtype=torch.bool, device=tokens.device).tril(-1)
    idx = torch.arange(n, device=tokens.device).expand(b, n, n)
    return torch.where(same & earlier, idx, torch.full_like(idx, -1)).amax(-1)


def token_at(tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``tokens[b, index[b, s]]`` where ``index >= 0``, else -1."""
    safe = index.long().clamp(0, tokens.shape[1] - 1)
    return torch.where(index >= 0, tokens.gather(1, safe), torch.full_like(safe, -1))


def inhibited_name(tokens: torch.Tensor, dup: torch.Tensor, is_name: torch.Tensor) -> torch.Tensor:
    """``[b, s]``: the token at the most recent position t <= s with ``dup[t] >= 0`` holding a name, else -1."""
    n = tokens.shape[1]
    flagged = (dup >= 0) & is_name.to(tokens.device)[tokens.long().clamp(0, is_name.numel() - 1)]
    pos = torch.arange(n, device=tokens.device).expand_as(tokens)
    last = torch.where(flagged, pos, torch.full_like(pos, -1)).cummax(1).values
    return token_at(tokens, last)


class IOIHighLevelModel(HookedRootModule):
    """The IOI causal model; ``name_ids`` are the tokenizer ids of the names, ``d_vocab`` its size."""

    def __init__(self, name_ids: Iterable[int], d_vocab: int):
        super().__init__()
        self.d_vocab = int(d_vocab)
        is_name = torch.zeros(self.d_vocab, dtype=torch.bool)
        is_name[list(name_ids)] = True
        self.register_buffer("is_name", is_name, persistent=False)
        self.hook_input = HookPoint()
        self.hook_duplicate = HookPoint()
        self.hook_s_inhibition = HookPoint()
        self.hook_name_mover = HookPoint()
        self.setup()

    # ---- the mechanisms ---------------------------------------------------------------------------
    def name_mover(self, tokens: torch.Tensor, inh: torch.Tensor) -> torch.Tensor:
        """``[b, s]``: the unique best name in the context up to s (see the module doc), else -1."""
        v = self.d_vocab
        is_name = self.is_name.to(tokens.device)
        mentions = torch.nn.functional.one_hot(tokens.long().clamp(0, v - 1), v).float() * is_name
        inh_l = inh.long()
        inhibited = torch.nn.functional.one_hot(inh_l.clamp(0, v - 1), v).float() * (inh_l >= 0)[..., None] * is_name
        count = mentions.cumsum(1)
        score = NAME_SCORE * count + INHIBIT_SCORE * inhibited
        score = torch.where(count > 0, score, torch.full_like(score, float("-inf")))
        best, arg = score.max(-1)
        n_best = (score == best[..., None]).sum(-1)
        ok = torch.isfinite(best) & (n_best == 1)
        return torch.where(ok, arg, torch.full_like(arg, -1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.hook_input(tokens)
        dup = self.hook_duplicate(duplicate_index(x))
        inh = self.hook_s_inhibition(inhibited_name(x, dup, self.is_name))
        answer = self.hook_name_mover(self.name_mover(x, inh))
        answer = answer.long()
        out = torch.nn.functional.one_hot(answer.clamp_min(0), self.d_vocab).float()
        return out * (answer >= 0)[..., None]

    def labels(self, out: torch.Tensor) -> torch.Tensor:
        """Targets for the SIIT trainer: the answer's id, -100 (not scored) where there is none."""
        return hl_labels(out)

    @torch.no_grad()
    def predict(self, tokens: torch.Tensor) -> torch.Tensor:
        """Label ids ``[b, s]`` (-100 where the answer is undefined)."""
        return hl_labels(self(tokens))


def hl_labels(out: torch.Tensor) -> torch.Tensor:
    """One-hot HL output ``[b, s, v]`` -> ids ``[b, s]``, -100 where no name is given."""
    return torch.where(out.sum(-1) > 0, out.argmax(-1), torch.full(out.shape[:-1], IGNORE, dtype=torch.long,
                                                                   device=out.device))


def build_hl_model(tokenizer=None) -> IOIHighLevelModel:
    """The HL model for the IOI tokenizer (the generator's by default)."""
    if tokenizer is None:
        tokenizer = build_tokenizer()
    return IOIHighLevelModel(tokenizer.name_ids, len(tokenizer))
