"""FITMM's components, one property each: bands, fusion, gate, IB gains, consistency, reduction."""

import math

import pytest
import torch

from fitmm_core.models.fitmm import (
    FrequencyInformationBottleneck,
    ResidualBandGate,
    SpectralConsistency,
    SpectralDecomposition,
    WithinBandFusion,
    band_signal_noise,
)
from fitmm_core.models.fitmm.representations import principal_feature_basis, reduced_features
from fitmm_core.models.fitmm.spectral import band_slices, covariance_basis, dct_basis


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_band_slices_partition_the_coordinates():
    assert band_slices(8, 3) == [slice(0, 3), slice(3, 6), slice(6, 8)]
    with pytest.raises(ValueError, match="num_bands=9"):
        band_slices(8, 9)


@pytest.mark.parametrize("basis", ["covariance", "dct"])
def test_bands_are_orthogonal_sum_back_and_projectors_are_idempotent(basis):
    x = torch.randn(40, 16, generator=generator()) @ torch.randn(16, 16, generator=generator(1))
    spectral = SpectralDecomposition(16, num_bands=3, basis=basis)
    spectral.refresh(x)
    bands = spectral(x)
    assert bands.shape == (40, 3, 16)
    torch.testing.assert_close(bands.sum(dim=1), x, rtol=0, atol=1e-5)
    for b in range(3):
        for c in range(b + 1, 3):
            assert (bands[:, b] * bands[:, c]).sum(-1).abs().max() < 1e-4
        p = spectral.projector(b)
        torch.testing.assert_close(p @ p, p, rtol=0, atol=1e-5)
        torch.testing.assert_close(bands[:, b], x @ p, rtol=0, atol=1e-4)
    total = sum(spectral.projector(b) for b in range(3))
    torch.testing.assert_close(total, torch.eye(16), rtol=0, atol=1e-5)


def test_covariance_basis_orders_directions_by_variance():
    scales = torch.tensor([1.0, 5.0, 0.1, 3.0])
    x = torch.randn(2000, 4, generator=generator()) * scales
    basis = covariance_basis(x)
    torch.testing.assert_close(basis.T @ basis, torch.eye(4), rtol=0, atol=1e-5)
    leading_axes = basis.abs().argmax(dim=0).tolist()
    assert leading_axes == [1, 3, 0, 2]


def test_covariance_basis_is_computed_on_first_refresh_and_kept_in_state_dict():
    spectral = SpectralDecomposition(4, num_bands=2)
    assert spectral.needs_refresh and torch.equal(spectral.basis, torch.eye(4))
    spectral.refresh(torch.randn(30, 4, generator=generator()))
    assert not spectral.needs_refresh
    reloaded = SpectralDecomposition(4, num_bands=2)
    reloaded.load_state_dict(spectral.state_dict())
    assert not reloaded.needs_refresh and torch.equal(reloaded.basis, spectral.basis)


def test_dct_basis_is_orthonormal_and_ordered_by_frequency():
    basis = dct_basis(8)
    torch.testing.assert_close(basis.T @ basis, torch.eye(8), rtol=0, atol=1e-6)
    torch.testing.assert_close(basis[:, 0], torch.full((8,), 1 / math.sqrt(8)))
    sign_changes = [(basis[1:, k] * basis[:-1, k] < 0).sum().item() for k in range(8)]
    assert sign_changes == list(range(8))


def test_fusion_is_a_per_band_convex_combination_of_modality_bands():
    spectral = SpectralDecomposition(5, num_bands=2, basis="dct")
    fusion = WithinBandFusion(num_bands=2, num_modalities=2)
    with torch.no_grad():
        fusion.logits.copy_(torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]]))
    image, text = torch.randn(2, 7, 5, generator=generator())
    fused = fusion(spectral.coefficients(torch.stack([image, text])), spectral.slices)
    components = spectral.components(fused)
    p0, p1 = spectral.projector(0), spectral.projector(1)
    torch.testing.assert_close(components[:, 0], 0.5 * image @ p0 + 0.5 * text @ p0, rtol=0, atol=1e-5)
    torch.testing.assert_close(components[:, 1], 0.75 * image @ p1 + 0.25 * text @ p1, rtol=0, atol=1e-5)
    single = WithinBandFusion(num_bands=2, num_modalities=1)
    coefficients = spectral.coefficients(image)
    assert torch.equal(single(coefficients.unsqueeze(0), spectral.slices), coefficients)


def test_gate_with_zero_gates_returns_the_base_exactly():
    base = torch.randn(6, 4, generator=generator())
    components = torch.randn(6, 3, 4, generator=generator(1))
    assert torch.equal(ResidualBandGate.combine(base, components, torch.zeros(6, 3)), base)
    gate = ResidualBandGate(context_dim=5, num_bands=3)
    with torch.no_grad():
        gate.linear.bias.fill_(-float("inf"))
    assert torch.equal(gate(base, components, torch.randn(6, 5, generator=generator(2))), base)
    ones = ResidualBandGate.combine(base, components, torch.ones(6, 3))
    torch.testing.assert_close(ones, base + components.sum(dim=1))


SLICES = band_slices(18, 3)


def planted_coefficients(n=4000):
    """Two modalities, three bands of 6 coordinates: bands 0 and 1 share a signal, band 2 is
    independent noise in each modality."""
    g = generator()
    signal = torch.randn(n, 12, generator=g)
    image = torch.cat([signal + 0.1 * torch.randn(n, 12, generator=g), torch.randn(n, 6, generator=g)], 1)
    text = torch.cat([signal + 0.1 * torch.randn(n, 12, generator=g), torch.randn(n, 6, generator=g)], 1)
    return torch.stack([image, text])


def test_signal_noise_estimate_on_planted_bands():
    signal, noise = band_signal_noise(planted_coefficients(), SLICES)
    torch.testing.assert_close(signal[:2], torch.full((2,), 6.0), rtol=0.1, atol=0)
    torch.testing.assert_close(noise[:2], torch.full((2,), 0.06), rtol=0.2, atol=0)
    assert signal[2] < 0.3 and noise[2] > 5.5
    with pytest.raises(ValueError, match="two modalities"):
        band_signal_noise(planted_coefficients()[:1], SLICES)


def test_signal_noise_matches_the_band_definition_for_three_modalities():
    x = torch.randn(3, 50, 4, generator=generator())
    slices = band_slices(4, 2)
    signal, noise = band_signal_noise(x, slices)
    centered = x - x.mean(dim=1, keepdim=True)
    for b, s in enumerate(slices):
        gram = torch.einsum("mnd,knd->mk", centered[..., s], centered[..., s]) / 50
        power = gram.diagonal().mean()
        cross = (gram.sum() - gram.diagonal().sum()) / 6
        expected_signal = cross.clamp(min=0).minimum(power)
        torch.testing.assert_close(signal[b], expected_signal, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(noise[b], power - expected_signal, rtol=1e-5, atol=1e-6)


def test_ib_shuts_off_the_noise_band_and_keeps_signal_bands():
    ib = FrequencyInformationBottleneck(beta=4.0)
    gains = ib.gains(planted_coefficients(), SLICES)
    assert gains.wiener[2] < 0.05 and gains.target_gate[2] == 0 and gains.shrinkage[2] == 0
    assert (gains.wiener[:2] > 0.98).all() and (gains.target_gate[:2] > 0.99).all()
    # the IB term alone drives free gates to the same allocation
    logits = torch.zeros(1, 3, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=0.1)
    for _ in range(300):
        optimizer.zero_grad()
        ib(logits, gains).backward()
        optimizer.step()
    gates = torch.sigmoid(logits.detach())[0]
    assert gates[2] < 0.05 and (gates[:2] > 0.9).all()


@pytest.mark.parametrize("wiener", [0.1, 0.3, 0.6, 0.95])
def test_ib_target_gate_minimises_the_band_lagrangian(wiener):
    ib = FrequencyInformationBottleneck(beta=3.0)
    gamma = torch.tensor([wiener], dtype=torch.float64)
    shrinkage = ((3.0 * gamma - 1) / 2).clamp(min=0)
    target = torch.where(gamma > 0, shrinkage / gamma, gamma).clamp(max=1)
    grid = torch.linspace(-12, 12, 20001, dtype=torch.float64).unsqueeze(1)
    values = ib.lagrangian(grid, gamma).squeeze(1)
    best_gate = torch.sigmoid(grid[values.argmin()]).item()
    assert abs(best_gate - target.item()) < 1e-3
    assert values.min() >= ib.optimum(target, gamma).item() - 1e-9
    assert (wiener <= 1 / 3.0) == (target.item() == 0.0)


def test_ib_loss_is_non_negative_and_zero_at_the_optimum():
    ib = FrequencyInformationBottleneck(beta=4.0)
    gains = ib.gains(planted_coefficients(), SLICES)
    random_logits = torch.randn(50, 3, generator=generator())
    assert ib(random_logits, gains) >= 0
    at_optimum = torch.logit(gains.target_gate.clamp(min=1e-6)).unsqueeze(0)
    assert ib(at_optimum, gains).abs() < 1e-4


@pytest.mark.parametrize("dim", [12, 11])  # equal and unequal band sizes
def test_consistency_is_zero_for_aligned_and_positive_for_misaligned_modalities(dim):
    slices = band_slices(dim, 3)
    x = torch.randn(10, dim, generator=generator())
    cosine = SpectralConsistency("cosine")
    assert cosine(torch.stack([x, 2.0 * x]), slices).abs() < 1e-6
    assert cosine(torch.stack([x, -x]), slices) == pytest.approx(2.0, abs=1e-6)
    assert cosine(torch.stack([x, torch.randn(10, dim, generator=generator(1))]), slices) > 0.5
    assert cosine(x.unsqueeze(0), slices) == 0
    # aligned in bands 0 and 2, opposite in band 1: (0 + 2 + 0) / 3
    flipped = x.clone()
    flipped[:, slices[1]] *= -1
    assert cosine(torch.stack([x, flipped]), slices) == pytest.approx(2 / 3, abs=1e-6)


def test_consistency_on_coefficients_equals_cosine_of_band_representations():
    spectral = SpectralDecomposition(8, num_bands=2, basis="dct")
    image, text = torch.randn(2, 6, 8, generator=generator())
    loss = SpectralConsistency("cosine")(spectral.coefficients(torch.stack([image, text])), spectral.slices)
    bands_image, bands_text = spectral(image), spectral(text)
    expected = (1 - torch.nn.functional.cosine_similarity(bands_image, bands_text, dim=-1)).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)


def test_infonce_consistency_prefers_aligned_pairs():
    x = torch.randn(16, 16, generator=generator())
    slices = band_slices(16, 2)
    infonce = SpectralConsistency("infonce", temperature=0.1)
    aligned = infonce(torch.stack([x, x]), slices)
    shuffled = infonce(torch.stack([x, x[torch.randperm(16, generator=generator(3))]]), slices)
    assert aligned < 0.1 and shuffled > 1.0


def test_consistency_rejects_unknown_mode():
    with pytest.raises(ValueError, match="consistency='l1'"):
        SpectralConsistency("l1")


def test_principal_basis_spans_the_planted_subspace():
    g = generator()
    low_rank = torch.randn(200, 3, generator=g) @ torch.randn(3, 50, generator=g)
    features = low_rank + 1.0 + 1e-3 * torch.randn(200, 50, generator=g)
    basis = principal_feature_basis(features, rank=3)
    torch.testing.assert_close(basis.T @ basis, torch.eye(3), rtol=0, atol=1e-4)
    centered = features - features.mean(0)
    _, _, vh = torch.linalg.svd(centered, full_matrices=False)
    exact = vh[:3].T
    torch.testing.assert_close(basis @ basis.T, exact @ exact.T, rtol=0, atol=1e-3)
    assert torch.equal(basis, principal_feature_basis(features, rank=3))
    assert torch.equal(principal_feature_basis(features, rank=64), torch.eye(50))
    reduced = reduced_features(features, basis)
    torch.testing.assert_close(reduced.pow(2).sum(1).mean(), torch.tensor(1.0))
