"""The data that crosses module borders: a case's dataset and the problem a method solves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch

OutputType = Literal["categorical", "numerical"]


@dataclass
class CaseData:
    """Clean and corrupted token tensors with labels, all ``[n, seq]``.

    ``clean_labels`` / ``corrupted_labels``: for categorical outputs the index of the correct logit
    (``-100`` where there is no label, e.g. BOS or a None output); for numerical outputs the target
    value (NaN where there is none). ``mask`` marks the positions that metrics score (e.g. every
    non-BOS position for Tracr cases, the last position for IOI). ``meta`` holds anything a case wants
    to keep with the data (raw inputs, names); it is not used by the core. ``wrong_labels`` (optional,
    ``[n, seq]``, -100 = none): the wrong answer whose logit the ``logit-diff`` metric subtracts from
    the label's (IOI: the subject S; a file case: each line's ``wrong``).
    """

    clean: torch.Tensor
    corrupted: torch.Tensor
    clean_labels: torch.Tensor
    corrupted_labels: torch.Tensor
    mask: torch.Tensor
    seed: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    corrupted_pos: torch.Tensor | None = None
    wrong_labels: torch.Tensor | None = None

    def __post_init__(self) -> None:
        shapes = {t.shape for t in (self.clean, self.corrupted, self.clean_labels,
                                    self.corrupted_labels, self.mask)}
        if len(shapes) != 1 or len(self.clean.shape) != 2:
            raise ValueError(f"CaseData tensors must all be [n, seq]; got shapes {sorted(map(tuple, shapes))}")
        if self.mask.dtype != torch.bool:
            self.mask = self.mask.bool()
        if self.corrupted_pos is not None and self.corrupted_pos.shape != self.clean.shape:
            raise ValueError(f"corrupted_pos must be [n, seq] like the tokens, got {tuple(self.corrupted_pos.shape)}")
        if self.wrong_labels is not None and self.wrong_labels.shape != self.clean.shape:
            raise ValueError(f"wrong_labels must be [n, seq] like the tokens, got {tuple(self.wrong_labels.shape)}")

    def __len__(self) -> int:
        return self.clean.shape[0]

    def to(self, device: str | torch.device) -> "CaseData":
        pos = None if self.corrupted_pos is None else self.corrupted_pos.to(device)
        wrong = None if self.wrong_labels is None else self.wrong_labels.to(device)
        return CaseData(self.clean.to(device), self.corrupted.to(device), self.clean_labels.to(device),
                        self.corrupted_labels.to(device), self.mask.to(device), self.seed, self.meta, pos, wrong)

    def subset(self, idx) -> "CaseData":
        pos = None if self.corrupted_pos is None else self.corrupted_pos[idx]
        wrong = None if self.wrong_labels is None else self.wrong_labels[idx]
        return CaseData(self.clean[idx], self.corrupted[idx], self.clean_labels[idx],
                        self.corrupted_labels[idx], self.mask[idx], self.seed, self.meta, pos, wrong)
