"""LightGCN (He et al., SIGIR 2020) on the normalised user-item graph."""

from __future__ import annotations

import torch
from torch import nn

from fitmm_core.graphs import normalized_user_item_adjacency
from fitmm_core.models.base import BprBatch, ModelInputs
from fitmm_core.models.losses import bpr_loss, embedding_l2
from fitmm_core.models.propagation import GraphRecommender, SparseGraph, light_propagate


class LightGCN(GraphRecommender):
    r"""LightGCN: linear propagation of ID embeddings, layer mean, dot-product scores.

    .. math::
        E^{(l+1)} = \hat A E^{(l)}, \qquad
        E = \frac{1}{L+1}\sum_{l=0}^{L} E^{(l)}, \qquad
        \hat y_{ui} = e_u^\top e_i,

    with :math:`\hat A = D^{-1/2} A D^{-1/2}` the normalised bipartite adjacency and
    :math:`E^{(0)} = [E_U; E_I]` the ego embeddings. Loss: BPR plus
    :math:`\lambda \frac{1}{|B|}\sum (\lVert e^{(0)}_u\rVert^2 + \lVert e^{(0)}_i\rVert^2 +
    \lVert e^{(0)}_j\rVert^2)` on the batch's ego embeddings only.

    Args:
        inputs: sizes and training pairs (features are ignored).
        embedding_dim: ``d``.
        num_layers: ``L``.
        reg_weight: ``lambda``.
    """

    def __init__(
        self, inputs: ModelInputs, embedding_dim: int = 64, num_layers: int = 2, reg_weight: float = 1e-4
    ) -> None:
        super().__init__()
        if embedding_dim < 1 or num_layers < 0 or reg_weight < 0:
            raise ValueError(
                f"LightGCN needs embedding_dim >= 1, num_layers >= 0, reg_weight >= 0; "
                f"got {embedding_dim}, {num_layers}, {reg_weight}"
            )
        self.n_users, self.n_items = inputs.n_users, inputs.n_items
        self.num_layers = num_layers
        self.reg_weight = reg_weight
        self.user_embedding = nn.Embedding(self.n_users, embedding_dim)
        self.item_embedding = nn.Embedding(self.n_items, embedding_dim)
        self.adjacency = SparseGraph(normalized_user_item_adjacency(self.n_users, self.n_items, inputs.train_pairs))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        ego = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        final = light_propagate(self.adjacency, ego, self.num_layers)
        return final[: self.n_users], final[self.n_users :]

    def calculate_loss(self, batch: BprBatch) -> dict[str, torch.Tensor]:
        users, items = self.representations()
        u = users[batch.users]
        pos_scores = (u * items[batch.pos_items]).sum(-1)
        neg_scores = (u * items[batch.neg_items]).sum(-1)
        rank = bpr_loss(pos_scores, neg_scores)
        reg = self.reg_weight * embedding_l2(
            self.user_embedding(batch.users), self.item_embedding(batch.pos_items), self.item_embedding(batch.neg_items)
        )
        return {"loss": rank + reg, "bpr": rank, "reg": reg}
