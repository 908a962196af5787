r"""Frequency-domain information bottleneck: per-band Wiener-like gains with shut-off of weak bands.

Derivation (Gaussian IB, Chechik et al. 2005). For jointly Gaussian :math:`X, Y` the IB problem
:math:`\min_{p(t|x)} I(X;T) - \beta I(T;Y)` has a linear-Gaussian optimum. If an orthogonal
transform :math:`V` (block-)diagonalises :math:`\Sigma_X` and :math:`\Sigma_{X|Y}` over bands and
the encoder acts band-wise, both informations add over bands and the objective decouples:

.. math::
    \mathcal{L} = \sum_b \big[ I(X_b;T_b) - \beta\, I(T_b;Y_b) \big].

Band model: :math:`X_b = Y_b + E_b`, with :math:`Y_b` the signal the modalities share (power
:math:`S_b`) and :math:`E_b` modality-specific noise (power :math:`N_b`), independent. Scaled to
unit power, band :math:`b` is a channel with signal fraction (the Wiener gain)

.. math::
    \gamma_b = \frac{S_b}{S_b + N_b}.

Encode :math:`T_b = \sqrt{u_b} X_b + \xi`, :math:`\xi \sim \mathcal N(0,1)`, and write the gate
:math:`g_b = u_b / (1 + u_b) \in [0, 1)`. Then
:math:`I(X_b;T_b) = \tfrac12\log(1+u_b) = -\tfrac12\log(1-g_b)` and
:math:`I(T_b;Y_b) = \tfrac12\log\frac{1+u_b}{1+u_b(1-\gamma_b)} = -\tfrac12\log(1-g_b\gamma_b)`, so

.. math::
    \ell_b(g) = -\tfrac12\log(1-g) + \tfrac{\beta}{2}\log(1-g\gamma_b), \qquad
    g_b^\star = \operatorname{clip}_{[0,1]}\frac{\beta\gamma_b - 1}{\gamma_b(\beta-1)}.

Band :math:`b` is shut off (:math:`g_b^\star = 0`) iff :math:`\gamma_b \le 1/\beta`, i.e.
:math:`S_b \le N_b/(\beta-1)`. The MMSE read-out of :math:`Y_b` from :math:`T_b` scales
:math:`X_b` by :math:`\kappa_b = g_b\gamma_b`, at the optimum
:math:`\kappa_b^\star = \max\!\big(0, \frac{\beta\gamma_b - 1}{\beta - 1}\big)`: Wiener's
:math:`\gamma_b` as :math:`\beta\to\infty`, shrunk and cut to zero for weak bands otherwise.

Estimating :math:`S_b, N_b` (``band_signal_noise``): with modality band representations
:math:`x_{m,b} = y_b + e_{m,b}` (centred over nodes) and independent :math:`e_{m,b}`, the cross
power :math:`\frac1N\sum_i\langle x_{m,b,i}, x_{m',b,i}\rangle` (:math:`m \ne m'`) estimates
:math:`S_b` (what the modalities agree on) and the mean own power estimates :math:`S_b + N_b`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class BandGains:
    """Per-band statistics ``(B,)``: powers, Wiener gain, IB-optimal gate and shrinkage."""

    signal: torch.Tensor
    noise: torch.Tensor
    wiener: torch.Tensor
    target_gate: torch.Tensor
    shrinkage: torch.Tensor


def band_signal_noise(coefficients: torch.Tensor, slices: list[slice]) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Signal power :math:`S_b` and noise power :math:`N_b` per band.

    ``coefficients`` ``(M, N, d)`` are the modalities' spectral coefficients (band :math:`b` owns
    the coordinates ``slices[b]``; inner products of coefficients equal those of the bands).
    :math:`S_b = \operatorname{clip}(\overline{C}_{b}, 0, \overline{P}_b)` with :math:`\overline{C}_b`
    the mean cross power over modality pairs and :math:`\overline{P}_b` the mean own power;
    :math:`N_b = \overline{P}_b - S_b`. Needs at least two modalities.
    """
    n_modalities = coefficients.shape[0]
    if n_modalities < 2:
        raise ValueError(f"signal/noise estimation needs at least two modalities; got {n_modalities}")
    centered = coefficients - coefficients.mean(dim=1, keepdim=True)
    summed = centered.sum(dim=0)
    own_per_coordinate = centered.pow(2).mean(dim=1).sum(dim=0)
    all_pairs_per_coordinate = summed.pow(2).mean(dim=0)
    power = torch.stack([own_per_coordinate[s].sum() for s in slices]) / n_modalities
    all_pairs = torch.stack([all_pairs_per_coordinate[s].sum() for s in slices])
    cross = (all_pairs - n_modalities * power) / (n_modalities * (n_modalities - 1))
    signal = torch.minimum(cross.clamp(min=0.0), power)
    return signal, power - signal


class FrequencyInformationBottleneck(nn.Module):
    r"""The per-band Gaussian IB regulariser on the band gates (module docstring has the derivation).

    .. math::
        \mathcal{L}_{IB} = \frac{1}{|\mathcal V_B|}\sum_{i \in \mathcal V_B}\sum_b
            \big[\ell_b(g_{b,i}) - \ell_b(g_b^\star)\big] \ \ge 0,

    zero iff every gate sits at its IB optimum; gates of bands whose cross-modal agreement is weak
    (:math:`\gamma_b \le 1/\beta`) are pushed to zero, bands of strong agreement towards one. The
    statistics :math:`S_b, N_b` are detached estimates; the gradient flows into the gates. Combined
    with the task loss, which adds its own relevance term, this trades rate against the task.

    Args:
        beta: :math:`\beta > 1`; bands with Wiener gain at most ``1 / beta`` are shut off.
        max_gain: upper clamp on :math:`\gamma_b` (< 1) that keeps :math:`\ell_b` bounded below.
    """

    def __init__(self, beta: float = 4.0, max_gain: float = 0.999) -> None:
        super().__init__()
        if beta <= 1.0:
            raise ValueError(f"ib_beta={beta} must be greater than 1")
        if not 0.0 < max_gain < 1.0:
            raise ValueError(f"max_gain={max_gain} must lie in (0, 1)")
        self.beta = beta
        self.max_gain = max_gain

    @torch.no_grad()
    def gains(self, coefficients: torch.Tensor, slices: list[slice]) -> BandGains:
        """Wiener gain, IB-optimal gate and shrinkage per band (see :func:`band_signal_noise`)."""
        signal, noise = band_signal_noise(coefficients.detach(), slices)
        signal, noise = signal.to(torch.float64), noise.to(torch.float64)
        total = signal + noise
        ratio = signal / total.clamp(min=torch.finfo(total.dtype).tiny)
        wiener = torch.where(total > 0, ratio, torch.zeros_like(total))
        wiener = wiener.clamp(max=self.max_gain)
        shrinkage = ((self.beta * wiener - 1.0) / (self.beta - 1.0)).clamp(min=0.0, max=1.0)
        target = torch.where(wiener > 0, shrinkage / wiener.clamp(min=1e-12), torch.zeros_like(wiener))
        target = target.clamp(max=1.0 - 1e-6)  # < 1 in exact arithmetic; keeps log(1 - g*) finite in float32
        dtype = coefficients.dtype
        return BandGains(signal.to(dtype), noise.to(dtype), wiener.to(dtype), target.to(dtype), shrinkage.to(dtype))

    def lagrangian(self, gate_logits: torch.Tensor, wiener: torch.Tensor) -> torch.Tensor:
        r""":math:`\ell_b(\sigma(\text{logit}))` elementwise for ``gate_logits`` ``(n, B)`` and ``wiener`` ``(B,)``."""
        rate = 0.5 * F.softplus(gate_logits)
        relevance = 0.5 * torch.log1p(-torch.sigmoid(gate_logits) * wiener)
        return rate + self.beta * relevance

    def optimum(self, target_gate: torch.Tensor, wiener: torch.Tensor) -> torch.Tensor:
        r""":math:`\ell_b(g_b^\star)` per band."""
        return -0.5 * torch.log1p(-target_gate) + 0.5 * self.beta * torch.log1p(-target_gate * wiener)

    def forward(self, gate_logits: torch.Tensor, gains: BandGains) -> torch.Tensor:
        excess = self.lagrangian(gate_logits, gains.wiener) - self.optimum(gains.target_gate, gains.wiener)
        return excess.sum(dim=1).mean()
