"""The assembled FITMM model: shapes, loss terms, training, reload, ablations, missing modalities."""

import numpy as np
import pytest
import torch
from safetensors.torch import load, save

from fitmm_core.graphs import mixed_knn_item_graph, normalized_user_item_adjacency
from fitmm_core.models import FITMM, BprBatch, ModelInputs


def tiny_inputs(modalities=("image", "text"), dim=8) -> ModelInputs:
    """30 users, 20 items in 4 groups; user u interacts with items of group u % 4."""
    rng = np.random.default_rng(0)
    pairs = np.array([(u, i) for u in range(30) for i in range(20) if i % 4 == u % 4 and rng.random() < 0.7])
    group = np.eye(4)[np.arange(20) % 4]
    features = {
        m: np.hstack([group, 0.3 * rng.normal(size=(20, dim - 4))]).astype(np.float32) for m in modalities
    }
    return ModelInputs(30, 20, pairs, features)


def full_batch(inputs: ModelInputs, seed: int = 0) -> BprBatch:
    rng = np.random.default_rng(seed)
    pairs = torch.as_tensor(inputs.train_pairs)
    return BprBatch(pairs[:, 0], pairs[:, 1], torch.as_tensor(rng.integers(0, inputs.n_items, len(pairs))))


def build(inputs=None, **settings) -> FITMM:
    torch.manual_seed(0)
    return FITMM(inputs or tiny_inputs(), embedding_dim=16, knn_k=3, **settings)


def train_steps(model, batch, steps=30, lr=0.01) -> list[dict[str, float]]:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for step in range(steps):
        if step % 10 == 0:
            model.pre_epoch()
        out = model.calculate_loss(batch)
        assert all(torch.isfinite(v) for v in out.values())
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        history.append({k: v.item() for k, v in out.items()})
    return history


def test_shapes_and_loss_terms():
    model = build()
    out = model.calculate_loss(full_batch(tiny_inputs()))
    assert set(out) == {"loss", "bpr", "ib", "consistency", "reg"}
    total = out["bpr"] + 0.1 * out["ib"] + 0.01 * out["consistency"] + out["reg"]
    torch.testing.assert_close(out["loss"], total)
    assert out["ib"] >= 0 and out["consistency"] > 0 and out["reg"] > 0
    forward = model()
    assert forward.final.shape == (50, 16) and forward.coefficients.shape == (2, 50, 16)
    modality = model.encoder.modality_representations()
    torch.testing.assert_close(model.spectral(modality).sum(dim=2), modality, atol=1e-5, rtol=0)
    components = model.spectral.components(model.fusion(forward.coefficients, model.spectral.slices))
    gates = torch.sigmoid(forward.gate_logits)
    expected = model.encoder()[1] + (gates.unsqueeze(-1) * components).sum(dim=1)
    torch.testing.assert_close(forward.final, expected)
    scores = model.eval().full_sort_predict(torch.tensor([0, 5, 29]))
    assert scores.shape == (3, 20)


def test_batch_forward_equals_the_rows_of_the_full_forward():
    model = build()
    nodes = torch.tensor([3, 0, 41, 30, 49])
    part, full = model(nodes), model()
    torch.testing.assert_close(part.final, full.final[nodes])
    torch.testing.assert_close(part.coefficients, full.coefficients[:, nodes])
    torch.testing.assert_close(part.gate_logits, full.gate_logits[nodes])


def test_loss_decreases_and_planted_preferences_are_learned():
    inputs = tiny_inputs()
    model = build(inputs)
    history = train_steps(model, full_batch(inputs), steps=60)
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    assert history[-1]["consistency"] < history[0]["consistency"]
    with torch.no_grad():
        scores = model.eval().full_sort_predict(torch.arange(30))
    same_group = torch.arange(20)[None, :] % 4 == torch.arange(30)[:, None] % 4
    assert scores[same_group].mean() > scores[~same_group].mean() + 1.0


@pytest.mark.parametrize("smooth, n_mm_layers", [(True, 1), (True, 2), (False, 1), (True, 0)])
def test_item_ids_are_smoothed_on_the_frozen_item_graph(smooth, n_mm_layers):
    inputs = tiny_inputs()
    model = build(inputs, smooth_item_ids=smooth, n_mm_layers=n_mm_layers)
    adjacency = normalized_user_item_adjacency(30, 20, inputs.train_pairs).to_dense()
    ego = model.encoder.ego_embeddings().detach()
    expected = (ego + adjacency @ ego + adjacency @ adjacency @ ego) / 3
    if smooth and n_mm_layers > 0:
        item_graph = mixed_knn_item_graph(inputs.features, k=3, image_weight=0.1).to_dense()
        expected[30:] += torch.linalg.matrix_power(item_graph, n_mm_layers) @ ego[30:]
    _, base, _ = model.encoder()
    torch.testing.assert_close(base.detach(), expected, rtol=1e-5, atol=1e-6)
    assert (model.encoder.item_graph is None) == (n_mm_layers == 0)


def test_item_id_smoothing_passes_gradient_to_content_neighbours():
    # content groups i // 5 cut across interaction groups i % 4: item 0's content neighbours 1-3
    # share no user with it, so only the item graph links their embeddings to item 0's representation
    base_inputs = tiny_inputs()
    rng = np.random.default_rng(1)
    content = np.hstack([np.eye(4)[np.arange(20) // 5], 0.1 * rng.normal(size=(20, 4))]).astype(np.float32)
    inputs = ModelInputs(30, 20, base_inputs.train_pairs, {"image": content, "text": content})
    model = build(inputs)
    item_graph = mixed_knn_item_graph(inputs.features, k=3, image_weight=0.1).to_dense()
    target = 0
    _, base, _ = model.encoder(torch.tensor([30 + target]))
    base.sum().backward()
    grad = model.encoder.item_embedding.weight.grad
    adjacency = normalized_user_item_adjacency(30, 20, inputs.train_pairs).to_dense()
    ui_reach = (adjacency + adjacency @ adjacency)[30 + target, 30:] != 0
    only_item_graph = (item_graph[target] != 0) & ~ui_reach
    assert only_item_graph.sum() >= 1
    row_sums = grad[only_item_graph].sum(dim=1)
    torch.testing.assert_close(row_sums, 16 * item_graph[target, only_item_graph], rtol=1e-5, atol=1e-6)


def test_state_dict_round_trip_reproduces_scores_exactly():
    inputs = tiny_inputs(dim=12)
    model = build(inputs, feature_rank=5)
    assert model.encoder.feature_basis_image.shape == (12, 5)
    train_steps(model, full_batch(inputs), steps=12)
    state = model.state_dict()
    assert all(t.layout == torch.strided for t in state.values())
    restored_state = load(save(state))
    torch.manual_seed(123)
    rebuilt = FITMM(inputs, embedding_dim=16, knn_k=3, feature_rank=5)
    rebuilt.load_state_dict(restored_state)
    users = torch.arange(30)
    with torch.no_grad():
        assert torch.equal(model.eval().full_sort_predict(users), rebuilt.eval().full_sort_predict(users))


def test_changed_feature_basis_is_propagated_again_on_load():
    inputs = tiny_inputs(dim=12)
    model = build(inputs, feature_rank=5)
    state = model.state_dict()
    state["encoder.feature_basis_text"] = torch.linalg.qr(torch.randn(12, 5)).Q
    model.load_state_dict(state)
    other = build(inputs, feature_rank=5)
    other.encoder.feature_basis_text.copy_(state["encoder.feature_basis_text"])
    expected = other.encoder._propagate_features("text", state["encoder.feature_basis_text"])
    torch.testing.assert_close(model.encoder.propagated_text, expected)


def test_covariance_basis_is_refreshed_by_pre_epoch():
    inputs = tiny_inputs()
    model = build(inputs)
    model()  # first use computes the basis
    first = model.spectral.basis.clone()
    assert not torch.equal(first, torch.eye(16))
    train_steps(model, full_batch(inputs), steps=5)
    model.pre_epoch()
    assert not torch.equal(first, model.spectral.basis)


@pytest.mark.parametrize(
    "settings",
    [
        {"use_spectral": False},
        {"use_gate": False},
        {"use_ib": False},
        {"use_consistency": False},
        {"smooth_item_ids": False},
        {"spectral_basis": "dct"},
        {"loss": "bce"},
        {"consistency": "infonce"},
        {"num_bands": 1},
    ],
)
def test_every_setting_trains(settings):
    inputs = tiny_inputs()
    model = build(inputs, **settings)
    history = train_steps(model, full_batch(inputs), steps=15)
    assert history[-1]["loss"] < history[0]["loss"]
    last = history[-1]
    if settings.get("use_ib") is False or settings.get("use_gate") is False:
        assert last["ib"] == 0
    if settings.get("use_consistency") is False:
        assert last["consistency"] == 0
    if settings.get("loss") == "bce":
        assert "bce" in last and "bpr" not in last


def test_without_gate_the_bands_are_summed():
    model = build(use_gate=False)
    forward = model()
    fused = model.fusion(forward.coefficients, model.spectral.slices)
    expected = model.encoder()[1] + model.spectral.components(fused).sum(dim=1)
    torch.testing.assert_close(forward.final, expected)


def test_single_modality_degrades_gracefully():
    inputs = tiny_inputs(modalities=("text",))
    model = build(inputs)
    history = train_steps(model, full_batch(inputs), steps=10)
    assert history[-1]["ib"] == 0 and history[-1]["consistency"] == 0
    gains = model.band_gains()
    assert set(gains) == {"gate", "weight_text"} and gains["weight_text"] == [1.0, 1.0, 1.0]


def test_no_modality_is_lightgcn():
    inputs = tiny_inputs(modalities=())
    model = build(inputs)
    forward = model()
    assert forward.coefficients is None
    torch.testing.assert_close(forward.final, model.encoder()[1])
    assert model.band_gains() == {}
    history = train_steps(model, full_batch(inputs), steps=10)
    assert history[-1]["loss"] < history[0]["loss"]


def test_band_gains_report_per_band_figures():
    gains = build().band_gains()
    assert set(gains) == {"gate", "weight_image", "weight_text", "wiener", "target_gate", "shrinkage"}
    assert all(len(v) == 3 for v in gains.values())
    assert all(0.0 <= x <= 1.0 for v in gains.values() for x in v)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"loss": "hinge"}, "loss='hinge'"),
        ({"spectral_basis": "wavelet"}, "spectral_basis='wavelet'"),
        ({"num_bands": 17}, "num_bands=17"),
        ({"ib_beta": 1.0}, "ib_beta=1.0"),
        ({"lambda_ib": -1.0}, "lambda_ib"),
    ],
)
def test_bad_settings_are_rejected(settings, message):
    with pytest.raises(ValueError, match=message):
        build(**settings)


def test_bad_features_are_rejected():
    inputs = tiny_inputs()
    bad = ModelInputs(30, 20, inputs.train_pairs, {"image": np.ones((19, 8), dtype=np.float32)})
    with pytest.raises(ValueError, match=r"features\['image'\] has shape \(19, 8\)"):
        FITMM(bad)
