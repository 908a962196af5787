"""Top-K ranking metrics with MMRec's definitions, as pure functions over a hit matrix.

Every function takes
- ``hits``: boolean ``(n_users, K)``; ``hits[u, r]`` is True when the item ranked at position
  ``r + 1`` for user ``u`` is relevant (in the evaluated split);
- ``n_relevant``: integer ``(n_users,)``, the number of relevant items ``|R_u| >= 1`` of each user;
- ``k``: the cut-off, ``1 <= k <= K``;
and returns the mean over users. With ``rel_u(r)`` the hit indicator at rank ``r`` (1-based):

- ``recall@k    = mean_u  sum_{r<=k} rel_u(r) / |R_u|``
- ``precision@k = mean_u  sum_{r<=k} rel_u(r) / k``
- ``hit@k       = mean_u  [sum_{r<=k} rel_u(r) > 0]``
- ``ndcg@k      = mean_u  DCG_u@k / IDCG_u@k`` with ``DCG_u@k = sum_{r<=k} rel_u(r) / log2(r + 1)`` and
  ``IDCG_u@k = sum_{r<=min(|R_u|, k)} 1 / log2(r + 1)`` (binary relevance)
- ``map@k       = mean_u  sum_{r<=k} P_u@r * rel_u(r) / min(|R_u|, k)`` with ``P_u@r`` the precision
  at ``r``: MMRec's normalisation, so a user with more relevant items than ``k`` can still reach 1.

Inputs may be numpy arrays or torch tensors on any device; the arithmetic runs in float64 with
torch where the inputs are, so an evaluator on a GPU never copies the hit matrix to the host.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

METRIC_NAMES = ("recall", "ndcg", "precision", "map", "hit")

ArrayLike = np.ndarray | torch.Tensor


def _validated(hits: ArrayLike, n_relevant: ArrayLike, ks: Iterable[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Check the shared arguments; return ``hits`` and ``|R_u|`` as float64 tensors."""
    hits = torch.as_tensor(hits)
    n_relevant = torch.as_tensor(n_relevant, device=hits.device)
    if hits.ndim != 2 or hits.dtype != torch.bool:
        raise ValueError(f"hits must be a 2-D boolean array (n_users, K); got dtype {hits.dtype}, shape {tuple(hits.shape)}")
    if tuple(n_relevant.shape) != (hits.shape[0],) or n_relevant.is_floating_point() or n_relevant.dtype == torch.bool:
        raise ValueError(
            f"n_relevant must be an integer array of shape ({hits.shape[0]},); "
            f"got dtype {n_relevant.dtype}, shape {tuple(n_relevant.shape)}"
        )
    if hits.shape[0] == 0:
        raise ValueError("hits has no users: nothing to average")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= hits.shape[1]:
            raise ValueError(f"k must be an integer in [1, {hits.shape[1]}] (the ranked list length); got {k!r}")
    if bool((n_relevant < 1).any()):
        raise ValueError("every user needs at least one relevant item (n_relevant >= 1); skip the others")
    if bool((hits.sum(dim=1) > n_relevant).any()):
        raise ValueError("a user has more hits than relevant items: hits and n_relevant disagree")
    return hits.double(), n_relevant.double()


def _at_every_rank(name: str, hits: torch.Tensor, n_rel: torch.Tensor) -> torch.Tensor:
    """``(n_users, K)``: each user's metric cut off at every rank ``r = 1..K`` (cumulative sums)."""
    ranks = torch.arange(1, hits.shape[1] + 1, dtype=torch.float64, device=hits.device)
    found = hits.cumsum(dim=1)
    n_rel = n_rel.unsqueeze(1)
    if name == "recall":
        return found / n_rel
    if name == "precision":
        return found / ranks
    if name == "hit":
        return (found > 0).double()
    if name == "ndcg":
        discounts = 1.0 / torch.log2(ranks + 1)
        ideal = discounts.cumsum(dim=0)[torch.minimum(n_rel, ranks).long() - 1]
        return (hits * discounts).cumsum(dim=1) / ideal
    if name == "map":
        return (hits * found / ranks).cumsum(dim=1) / torch.minimum(n_rel, ranks)
    raise ValueError(f"unknown metric {name!r}; expected one of {list(METRIC_NAMES)}")


def _mean_at(name: str, hits: ArrayLike, n_relevant: ArrayLike, k: int) -> float:
    hits_f, n_rel = _validated(hits, n_relevant, [k])
    return float(_at_every_rank(name, hits_f[:, :k], n_rel)[:, k - 1].mean())


def recall_at_k(hits: ArrayLike, n_relevant: ArrayLike, k: int) -> float:
    """Mean fraction of each user's relevant items found in the top ``k``."""
    return _mean_at("recall", hits, n_relevant, k)


def precision_at_k(hits: ArrayLike, n_relevant: ArrayLike, k: int) -> float:
    """Mean fraction of the top ``k`` that is relevant."""
    return _mean_at("precision", hits, n_relevant, k)


def hit_at_k(hits: ArrayLike, n_relevant: ArrayLike, k: int) -> float:
    """Fraction of users with at least one relevant item in the top ``k``."""
    return _mean_at("hit", hits, n_relevant, k)


def ndcg_at_k(hits: ArrayLike, n_relevant: ArrayLike, k: int) -> float:
    """Mean normalised discounted cumulative gain with binary relevance; IDCG over ``min(|R_u|, k)``."""
    return _mean_at("ndcg", hits, n_relevant, k)


def map_at_k(hits: ArrayLike, n_relevant: ArrayLike, k: int) -> float:
    """Mean average precision, each user's sum of ``P@r * rel(r)`` divided by ``min(|R_u|, k)``."""
    return _mean_at("map", hits, n_relevant, k)


def ranking_metrics(
    hits: ArrayLike, n_relevant: ArrayLike, ks: Iterable[int], metrics: Iterable[str] = METRIC_NAMES
) -> dict[str, float]:
    """Every ``metric@k`` for ``metric`` in ``metrics`` and ``k`` in ``ks``, keyed ``"recall@20"`` etc."""
    metrics, ks = tuple(metrics), tuple(ks)
    unknown = sorted(set(metrics) - set(METRIC_NAMES))
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; expected some of {list(METRIC_NAMES)}")
    hits_f, n_rel = _validated(hits, n_relevant, ks)
    columns = torch.tensor([k - 1 for k in ks], device=hits_f.device)
    table = torch.stack([_at_every_rank(name, hits_f, n_rel).mean(dim=0)[columns] for name in metrics]).tolist()
    return {f"{name}@{k}": table[m][j] for m, name in enumerate(metrics) for j, k in enumerate(ks)}
