"""FREEDOM (Zhou & Shen, ACM MM 2023): a frozen item-item graph plus a denoised user-item graph."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fitmm_core.graphs import mixed_knn_item_graph, normalized_user_item_adjacency
from fitmm_core.models.base import BprBatch, ModelInputs
from fitmm_core.models.losses import bpr_loss
from fitmm_core.models.modalities import modality_features
from fitmm_core.models.propagation import GraphRecommender, SparseGraph, light_propagate


class FREEDOM(GraphRecommender):
    r"""FREEDOM: LightGCN on a pruned user-item graph, item IDs smoothed on a frozen kNN item graph.

    .. math::
        \bar E = \frac{1}{L+1}\sum_{l=0}^{L} \tilde A^l [E_U; E_I], \qquad
        H_I = \hat S^{L_m} E_I, \qquad
        \hat S = \sum_m \alpha_m \hat S_m,

    users score items by :math:`\hat y_{ui} = \bar e_u^\top(\bar e_i + h_i)`. :math:`\hat S_m` is the
    binary :math:`k`-NN graph of modality :math:`m` (cosine on the raw features, built once,
    never trained; :math:`\alpha_{image}` = ``image_weight``, the rest shared by the others).
    :math:`\tilde A` is rebuilt each epoch from a degree-sensitive sample of the training edges
    (keep a fraction ``1 - edge_dropout``, edge :math:`(u,i)` drawn with probability
    :math:`\propto 1/\sqrt{d_u d_i}`, then renormalised); evaluation uses the full graph.
    Loss: :math:`\mathrm{BPR}(\bar e_u, \bar e_i + h_i) + \lambda \sum_m \mathrm{BPR}(\bar e_u, W_m f_i^m)`
    with :math:`W_m` a linear projection of the (frozen) features. Works without features
    (then it is LightGCN with edge pruning).

    Args:
        inputs: sizes, training pairs, item features per modality.
        embedding_dim: ``d``.
        num_ui_layers: ``L`` on the user-item graph.
        num_mm_layers: ``L_m`` on the item graph.
        knn_k: neighbours per item in each modality graph.
        image_weight: ``alpha_image``.
        edge_dropout: fraction of training edges pruned per epoch (0 disables pruning).
        modality_weight: ``lambda``.
    """

    def __init__(
        self,
        inputs: ModelInputs,
        embedding_dim: int = 64,
        num_ui_layers: int = 2,
        num_mm_layers: int = 1,
        knn_k: int = 10,
        image_weight: float = 0.1,
        edge_dropout: float = 0.8,
        modality_weight: float = 1e-4,
    ) -> None:
        super().__init__()
        if not 0.0 <= edge_dropout < 1.0:
            raise ValueError(f"edge_dropout={edge_dropout} must lie in [0, 1)")
        self.n_users, self.n_items = inputs.n_users, inputs.n_items
        self.num_ui_layers, self.num_mm_layers = num_ui_layers, num_mm_layers
        self.edge_dropout, self.modality_weight = edge_dropout, modality_weight
        self.user_embedding = nn.Embedding(self.n_users, embedding_dim)
        self.item_embedding = nn.Embedding(self.n_items, embedding_dim)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)

        pairs = np.unique(np.asarray(inputs.train_pairs, dtype=np.int64), axis=0)
        self.register_buffer("train_pairs", torch.from_numpy(pairs), persistent=False)
        self.adjacency = SparseGraph(normalized_user_item_adjacency(self.n_users, self.n_items, pairs))
        self.pruned_adjacency: SparseGraph | None = None

        features = modality_features(inputs)
        self.modalities = list(features)
        self.projections = nn.ModuleDict({m: nn.Linear(f.shape[1], embedding_dim) for m, f in features.items()})
        for name, matrix in features.items():
            self.register_buffer(f"features_{name}", matrix, persistent=False)
        self.item_graph = SparseGraph(mixed_knn_item_graph(features, knn_k, image_weight)) if features else None

    def pre_epoch(self) -> None:
        """Sample this epoch's pruned user-item graph (degree-sensitive edge pruning)."""
        if self.edge_dropout == 0.0:
            self.pruned_adjacency = None
            return
        pairs = self.train_pairs.cpu()
        degree_u = torch.bincount(pairs[:, 0], minlength=self.n_users).float()
        degree_i = torch.bincount(pairs[:, 1], minlength=self.n_items).float()
        weights = (degree_u[pairs[:, 0]] * degree_i[pairs[:, 1]]).rsqrt()
        n_keep = max(1, int(len(pairs) * (1.0 - self.edge_dropout)))
        keep = torch.multinomial(weights, n_keep, replacement=False)
        pruned = normalized_user_item_adjacency(self.n_users, self.n_items, pairs[keep].numpy())
        self.pruned_adjacency = SparseGraph(pruned).to(self.user_embedding.weight.device)

    def _propagate(self, adjacency: SparseGraph) -> tuple[torch.Tensor, torch.Tensor]:
        ego = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        final = light_propagate(adjacency, ego, self.num_ui_layers)
        users, items = final[: self.n_users], final[self.n_users :]
        if self.item_graph is not None:
            smoothed = self.item_embedding.weight
            for _ in range(self.num_mm_layers):
                smoothed = self.item_graph(smoothed)
            items = items + smoothed
        return users, items

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._propagate(self.adjacency)

    def calculate_loss(self, batch: BprBatch) -> dict[str, torch.Tensor]:
        users, items = self._propagate(self.pruned_adjacency if self.pruned_adjacency is not None else self.adjacency)
        u = users[batch.users]
        rank = bpr_loss((u * items[batch.pos_items]).sum(-1), (u * items[batch.neg_items]).sum(-1))
        modality = torch.zeros((), device=u.device)
        for name in self.modalities:
            features = getattr(self, f"features_{name}")
            pos = self.projections[name](features[batch.pos_items])
            neg = self.projections[name](features[batch.neg_items])
            modality = modality + bpr_loss((u * pos).sum(-1), (u * neg).sum(-1))
        weighted = self.modality_weight * modality
        return {"loss": rank + weighted, "bpr": rank, "modality_bpr": modality}
