r"""Within-band multimodal components: a light, band-specific mixture of modalities."""

from __future__ import annotations

import torch
from torch import nn


class WithinBandFusion(nn.Module):
    r"""Per-band convex combination of the modalities' band representations.

    .. math::
        c_b = \sum_{m=1}^{M} w_{b,m}\, X_m P_b
            = \Big(\sum_{m} w_{b,m}\, X_m V_b\Big) V_b^\top, \qquad
        w_{b,\cdot} = \operatorname{softmax}(\theta_{b,\cdot}),

    with :math:`\theta \in \mathbb{R}^{B \times M}` (initialised to zero: equal weights). Each band
    learns which modality it trusts; with one modality :math:`w_{b,1} = 1`. The mixture is taken on
    the spectral coefficients :math:`X_m V` (band :math:`b` owns the coordinates ``slices[b]``);
    :meth:`SpectralDecomposition.components` maps the result back to :math:`c_b`.

    Args:
        num_bands: ``B``.
        num_modalities: ``M``.
    """

    def __init__(self, num_bands: int, num_modalities: int) -> None:
        super().__init__()
        if num_bands < 1 or num_modalities < 1:
            raise ValueError(f"need num_bands >= 1 and num_modalities >= 1; got {num_bands}, {num_modalities}")
        self.logits = nn.Parameter(torch.zeros(num_bands, num_modalities))

    def weights(self) -> torch.Tensor:
        """:math:`w` as a ``(B, M)`` matrix whose rows sum to one."""
        return torch.softmax(self.logits, dim=1)

    def forward(self, coefficients: torch.Tensor, slices: list[slice]) -> torch.Tensor:
        """``coefficients`` ``(M, N, d)`` -> fused coefficients ``(N, d)``."""
        weights = self.weights()
        per_coordinate = torch.cat(
            [weights[b].unsqueeze(1).expand(-1, s.stop - s.start) for b, s in enumerate(slices)], dim=1
        )
        return (coefficients * per_coordinate.unsqueeze(1)).sum(dim=0)
