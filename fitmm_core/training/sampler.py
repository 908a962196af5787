"""Uniform negative sampling for BPR, vectorised over a whole epoch.

Each epoch visits every training pair ``(u, i)`` once in a fresh random order and pairs it with one
negative item ``j`` drawn uniformly from ``{0, ..., n_items - 1}`` minus the user's training
positives (MMRec's protocol; MMRec draws from the items seen in training, this sampler from all
items). Draws that hit a positive are redrawn, only those, until none is left.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from fitmm_core.models.base import BprBatch

MAX_RESAMPLE_ROUNDS = 1000


class BprSampler:
    """Yields one epoch of :class:`BprBatch` per iteration; seeded, and its RNG state can be saved.

    The positives are shuffled and every negative of the epoch is drawn up front with numpy;
    membership in the training set is a binary search of ``u * n_items + j`` in the sorted array of
    training keys, so no Python loop runs per interaction.
    """

    def __init__(self, train_pairs: np.ndarray, n_items: int, batch_size: int = 2048, seed: int = 999) -> None:
        pairs = np.asarray(train_pairs)
        if pairs.ndim != 2 or pairs.shape[1] != 2 or len(pairs) == 0:
            raise ValueError(f"train_pairs must be a non-empty (n, 2) array of (user, item); got shape {pairs.shape}")
        if not np.issubdtype(pairs.dtype, np.integer):
            raise ValueError(f"train_pairs must hold integer ids; got dtype {pairs.dtype}")
        if n_items < 2:
            raise ValueError(f"n_items must be at least 2 to draw negatives; got {n_items}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive; got {batch_size}")
        users, items = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
        if users.min() < 0 or items.min() < 0 or items.max() >= n_items:
            raise ValueError(f"train_pairs has ids outside users >= 0 and items in [0, {n_items})")
        self.n_items = int(n_items)
        self.batch_size = int(batch_size)
        self._users = users
        self._items = items
        self._positive_keys = np.unique(users * self.n_items + items)
        positives_per_user = np.bincount(self._positive_keys // self.n_items)
        saturated = np.flatnonzero(positives_per_user >= self.n_items)
        if saturated.size:
            raise ValueError(
                f"user(s) {saturated[:5].tolist()} interacted with all {self.n_items} items in training: "
                "no negative item exists for them"
            )
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        """Mini-batches per epoch."""
        return -(-len(self._users) // self.batch_size)

    @property
    def n_pairs(self) -> int:
        return len(self._users)

    def is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Boolean mask: whether each ``(users[n], items[n])`` is a training pair."""
        keys = np.asarray(users, dtype=np.int64) * self.n_items + np.asarray(items, dtype=np.int64)
        slots = np.searchsorted(self._positive_keys, keys)
        slots = np.minimum(slots, len(self._positive_keys) - 1)
        return self._positive_keys[slots] == keys

    def draw_negatives(self, users: np.ndarray) -> np.ndarray:
        """One uniform non-positive item per entry of ``users``."""
        negatives = self._rng.integers(0, self.n_items, size=len(users), dtype=np.int64)
        redraw = np.flatnonzero(self.is_positive(users, negatives))
        for _ in range(MAX_RESAMPLE_ROUNDS):
            if redraw.size == 0:
                return negatives
            negatives[redraw] = self._rng.integers(0, self.n_items, size=redraw.size, dtype=np.int64)
            redraw = redraw[self.is_positive(users[redraw], negatives[redraw])]
        raise RuntimeError(
            f"{redraw.size} negatives still collide with training positives after {MAX_RESAMPLE_ROUNDS} rounds"
        )

    def draw_epoch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(users, positives, negatives)`` of one epoch, in the epoch's shuffled order."""
        order = self._rng.permutation(len(self._users))
        users = self._users[order]
        return users, self._items[order], self.draw_negatives(users)

    def __iter__(self) -> Iterator[BprBatch]:
        users, positives, negatives = (torch.from_numpy(a) for a in self.draw_epoch())
        for start in range(0, len(users), self.batch_size):
            stop = start + self.batch_size
            yield BprBatch(users[start:stop], positives[start:stop], negatives[start:stop])

    def state_dict(self) -> dict[str, Any]:
        """The RNG state (JSON-serialisable), enough to continue the exact same sequence of epochs."""
        return {"bit_generator": self._rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict`."""
        self._rng.bit_generator.state = state["bit_generator"]
