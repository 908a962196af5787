"""The recommender contract shared by every model: MMRec/RecBole's shape.

The trainer calls ``pre_epoch()`` once per epoch, then ``calculate_loss(batch)`` per mini-batch;
the evaluator calls ``full_sort_predict(users)`` inside ``torch.no_grad()`` after ``eval()``.
Models never load files and never pick a device themselves: the trainer moves them with ``.to()``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class BprBatch:
    """One mini-batch of BPR triples: user ``u`` prefers positive item ``i`` over negative ``j``."""

    users: torch.Tensor
    pos_items: torch.Tensor
    neg_items: torch.Tensor

    def to(self, device: torch.device) -> "BprBatch":
        return BprBatch(
            self.users.to(device, non_blocking=True),
            self.pos_items.to(device, non_blocking=True),
            self.neg_items.to(device, non_blocking=True),
        )


@dataclass(frozen=True)
class ModelInputs:
    """What a model may learn from: sizes, the training pairs and the item features per modality."""

    n_users: int
    n_items: int
    train_pairs: np.ndarray
    features: dict[str, np.ndarray]


class Recommender(nn.Module):
    """Base class: subclasses implement ``calculate_loss`` and ``full_sort_predict``."""

    def pre_epoch(self) -> None:
        """Hook run before each training epoch (e.g. to refresh a cached basis)."""

    def calculate_loss(self, batch: BprBatch) -> dict[str, torch.Tensor]:
        """Loss terms of one batch; key ``loss`` holds the total that is back-propagated."""
        raise NotImplementedError

    def full_sort_predict(self, users: torch.Tensor) -> torch.Tensor:
        """Scores ``(len(users), n_items)`` of every item for each user."""
        raise NotImplementedError

    @property
    def trainable(self) -> bool:
        """Whether the model has parameters to fit (the most-popular baseline has none)."""
        return any(p.requires_grad for p in self.parameters())
