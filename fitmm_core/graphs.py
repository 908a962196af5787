"""Graphs the models propagate over: the normalised user-item graph and item-item kNN graphs.

Every function returns a coalesced sparse COO tensor (``torch.sparse_coo_tensor``, float32 on CPU);
models convert to CSR for fast ``torch.sparse.mm`` (see ``fitmm_core.models.propagation``).
Nothing here reads or writes files.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)


def _sparse(indices: torch.Tensor, values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return torch.sparse_coo_tensor(indices, values, size, check_invariants=True).coalesce()


def _inverse_sqrt(degree: torch.Tensor) -> torch.Tensor:
    """``d^{-1/2}`` with ``0`` where ``d = 0`` (isolated nodes stay zero instead of turning inf/nan)."""
    positive = degree > 0
    return torch.where(positive, degree.clamp(min=torch.finfo(degree.dtype).tiny).rsqrt(), torch.zeros_like(degree))


def normalized_user_item_adjacency(n_users: int, n_items: int, train_pairs: np.ndarray) -> torch.Tensor:
    r"""The symmetric normalised bipartite adjacency of LightGCN.

    .. math::
        A = \begin{pmatrix} 0 & R \\ R^\top & 0 \end{pmatrix}, \qquad
        \hat A = D^{-1/2} A D^{-1/2},

    with :math:`R \in \{0,1\}^{U \times I}` the training interactions (duplicates count once) and
    :math:`D` the node degrees; users occupy rows ``0..U-1`` and items rows ``U..U+I-1``.
    Nodes without interactions get an all-zero row.

    Args:
        n_users: number of users ``U``.
        n_items: number of items ``I``.
        train_pairs: ``(n, 2)`` integer array of ``(user, item)`` training interactions.

    Returns:
        Sparse COO tensor of shape ``(U + I, U + I)``.
    """
    pairs = np.asarray(train_pairs)
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise ValueError(f"train_pairs must have shape (n, 2); got {pairs.shape}")
    if not np.issubdtype(pairs.dtype, np.integer):
        raise ValueError(f"train_pairs must hold integer ids; got dtype {pairs.dtype}")
    if len(pairs) and (pairs.min(axis=0) < 0).any():
        raise ValueError("train_pairs holds negative ids")
    if len(pairs) and (pairs[:, 0].max() >= n_users or pairs[:, 1].max() >= n_items):
        raise ValueError(
            f"train_pairs has ids up to (user {pairs[:, 0].max()}, item {pairs[:, 1].max()}) "
            f"but n_users={n_users}, n_items={n_items}"
        )
    unique = np.unique(pairs.astype(np.int64), axis=0)
    users = torch.from_numpy(unique[:, 0])
    items = torch.from_numpy(unique[:, 1]) + n_users
    rows = torch.cat([users, items])
    cols = torch.cat([items, users])
    n_nodes = n_users + n_items
    degree = torch.bincount(rows, minlength=n_nodes).to(torch.float32)
    inv_sqrt = _inverse_sqrt(degree)
    values = inv_sqrt[rows] * inv_sqrt[cols]
    return _sparse(torch.stack([rows, cols]), values, (n_nodes, n_nodes))


def knn_item_graph(
    features: np.ndarray | torch.Tensor,
    k: int = 10,
    chunk_size: int = 4096,
    weighted: bool = False,
) -> torch.Tensor:
    r"""Item-item kNN graph on cosine similarity, normalised as in FREEDOM/LATTICE.

    For each item :math:`i` keep the :math:`k` items :math:`j` (itself included, as in MMRec) with
    the largest :math:`s_{ij} = \cos(f_i, f_j)`; :math:`S_{ij} = 1` (FREEDOM) or
    :math:`\max(s_{ij}, 0)` (``weighted=True``, LATTICE), then

    .. math::
        \hat S = D^{-1/2} S D^{-1/2}, \qquad D_{ii} = \textstyle\sum_j S_{ij}.

    With binary edges every row has degree :math:`k`, so all values equal :math:`1/k`.
    Similarities are computed ``chunk_size`` rows at a time, so memory stays
    :math:`O(\text{chunk\_size} \cdot N)`: the :math:`N \times N` matrix never exists.
    Rows of all-zero features have no similarity to anything; their edges get weight 0 when
    ``weighted`` and are dropped.

    Args:
        features: ``(N, F)`` item features.
        k: neighbours per item (``1 <= k <= N``).
        chunk_size: rows of the similarity matrix computed at once.
        weighted: keep the similarities as edge weights instead of ones.

    Returns:
        Sparse COO tensor of shape ``(N, N)`` with at most ``k`` entries per row.
    """
    x = torch.as_tensor(features, dtype=torch.float32)
    if x.ndim != 2:
        raise ValueError(f"features must be a 2-d (items, dim) matrix; got shape {tuple(x.shape)}")
    n_items = x.shape[0]
    if not 1 <= k <= n_items:
        raise ValueError(f"k={k} must lie in [1, {n_items}] (the number of items)")
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size} must be positive")
    if not torch.isfinite(x).all():
        raise ValueError("features hold NaN or infinite values")
    unit = F.normalize(x, p=2, dim=1)
    top_values, top_indices = [], []
    for start in range(0, n_items, chunk_size):
        similarity = unit[start : start + chunk_size] @ unit.T
        values, indices = torch.topk(similarity, k, dim=1)
        top_values.append(values)
        top_indices.append(indices)
    values = torch.cat(top_values).reshape(-1)
    cols = torch.cat(top_indices).reshape(-1)
    rows = torch.arange(n_items).repeat_interleave(k)
    weights = values.clamp(min=0.0) if weighted else torch.ones_like(values)
    has_norm = unit.abs().sum(dim=1) > 0
    keep = has_norm[rows] & has_norm[cols] & (weights > 0)
    rows, cols, weights = rows[keep], cols[keep], weights[keep]
    degree = torch.zeros(n_items).index_add_(0, rows, weights)
    inv_sqrt = _inverse_sqrt(degree)
    return _sparse(torch.stack([rows, cols]), inv_sqrt[rows] * weights * inv_sqrt[cols], (n_items, n_items))


def mix_graphs(graphs: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> torch.Tensor:
    r"""Weighted sum :math:`\sum_m \alpha_m \hat S_m` of same-shaped sparse graphs.

    The weights of the graphs present are renormalised to sum to one, so that with image weight 0.1
    and text weight 0.9 a dataset with only text features uses the text graph with weight 1
    (as FREEDOM does when a modality is missing).

    Args:
        graphs: modality name -> sparse ``(N, N)`` graph.
        weights: modality name -> non-negative weight; must name every key of ``graphs``.
    """
    if not graphs:
        raise ValueError("mix_graphs needs at least one graph")
    missing = sorted(set(graphs) - set(weights))
    if missing:
        raise ValueError(f"no weight given for graph(s) {missing}; weights name {sorted(weights)}")
    chosen = {name: float(weights[name]) for name in graphs}
    if any(w < 0 for w in chosen.values()) or sum(chosen.values()) <= 0:
        raise ValueError(f"graph weights must be non-negative with a positive sum; got {chosen}")
    shapes = {tuple(g.shape) for g in graphs.values()}
    if len(shapes) != 1:
        raise ValueError(f"graphs have different shapes {sorted(shapes)}")
    total = sum(chosen.values())
    parts = [graph.coalesce() * (chosen[name] / total) for name, graph in graphs.items()]
    mixed = parts[0]
    for part in parts[1:]:
        mixed = mixed + part
    return mixed.coalesce()


def modality_graph_weights(modalities: list[str], image_weight: float) -> dict[str, float]:
    """FREEDOM's mixing weights: ``image`` gets ``image_weight``, the other modalities share the rest."""
    if not 0.0 <= image_weight <= 1.0:
        raise ValueError(f"image_weight={image_weight} must lie in [0, 1]")
    others = [m for m in modalities if m != "image"]
    weights = {m: (1.0 - image_weight) / len(others) for m in others}
    if "image" in modalities:
        weights["image"] = image_weight
    return weights


def mixed_knn_item_graph(
    features: Mapping[str, np.ndarray | torch.Tensor],
    k: int = 10,
    image_weight: float = 0.1,
    chunk_size: int = 4096,
    weighted: bool = False,
) -> torch.Tensor:
    r"""FREEDOM's frozen item graph :math:`\sum_m \alpha_m \hat S_m` from one kNN graph per modality."""
    graphs = {}
    for name, matrix in features.items():
        logger.info("building the %d-NN item graph of modality %s %s", k, name, tuple(matrix.shape))
        graphs[name] = knn_item_graph(matrix, k=k, chunk_size=chunk_size, weighted=weighted)
    return mix_graphs(graphs, modality_graph_weights(list(features), image_weight))
