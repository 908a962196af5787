"""Ranking losses and the embedding regulariser shared by the models."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    r"""Bayesian Personalised Ranking: :math:`-\frac{1}{|B|}\sum \ln\sigma(\hat y_{ui} - \hat y_{uj})`."""
    return F.softplus(neg_scores - pos_scores).mean()


def pairwise_bce_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    r"""Binary cross-entropy with positives labelled 1 and sampled negatives 0 (the FITMM release).

    .. math::
        -\frac{1}{2|B|}\sum \big[\ln\sigma(\hat y_{ui}) + \ln(1 - \sigma(\hat y_{uj}))\big]
    """
    logits = torch.cat([pos_scores, neg_scores])
    labels = torch.cat([torch.ones_like(pos_scores), torch.zeros_like(neg_scores)])
    return F.binary_cross_entropy_with_logits(logits, labels)


def ranking_loss(kind: str, pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """``bpr_loss`` or ``pairwise_bce_loss`` by name (``"bpr"`` or ``"bce"``)."""
    if kind == "bpr":
        return bpr_loss(pos_scores, neg_scores)
    if kind == "bce":
        return pairwise_bce_loss(pos_scores, neg_scores)
    raise ValueError(f"loss={kind!r}; expected 'bpr' or 'bce'")


def embedding_l2(*embeddings: torch.Tensor) -> torch.Tensor:
    r"""Batch L2 penalty :math:`\frac{1}{|B|}\sum_{e}\lVert e \rVert_2^2` over the given ``(|B|, d)`` rows."""
    batch_size = embeddings[0].shape[0]
    return sum(e.pow(2).sum() for e in embeddings) / batch_size
