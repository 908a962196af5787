"""MostPop: every user gets the items ranked by training popularity."""

from __future__ import annotations

import numpy as np
import torch

from fitmm_core.models.base import BprBatch, ModelInputs, Recommender


class MostPop(Recommender):
    r"""Non-personalised baseline: :math:`\hat y_{ui} = |\{v : (v, i) \in \mathcal{R}_{train}\}|`.

    Has no parameters (``trainable`` is False); the popularity counts are a buffer.
    """

    def __init__(self, inputs: ModelInputs) -> None:
        super().__init__()
        pairs = np.asarray(inputs.train_pairs)
        if pairs.ndim != 2 or pairs.shape[1] != 2:
            raise ValueError(f"train_pairs must have shape (n, 2); got {pairs.shape}")
        if len(pairs) and not 0 <= pairs[:, 1].min() <= pairs[:, 1].max() < inputs.n_items:
            raise ValueError(f"train_pairs has item ids outside [0, {inputs.n_items})")
        counts = np.bincount(pairs[:, 1].astype(np.int64), minlength=inputs.n_items)
        self.register_buffer("popularity", torch.from_numpy(counts.astype(np.float32)))

    def calculate_loss(self, batch: BprBatch) -> dict[str, torch.Tensor]:
        raise RuntimeError("MostPop has no parameters to train; score it with full_sort_predict directly")

    def full_sort_predict(self, users: torch.Tensor) -> torch.Tensor:
        return self.popularity.unsqueeze(0).repeat(len(users), 1)
