"""A word-level tokenizer over a case's own vocabulary (no download, no BPE): the IOI generator's
words and the sentiment direction case's (``cases.ioi.data``, ``cases.direction.data``).

Text is split on whitespace with punctuation (``, . ! ?``) split off as tokens of its own, so
``"Then, Mary went"`` -> ``["Then", ",", "Mary", "went"]``. Ids are fixed by the vocabulary list:
``[BOS]`` is 0, ``[PAD]`` 1, ``[UNK]`` 2, then the words. Every name is one token, so the IO and S
answers are single logits. Saved as JSON next to the model (``tokenizer.json``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable, Sequence

import torch

BOS, PAD, UNK = "[BOS]", "[PAD]", "[UNK]"
SPECIALS = (BOS, PAD, UNK)
_SPLIT = re.compile(r"[A-Za-z0-9']+|[^\sA-Za-z0-9']")


def split_words(text: str) -> list[str]:
    """``"Then, Mary went."`` -> ``["Then", ",", "Mary", "went", "."]`` (punctuation split off)."""
    return _SPLIT.findall(text)


class WordTokenizer:
    """Word-level tokenizer: ``encode(text) -> ids`` (BOS prepended by default), ``decode(ids) -> text``."""

    def __init__(self, words: Iterable[str], names: Iterable[str] = ()):
        vocab = list(SPECIALS)
        seen = set(vocab)
        for w in words:
            if w in seen:
                continue
            if not _SPLIT.fullmatch(w):
                raise ValueError(f"vocabulary entry {w!r} is not a single word or punctuation mark")
            vocab.append(w)
            seen.add(w)
        self.vocab: list[str] = vocab
        self.index: dict[str, int] = {w: i for i, w in enumerate(vocab)}
        self.names: tuple[str, ...] = tuple(names)
        missing = [n for n in self.names if n not in self.index]
        if missing:
            raise ValueError(f"names not in the vocabulary: {missing[:5]}")

    # ---- ids ------------------------------------------------------------------------------------
    @property
    def bos_id(self) -> int:
        return self.index[BOS]

    @property
    def pad_id(self) -> int:
        return self.index[PAD]

    @property
    def unk_id(self) -> int:
        return self.index[UNK]

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def name_ids(self) -> list[int]:
        return [self.index[n] for n in self.names]

    def token_id(self, word: str) -> int:
        try:
            return self.index[word]
        except KeyError:
            raise KeyError(f"{word!r} is not in the IOI vocabulary ({len(self)} tokens)") from None

    # ---- text <-> ids -----------------------------------------------------------------------------
    def tokenize(self, text: str, prepend_bos: bool = True) -> list[str]:
        words = split_words(text)
        return ([BOS] if prepend_bos else []) + words

    def encode(self, text: str, prepend_bos: bool = True, strict: bool = True) -> list[int]:
        """Token ids of ``text``; unknown words raise (``strict``) or map to ``[UNK]``."""
        out = []
        for w in self.tokenize(text, prepend_bos):
            if w in self.index:
                out.append(self.index[w])
            elif strict:
                raise KeyError(f"{w!r} is not in the IOI vocabulary")
            else:
                out.append(self.unk_id)
        return out

    def encode_batch(self, texts: Sequence[str], prepend_bos: bool = True, pad_to: int | None = None) -> torch.Tensor:
        """``[n, seq]`` ids, right-padded with ``[PAD]`` to the longest text (or ``pad_to``)."""
        rows = [self.encode(t, prepend_bos) for t in texts]
        width = max([len(r) for r in rows] + [pad_to or 0])
        return torch.tensor([r + [self.pad_id] * (width - len(r)) for r in rows], dtype=torch.long)

    def decode(self, ids: Iterable[int] | torch.Tensor, skip_special: bool = True) -> str:
        """Text of ``ids``: words joined by spaces, no space before punctuation."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        words = [self.vocab[i] for i in ids]
        if skip_special:
            words = [w for w in words if w not in SPECIALS]
        text = ""
        for w in words:
            if text and not re.fullmatch(r"[^\sA-Za-z0-9']", w):
                text += " "
            text += w
        return text

    # ---- persistence ------------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"schema": 1, "type": "word-level", "vocab": self.vocab, "names": list(self.names),
                "specials": {"bos": BOS, "pad": PAD, "unk": UNK}}

    @classmethod
    def from_json(cls, d: dict) -> "WordTokenizer":
        if d.get("type") != "word-level":
            raise ValueError(f"not an IOI word-level tokenizer: type {d.get('type')!r}")
        vocab = list(d["vocab"])
        if tuple(vocab[:3]) != SPECIALS:
            raise ValueError(f"tokenizer vocabulary must start with {SPECIALS}, got {vocab[:3]}")
        return cls(vocab[3:], d.get("names", ()))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "WordTokenizer":
        return cls.from_json(json.loads(Path(path).read_text()))
