r"""Modality-wise spectral decomposition into orthogonal bands.

Given an orthonormal basis :math:`V = [V_1, \dots, V_B]` of :math:`\mathbb{R}^d` split into
:math:`B` disjoint contiguous column groups, the projectors :math:`P_b = V_b V_b^\top` are
symmetric, idempotent, mutually orthogonal (:math:`P_b P_c = 0`, :math:`b \ne c`) and sum to the
identity, so every representation splits exactly into bands:

.. math::
    X = \sum_{b=1}^{B} X P_b, \qquad \langle X P_b, X P_c \rangle = 0 \ (b \ne c).
"""

from __future__ import annotations

import math

import torch
from torch import nn

SPECTRAL_BASES = ("covariance", "dct")


def band_slices(dim: int, num_bands: int) -> list[slice]:
    """Contiguous groups of ``dim`` coordinates, sizes differing by at most one (larger ones first)."""
    if not 1 <= num_bands <= dim:
        raise ValueError(f"num_bands={num_bands} must lie in [1, {dim}] (the embedding dimension)")
    base, extra = divmod(dim, num_bands)
    slices, start = [], 0
    for band in range(num_bands):
        size = base + (1 if band < extra else 0)
        slices.append(slice(start, start + size))
        start += size
    return slices


def dct_basis(dim: int) -> torch.Tensor:
    r"""Orthonormal DCT-II basis as columns: :math:`V_{nk} = \sqrt{2/d}\, c_k \cos(\pi (n + \tfrac12) k / d)`,
    :math:`c_0 = 1/\sqrt2`, :math:`c_k = 1` otherwise; column :math:`k` is frequency :math:`k`."""
    n = torch.arange(dim, dtype=torch.float64).unsqueeze(1)
    k = torch.arange(dim, dtype=torch.float64).unsqueeze(0)
    basis = math.sqrt(2.0 / dim) * torch.cos(math.pi * (n + 0.5) * k / dim)
    basis[:, 0] /= math.sqrt(2.0)
    return basis.to(torch.float32)


def covariance_basis(x: torch.Tensor) -> torch.Tensor:
    r"""Eigenvectors of the :math:`d \times d` covariance :math:`\frac1N (X - \bar X)^\top (X - \bar X)`
    as columns, sorted by decreasing eigenvalue (a :math:`d \times d` ``eigh``, not an SVD of ``X``)."""
    flat = x.detach().reshape(-1, x.shape[-1]).to(torch.float64)
    centered = flat - flat.mean(dim=0, keepdim=True)
    covariance = centered.T @ centered / max(len(centered), 1)
    _, vectors = torch.linalg.eigh(covariance)
    return vectors.flip(-1).to(x.dtype)


class SpectralDecomposition(nn.Module):
    r"""Split representations into :math:`B` orthogonal bands :math:`X P_b`, :math:`P_b = V_b V_b^\top`.

    ``basis="dct"``: :math:`V` is the fixed DCT-II basis along the feature axis and bands are
    contiguous frequency ranges (low to high), as in SMORE.
    ``basis="covariance"``: :math:`V` holds the eigenvectors of the :math:`d \times d` covariance of
    the (detached) representation, sorted by eigenvalue, so band 1 spans the directions of largest
    variance; :meth:`refresh` recomputes it (the model calls it once per epoch in ``pre_epoch()``
    and on first use). The basis is a persistent buffer, so a reloaded model uses the same bands.

    Args:
        dim: ``d``.
        num_bands: ``B``.
        basis: ``"covariance"`` or ``"dct"``.
    """

    def __init__(self, dim: int, num_bands: int = 3, basis: str = "covariance") -> None:
        super().__init__()
        if basis not in SPECTRAL_BASES:
            raise ValueError(f"spectral_basis={basis!r}; expected one of {SPECTRAL_BASES}")
        self.basis_kind = basis
        self.slices = band_slices(dim, num_bands)
        initial = dct_basis(dim) if basis == "dct" else torch.eye(dim)
        self.register_buffer("basis", initial)
        self.register_buffer("ready", torch.tensor(basis == "dct"))

    @property
    def num_bands(self) -> int:
        return len(self.slices)

    @property
    def needs_refresh(self) -> bool:
        return not bool(self.ready)

    @torch.no_grad()
    def refresh(self, x: torch.Tensor) -> None:
        """Recompute the covariance basis from ``x`` (``(..., d)``, detached); no-op for DCT."""
        if self.basis_kind == "covariance":
            self.basis.copy_(covariance_basis(x))
            self.ready.fill_(True)

    def projector(self, band: int) -> torch.Tensor:
        r""":math:`P_b = V_b V_b^\top` as a dense ``(d, d)`` matrix."""
        v = self.basis[:, self.slices[band]]
        return v @ v.T

    def coefficients(self, x: torch.Tensor) -> torch.Tensor:
        r"""Spectral coefficients :math:`X V` ``(..., d)``; band :math:`b` owns the coordinates ``slices[b]``.

        Because :math:`V_b` has orthonormal columns, inner products, norms and cosines of band
        representations equal those of their coefficients: :math:`\langle X P_b, Y P_b\rangle =
        \langle X V_b, Y V_b\rangle`; the loss terms therefore work on coefficients.
        """
        return x @ self.basis

    def components(self, coefficients: torch.Tensor) -> torch.Tensor:
        r"""Band representations :math:`c_b = (C V_b) V_b^\top` of coefficients ``C`` ``(..., d)``,
        stacked as ``(..., B, d)``."""
        bands = [coefficients[..., s] @ self.basis[:, s].T for s in self.slices]
        return torch.stack(bands, dim=-2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Bands :math:`X P_b` of ``x`` ``(..., d)`` stacked as ``(..., B, d)``; they sum back to ``x``."""
        return self.components(self.coefficients(x))
