"""Seeded IOI prompt generator with our own templates, word lists and a real counterfactual.

A prompt names two people, the subject S (mentioned twice) and the indirect object IO (once), and
ends just before the IO: "Then, Mary and John went to the park. John gave the ball to" -> Mary.

Template families (every one is exactly 15 words, 16 tokens with BOS, so every prompt of every
family has the same length, the answer is always predicted at the last position, and positional
embeddings are identical across prompts). Each family has two orders of the first mention (S first
"ABBA"-like, IO first "BABA"-like):

========  =========================================================================
then      Then, [A] and [B] went to the [PLACE]. [S] gave the [OBJECT] to
when      When [A] and [B] got a [OBJECT] at the [PLACE], [S] gave it to
working   [A] and [B] were working at the [PLACE], then [S] handed the [OBJECT] to
while     While [A] was at the [PLACE] with [B], [S] quickly passed the [OBJECT] to
========  =========================================================================

Corruptions (``corrupt``): ``"abc"`` replaces the second mention of S by a third name C, so the
prompt no longer says who the IO is (nobody is mentioned twice); ``"resample"`` replaces IO and S by
two fresh names everywhere (same template, place and object), so the answer changes.

Splits: a prompt's split is a fixed function of its text (a SHA-256 bucket; 20% "test"), so the
train and test sets are disjoint whatever the seeds and sizes; within a call prompts are unique.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Iterable, Sequence

import torch

from cases.tokenizer import WordTokenizer, split_words

NAMES: tuple[str, ...] = (
    "Mary", "John", "Alice", "Bob", "Clara", "David", "Emma", "Frank", "Grace", "Henry", "Irene", "Jack",
    "Karen", "Louis", "Maria", "Nathan", "Olivia", "Peter", "Quinn", "Rachel", "Samuel", "Tina", "Victor",
    "Wendy", "Xavier", "Yvonne", "Zach", "Anna", "Brian", "Chloe", "Daniel", "Ella", "Felix", "Gina",
    "Hugo", "Ivy", "Jonas", "Kate", "Leo", "Mia", "Noah", "Oscar", "Paula", "Rita", "Simon", "Tom",
    "Uma", "Vera",
)
PLACES: tuple[str, ...] = ("store", "market", "park", "school", "office", "library", "garden", "station",
                           "river", "beach", "cafe", "museum")
OBJECTS: tuple[str, ...] = ("ball", "book", "key", "ring", "drink", "bag", "kite", "card", "pen", "hat",
                            "cake", "box")

# Slots: S1/S2 = first/second mention of the subject, IO = indirect object; {A} and {B} are filled
# with (S1, IO) or (IO, S1) depending on the order.
FAMILIES: dict[str, str] = {
    "then": "Then, {A} and {B} went to the {PLACE}. {S2} gave the {OBJECT} to",
    "when": "When {A} and {B} got a {OBJECT} at the {PLACE}, {S2} gave it to",
    "working": "{A} and {B} were working at the {PLACE}, then {S2} handed the {OBJECT} to",
    "while": "While {A} was at the {PLACE} with {B}, {S2} quickly passed the {OBJECT} to",
}
ORDERS = ("S_first", "IO_first")
SEQ_LEN = 16          # BOS + 15 words, for every family
TEST_FRACTION = 0.2
CORRUPTIONS = ("abc", "resample")
IGNORE = -100


@dataclass(frozen=True)
class IOIPrompt:
    """One prompt: template family and order, the names (``c`` = the third name of its ABC twin)."""

    family: str
    order: str
    io: str
    s: str
    place: str
    obj: str
    s2: str | None = None  # the second mention; None = s (a clean prompt); another name = ABC

    @property
    def text(self) -> str:
        a, b = (self.s, self.io) if self.order == "S_first" else (self.io, self.s)
        return FAMILIES[self.family].format(A=a, B=b, S2=self.s2 or self.s, PLACE=self.place, OBJECT=self.obj)

    @property
    def is_abc(self) -> bool:
        return self.s2 is not None and self.s2 != self.s

    def names(self) -> tuple[str, ...]:
        return (self.io, self.s) + ((self.s2,) if self.is_abc else ())


def vocabulary() -> list[str]:
    """Every word the generator can produce: template words and punctuation, names, places, objects."""
    words: list[str] = []
    for t in FAMILIES.values():
        for w in split_words(t.replace("{", " ").replace("}", " ")):
            if w not in ("A", "B", "S2", "PLACE", "OBJECT") and w not in words:
                words.append(w)
    return words + list(NAMES) + list(PLACES) + list(OBJECTS)


@lru_cache(maxsize=1)
def build_tokenizer() -> WordTokenizer:
    """The tokenizer of the generator's vocabulary (the shipped models save the same one)."""
    return WordTokenizer(vocabulary(), NAMES)


def split_of(prompt: IOIPrompt | str) -> str:
    """``"train"`` or ``"test"``: a fixed function of the clean prompt's text."""
    text = prompt.text if isinstance(prompt, IOIPrompt) else prompt
    h = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    return "test" if (h % 1000) < TEST_FRACTION * 1000 else "train"


def _random_prompt(rng: random.Random, families: Sequence[str]) -> IOIPrompt:
    io, s = rng.sample(NAMES, 2)
    return IOIPrompt(rng.choice(list(families)), rng.choice(ORDERS), io, s, rng.choice(PLACES), rng.choice(OBJECTS))


def sample_prompts(n: int, seed: int = 0, split: str = "train", families: Iterable[str] | None = None) -> list[IOIPrompt]:
    """``n`` distinct clean prompts of ``split`` (``"train"``, ``"test"`` or ``"all"``), deterministic in ``seed``."""
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be train, test or all, got {split!r}")
    families = tuple(families or FAMILIES)
    unknown = set(families) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown template families {sorted(unknown)}; known: {', '.join(FAMILIES)}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(f"ioi-prompts-{seed}-{split}-{','.join(families)}")
    out: list[IOIPrompt] = []
    seen: set[str] = set()
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 50 * n + 1000:
            raise RuntimeError(f"could only draw {len(out)} distinct {split} prompts (asked for {n})")
        p = _random_prompt(rng, families)
        if p.text in seen or (split != "all" and split_of(p) != split):
            continue
        seen.add(p.text)
        out.append(p)
    return out


def corrupt(prompts: Sequence[IOIPrompt], kind: str = "abc", seed: int = 0) -> list[IOIPrompt]:
    """The counterfactual twin of every prompt (same family, order, place and object).

    ``abc``: the second mention of S becomes a third name C (C not in {IO, S}).
    ``resample``: IO and S become two fresh names (neither is the old IO or S).
    """
    if kind not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {kind!r}; expected one of {', '.join(CORRUPTIONS)}")
    rng = random.Random(f"ioi-corrupt-{kind}-{seed}")
    out = []
    for p in prompts:
        others = [x for x in NAMES if x not in (p.io, p.s)]
        if kind == "abc":
            out.append(replace(p, s2=rng.choice(others)))
        else:
            io, s = rng.sample(others, 2)
            out.append(replace(p, io=io, s=s, s2=None))
    return out


@dataclass
class IOIBatch:
    """Token tensors and answer ids of a list of prompts: ``tokens [n, 16]``, ``io``/``s`` ``[n]``."""

    prompts: list[IOIPrompt]
    tokens: torch.Tensor
    io: torch.Tensor
    s: torch.Tensor

    def __len__(self) -> int:
        return len(self.prompts)


def encode(prompts: Sequence[IOIPrompt], tokenizer: WordTokenizer | None = None) -> IOIBatch:
    tok = tokenizer or build_tokenizer()
    tokens = tok.encode_batch([p.text for p in prompts]) if prompts else torch.zeros(0, SEQ_LEN, dtype=torch.long)
    if tokens.shape[1] != SEQ_LEN:
        raise AssertionError(f"IOI prompts must be {SEQ_LEN} tokens, got {tokens.shape[1]}")
    io = torch.tensor([tok.token_id(p.io) for p in prompts], dtype=torch.long)
    s = torch.tensor([tok.token_id(p.s) for p in prompts], dtype=torch.long)
    return IOIBatch(list(prompts), tokens, io, s)


def last_position_labels(values: torch.Tensor, seq_len: int = SEQ_LEN) -> torch.Tensor:
    """``[n]`` ids -> ``[n, seq]`` labels with the id at the last position and -100 elsewhere."""
    out = torch.full((values.shape[0], seq_len), IGNORE, dtype=torch.long)
    out[:, -1] = values
    return out
