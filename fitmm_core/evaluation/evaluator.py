"""Full-ranking top-K evaluation, batched over users on the model's device.

For each user with at least one item in the evaluated split, every item is scored with
``model.full_sort_predict``; items the user already saw are set to ``-inf``; the top ``max(ks)``
items are taken with ``torch.topk`` and compared with the split's items. Masked items:

- ``valid``: the user's training items;
- ``test``: training and validation items. ``mmrec_compat=True`` masks only training items, as
  MMRec does (its test loader is built with the training set alone as history), so numbers compare
  with papers that report MMRec's protocol.

All per-user work is vectorised: masks and relevant items are CSR-ordered index tensors built once
per ``(data, split)`` and moved to the device once; hits are found by a binary search of
``row * n_items + item`` keys (``torch.searchsorted``) and the metrics are computed where the hits
are, so no Python loop runs per user and only the final numbers reach the host. Scores are
compared in float32 (evaluation never runs under autocast).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from fitmm_core.data.mmrec_format import MMRecData
from fitmm_core.evaluation.metrics import ranking_metrics
from fitmm_core.models.base import Recommender
from fitmm_core.device import model_device, resolve_device

SPLITS = ("valid", "test")


def _grouped(pairs: np.ndarray, rows_of_user: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique ``(row, item)`` pairs of the users that have a row (``rows_of_user[u] >= 0``), sorted."""
    rows = rows_of_user[pairs[:, 0]]
    keep = rows >= 0
    keys = np.unique(rows[keep] * np.int64(1 << 32) + pairs[keep, 1])
    return keys >> 32, keys & ((1 << 32) - 1)


class RankingEvaluator:
    """Evaluates models on one split of one dataset; the index tensors are built once, then reused.

    Calling the evaluator with a model returns ``{"recall@10": ..., "ndcg@10": ..., ...}`` for
    recall, ndcg, precision, map and hit at every ``k`` in ``ks`` (see ``metrics``).
    """

    def __init__(
        self,
        data: MMRecData,
        split: str,
        ks: Sequence[int] = (10, 20, 50),
        batch_users: int = 4096,
        mmrec_compat: bool = False,
        device: torch.device | str = "cpu",
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}; got {split!r}")
        ks = tuple(int(k) for k in ks)
        if not ks or min(ks) < 1:
            raise ValueError(f"ks must be a non-empty sequence of positive integers; got {ks}")
        if max(ks) > data.n_items:
            raise ValueError(f"max(ks) = {max(ks)} exceeds the number of items ({data.n_items}) of {data.name!r}")
        if batch_users < 1:
            raise ValueError(f"batch_users must be positive; got {batch_users}")
        relevant_pairs = data.split(split)
        if len(relevant_pairs) == 0:
            raise ValueError(f"dataset {data.name!r} has no {split} interactions to evaluate on")
        self.split = split
        self.ks = ks
        self.batch_users = int(batch_users)
        self.n_items = data.n_items
        self.device = resolve_device(device)

        users = np.unique(relevant_pairs[:, 0])
        rows_of_user = np.full(data.n_users, -1, dtype=np.int64)
        rows_of_user[users] = np.arange(len(users))
        seen = [data.train] if split == "valid" or mmrec_compat else [data.train, data.valid]
        mask_rows, mask_items = _grouped(np.concatenate(seen), rows_of_user)
        rel_rows, rel_items = _grouped(relevant_pairs, rows_of_user)

        self.users = torch.from_numpy(users).to(self.device)
        self.n_relevant = np.bincount(rel_rows, minlength=len(users))
        self._n_relevant = torch.from_numpy(self.n_relevant).to(self.device)
        self._mask_bounds = np.searchsorted(mask_rows, np.arange(len(users) + 1))
        self._rel_bounds = np.searchsorted(rel_rows, np.arange(len(users) + 1))
        self._mask_rows = torch.from_numpy(mask_rows).to(self.device)
        self._mask_items = torch.from_numpy(mask_items).to(self.device)
        self._rel_keys = torch.from_numpy(rel_rows * self.n_items + rel_items).to(self.device)

    @property
    def n_users(self) -> int:
        """Users evaluated: those with at least one item in the split."""
        return len(self.users)

    def _batch_hits(self, model: Recommender, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Hit matrix ``(stop - start, max(ks))`` of users ``start:stop`` and the NaN count among the top scores."""
        scores = model.full_sort_predict(self.users[start:stop]).float()
        expected = (stop - start, self.n_items)
        if tuple(scores.shape) != expected:
            raise ValueError(
                f"{type(model).__name__}.full_sort_predict returned shape {tuple(scores.shape)}; expected {expected}"
            )
        lo, hi = self._mask_bounds[start], self._mask_bounds[stop]
        minus_inf = torch.full((), float("-inf"), device=scores.device)
        scores = scores.index_put((self._mask_rows[lo:hi] - start, self._mask_items[lo:hi]), minus_inf)
        top_scores, top_items = torch.topk(scores, max(self.ks), dim=1)
        lo, hi = self._rel_bounds[start], self._rel_bounds[stop]
        rel_keys = self._rel_keys[lo:hi]
        rows = torch.arange(start, stop, device=scores.device).unsqueeze(1)
        query = rows * self.n_items + top_items
        slots = torch.searchsorted(rel_keys, query).clamp_(max=len(rel_keys) - 1)
        hits = (rel_keys[slots] == query) & (top_scores > float("-inf"))
        return hits, torch.isnan(top_scores).sum()  # topk ranks NaN above every number

    @torch.no_grad()
    def __call__(self, model: Recommender) -> dict[str, float]:
        """The metrics of ``model`` (moved to this evaluator's device if it is elsewhere)."""
        if model_device(model) != self.device:
            model.to(self.device)
        was_training = model.training
        model.eval()
        try:
            batches = [
                self._batch_hits(model, start, min(start + self.batch_users, self.n_users))
                for start in range(0, self.n_users, self.batch_users)
            ]
        finally:
            model.train(was_training)
        nan_scores = int(torch.stack([n for _, n in batches]).sum())
        if nan_scores:
            raise FloatingPointError(
                f"{type(model).__name__}.full_sort_predict produced NaN scores on the {self.split} split "
                f"({nan_scores} in the top {max(self.ks)} lists)"
            )
        return ranking_metrics(torch.cat([h for h, _ in batches]), self._n_relevant, self.ks)


def evaluate(
    model: Recommender,
    data: MMRecData,
    split: str,
    ks: Sequence[int] = (10, 20, 50),
    batch_users: int = 4096,
    mmrec_compat: bool = False,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Full-ranking metrics of ``model`` on ``split`` (``"valid"`` or ``"test"``) of ``data``.

    ``device`` defaults to the model's device. To evaluate the same split repeatedly (every epoch),
    build a :class:`RankingEvaluator` once and call it instead.
    """
    target = model_device(model) if device is None else resolve_device(device)
    return RankingEvaluator(data, split, ks, batch_users, mmrec_compat, target)(model)
