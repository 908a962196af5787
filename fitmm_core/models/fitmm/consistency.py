r"""Cross-modal spectral consistency: align the modalities within each band."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

CONSISTENCY_MODES = ("cosine", "infonce")


class SpectralConsistency(nn.Module):
    r"""Agreement of every modality pair inside every band.

    ``mode="cosine"``:

    .. math::
        \mathcal{L}_C = \frac{1}{B}\sum_{b=1}^{B}\frac{1}{|\mathcal V|}\sum_{i}
            \big(1 - \cos(x^{img}_{b,i}, x^{txt}_{b,i})\big),

    zero when the modalities agree (up to scale) in every band, positive otherwise.
    ``mode="infonce"``: per band, the symmetric InfoNCE over the nodes of the batch with
    temperature :math:`\tau`, the other nodes acting as negatives (no collapse to one direction).
    With more than two modalities the loss averages over pairs; with one it is zero.

    Args:
        mode: ``"cosine"`` or ``"infonce"``.
        temperature: :math:`\tau` of InfoNCE.
    """

    def __init__(self, mode: str = "cosine", temperature: float = 0.2) -> None:
        super().__init__()
        if mode not in CONSISTENCY_MODES:
            raise ValueError(f"consistency={mode!r}; expected one of {CONSISTENCY_MODES}")
        if temperature <= 0:
            raise ValueError(f"temperature={temperature} must be positive")
        self.mode = mode
        self.temperature = temperature

    def _pair_loss(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``a``, ``b``: ``(N, B, d_b)`` band coefficients of two modalities (equal band sizes)."""
        if self.mode == "cosine":
            return (1.0 - F.cosine_similarity(a, b, dim=-1)).mean()
        a_unit = F.normalize(a, dim=-1).transpose(0, 1)
        b_unit = F.normalize(b, dim=-1).transpose(0, 1)
        logits = a_unit @ b_unit.transpose(1, 2) / self.temperature
        labels = torch.arange(a.shape[0], device=a.device).expand(a.shape[1], -1)
        forward = F.cross_entropy(logits.flatten(0, 1), labels.flatten())
        backward = F.cross_entropy(logits.transpose(1, 2).flatten(0, 1), labels.flatten())
        return 0.5 * (forward + backward)

    def _band_pair_loss(self, a: torch.Tensor, b: torch.Tensor, slices: list[slice]) -> torch.Tensor:
        sizes = {s.stop - s.start for s in slices}
        if len(sizes) == 1:
            size = sizes.pop()
            return self._pair_loss(a.unflatten(-1, (len(slices), size)), b.unflatten(-1, (len(slices), size)))
        return torch.stack([self._pair_loss(a[:, None, s], b[:, None, s]) for s in slices]).mean()

    def forward(self, coefficients: torch.Tensor, slices: list[slice]) -> torch.Tensor:
        """``coefficients`` ``(M, N, d)`` (band ``b`` owns ``slices[b]``) -> scalar loss.

        Cosines and inner products of coefficients equal those of the band representations.
        """
        pairs = list(itertools.combinations(range(coefficients.shape[0]), 2))
        if not pairs:
            return coefficients.new_zeros(())
        return torch.stack([self._band_pair_loss(coefficients[m], coefficients[k], slices) for m, k in pairs]).mean()
