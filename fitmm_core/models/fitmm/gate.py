r"""Residual, task-adaptive gate aggregating the band components into the final representation."""

from __future__ import annotations

import torch
from torch import nn


class ResidualBandGate(nn.Module):
    r"""Gate each band by the node's own context and add the result to the base representation.

    .. math::
        h = h_{base} + \sum_{b=1}^{B} g_b(z)\, c_b, \qquad
        g_b(z) = \sigma(w_b^\top z + a_b),

    where :math:`z` is the task context (FITMM: the node's ID embedding) and :math:`c_b` the band
    components. With every gate at zero the output is :math:`h_{base}` exactly (residual identity).
    Initialised with :math:`a_b = 0` and small :math:`w_b`, so gates start near 1/2.

    Args:
        context_dim: dimension of ``z``.
        num_bands: ``B``.
    """

    def __init__(self, context_dim: int, num_bands: int) -> None:
        super().__init__()
        self.linear = nn.Linear(context_dim, num_bands)
        nn.init.normal_(self.linear.weight, std=0.01)
        nn.init.zeros_(self.linear.bias)

    def logits(self, context: torch.Tensor) -> torch.Tensor:
        r""":math:`w_b^\top z + a_b` as ``(N, B)``."""
        return self.linear(context)

    @staticmethod
    def combine(base: torch.Tensor, components: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        """``base`` ``(N, d)`` + sum over bands of ``gates`` ``(N, B)`` times ``components`` ``(N, B, d)``."""
        return base + (gates.unsqueeze(-1) * components).sum(dim=1)

    def forward(self, base: torch.Tensor, components: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.combine(base, components, torch.sigmoid(self.logits(context)))
