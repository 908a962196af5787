r"""Graph-enhanced ID and modality representations (FITMM's first stage, as in FREEDOM/LATTICE)."""

from __future__ import annotations

import torch
from torch import nn

from fitmm_core.models.propagation import SparseGraph, light_propagate


def principal_feature_basis(features: torch.Tensor, rank: int, seed: int = 0) -> torch.Tensor:
    r"""Orthonormal ``(F, r)`` basis of the top-:math:`r` principal directions of ``features`` ``(I, F)``.

    Randomised SVD of the centred features (Halko et al. 2011: range finder with 16 extra columns
    and two power iterations) from a fixed-seed generator, so the result is reproducible; each
    column's largest entry is made positive. ``r = min(rank, F, I)``; when ``r == F`` the identity
    is returned (no reduction).
    """
    n_items, dim = features.shape
    r = min(rank, dim, n_items)
    if r >= dim:
        return torch.eye(dim, dtype=features.dtype)
    centered = features - features.mean(dim=0, keepdim=True)
    generator = torch.Generator().manual_seed(seed)
    probe = torch.randn(dim, min(r + 16, dim), generator=generator, dtype=features.dtype)
    q = torch.linalg.qr(centered @ probe).Q
    for _ in range(2):
        q = torch.linalg.qr(centered @ torch.linalg.qr(centered.T @ q).Q).Q
    _, _, vh = torch.linalg.svd(q.T @ centered, full_matrices=False)
    basis = vh[:r].T
    signs = torch.sign(basis.gather(0, basis.abs().argmax(dim=0, keepdim=True)))
    return basis * torch.where(signs == 0, torch.ones_like(signs), signs)


def reduced_features(features: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    r""":math:`\tilde F = (F - \bar F)\, Q / s` with :math:`s` the RMS row norm (rows get unit RMS norm)."""
    projected = (features - features.mean(dim=0, keepdim=True)) @ basis
    scale = projected.pow(2).sum(dim=1).mean().sqrt()
    return projected / scale if scale > 0 else projected


class GraphEnhancedRepresentations(nn.Module):
    r"""ID and modality representations propagated over the user-item and item-item graphs.

    .. math::
        \bar E = \frac{1}{L+1}\sum_{l=0}^{L}\hat A^l\,[E_U; E_I], \qquad
        \bar E^{+} = \big[\bar E_U;\ \bar E_I + \hat S^{L_m} E_I\big],

        R_m = \frac{1}{L+1}\sum_{l=0}^{L}\hat A^l\,[0;\ \tilde F_m W_m^\top + \mathbf 1 b_m^\top], \qquad
        X_m = \big[R_{m,U};\ R_{m,I} + \hat S^{L_m} R_{m,I}\big],

    with :math:`\hat A` the normalised user-item graph, :math:`\hat S` the frozen mixed kNN item
    graph (FREEDOM's), :math:`\bar E^{+}` the graph-enhanced ID representation (the item-ID
    smoothing :math:`h_i = (\hat S^{L_m} E_I)_i` of FREEDOM/LATTICE, recomputed every step because
    :math:`E_I` is trained; ``smooth_item_ids=False`` keeps :math:`\bar E`), :math:`\tilde F_m`
    the item features of modality :math:`m` reduced to their top ``feature_rank`` principal directions (exact when the feature dimension is at most that) and
    :math:`W_m, b_m` a learned linear map to :math:`d`. Users have no content of their own: their
    modality representation is what the graph brings them from their items.

    Everything after :math:`W_m` is linear and fixed, so
    :math:`X_m = G_m [W_m, b_m]^\top` with :math:`G_m = \mathcal P[\tilde F_m, \mathbf 1]` computed
    once; the modality representations of any set of nodes are a row lookup and one
    :math:`(r+1) \times d` product per modality. The principal bases are persistent buffers, so a
    reloaded model rebuilds exactly the same :math:`G_m`.

    Args:
        n_users: ``U``.
        n_items: ``I``.
        adjacency: sparse ``(U+I, U+I)`` normalised user-item graph.
        item_graph: sparse ``(I, I)`` item graph, or ``None`` (no item-graph smoothing).
        features: modality -> ``(I, F_m)`` features (may be empty).
        embedding_dim: ``d``.
        num_layers: ``L``.
        num_mm_layers: ``L_m``.
        feature_rank: ``r``, the number of principal directions kept per modality.
        smooth_item_ids: add :math:`\hat S^{L_m} E_I` to the items' ID representation.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        adjacency: torch.Tensor,
        item_graph: torch.Tensor | None,
        features: dict[str, torch.Tensor],
        embedding_dim: int,
        num_layers: int,
        num_mm_layers: int,
        feature_rank: int,
        smooth_item_ids: bool = True,
    ) -> None:
        super().__init__()
        if embedding_dim < 1 or num_layers < 0 or num_mm_layers < 0 or feature_rank < 1:
            raise ValueError(
                "need embedding_dim >= 1, num_layers >= 0, n_mm_layers >= 0, feature_rank >= 1; got "
                f"{embedding_dim}, {num_layers}, {num_mm_layers}, {feature_rank}"
            )
        self.n_users, self.n_items = n_users, n_items
        self.num_layers, self.num_mm_layers = num_layers, num_mm_layers
        self.smooth_item_ids = smooth_item_ids
        self.user_embedding = nn.Embedding(n_users, embedding_dim)
        self.item_embedding = nn.Embedding(n_items, embedding_dim)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)
        self.adjacency = SparseGraph(adjacency)
        self.modalities = list(features)
        self._raw_features = features
        self.item_graph = SparseGraph(item_graph) if item_graph is not None and num_mm_layers > 0 else None
        self._bases_in_use: dict[str, torch.Tensor] = {}
        self.projections = nn.ModuleDict()
        for name, matrix in features.items():
            basis = principal_feature_basis(matrix, feature_rank)
            self.register_buffer(f"feature_basis_{name}", basis)
            self.projections[name] = nn.Linear(basis.shape[1], embedding_dim)
            self.register_buffer(f"propagated_{name}", self._propagate_features(name, basis), persistent=False)
        self.register_load_state_dict_post_hook(lambda module, _keys: module._rebuild_changed_features())

    @torch.no_grad()
    def _propagate_features(self, name: str, basis: torch.Tensor) -> torch.Tensor:
        self._bases_in_use[name] = basis.detach().clone()
        device = self.adjacency.matrix.device
        reduced = reduced_features(self._raw_features[name].to(device), basis.to(device))
        items = torch.cat([reduced, torch.ones(self.n_items, 1, device=device)], dim=1)
        nodes = torch.cat([torch.zeros(self.n_users, items.shape[1], device=device), items])
        propagated = light_propagate(self.adjacency, nodes, self.num_layers)
        users, items = propagated[: self.n_users], propagated[self.n_users :]
        if self.item_graph is not None:
            items = items + self._smooth_items(items)
        return torch.cat([users, items])

    def _smooth_items(self, items: torch.Tensor) -> torch.Tensor:
        r""":math:`\hat S^{L_m} x` for item rows ``x`` ``(I, k)``."""
        for _ in range(self.num_mm_layers):
            items = self.item_graph(items)
        return items

    def _rebuild_changed_features(self) -> None:
        for name in self.modalities:
            basis = getattr(self, f"feature_basis_{name}")
            if not torch.equal(basis.cpu(), self._bases_in_use[name].cpu()):
                setattr(self, f"propagated_{name}", self._propagate_features(name, basis))

    def ego_embeddings(self) -> torch.Tensor:
        """:math:`[E_U; E_I]`, ``(U+I, d)``: the nodes' own ID embeddings (the gate's context)."""
        return torch.cat([self.user_embedding.weight, self.item_embedding.weight])

    def modality_representations(self, nodes: torch.Tensor | None = None) -> torch.Tensor | None:
        """:math:`X_m` of ``nodes`` (all when ``None``) stacked as ``(M, n, d)``; ``None`` without modalities."""
        if not self.modalities:
            return None
        reps = []
        for name in self.modalities:
            propagated = getattr(self, f"propagated_{name}")
            rows = propagated if nodes is None else propagated[nodes]
            projection = self.projections[name]
            weight = torch.cat([projection.weight, projection.bias.unsqueeze(1)], dim=1)
            reps.append(rows @ weight.T)
        return torch.stack(reps)

    def id_representations(self, ego: torch.Tensor) -> torch.Tensor:
        r""":math:`\bar E^{+}` (or :math:`\bar E` without item-ID smoothing) of all nodes, ``(U+I, d)``."""
        base = light_propagate(self.adjacency, ego, self.num_layers)
        if self.item_graph is None or not self.smooth_item_ids:
            return base
        smoothed = self._smooth_items(ego[self.n_users :])
        return torch.cat([base[: self.n_users], base[self.n_users :] + smoothed])

    def forward(self, nodes: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(ego, id_representation, modality_representations)`` of ``nodes`` (all when ``None``).

        The ID propagation (and item-ID smoothing) always runs over the whole graph; the rest is row-wise.
        """
        ego = self.ego_embeddings()
        base = self.id_representations(ego)
        if nodes is not None:
            ego, base = ego[nodes], base[nodes]
        return ego, base, self.modality_representations(nodes)
