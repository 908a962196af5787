"""MostPop, LightGCN and FREEDOM on a tiny planted dataset."""

import numpy as np
import pytest
import torch

from fitmm_core.graphs import normalized_user_item_adjacency
from fitmm_core.models import FREEDOM, BprBatch, LightGCN, ModelInputs, MostPop


def tiny_inputs(modalities=("image", "text")) -> ModelInputs:
    """30 users, 20 items in 4 groups; user u interacts with items of group u % 4; 8-d features."""
    rng = np.random.default_rng(0)
    pairs = np.array([(u, i) for u in range(30) for i in range(20) if i % 4 == u % 4 and rng.random() < 0.7])
    group = np.eye(4)[np.arange(20) % 4]
    features = {
        m: np.hstack([group, 0.3 * rng.normal(size=(20, 4))]).astype(np.float32) for m in modalities
    }
    return ModelInputs(30, 20, pairs, features)


def full_batch(inputs: ModelInputs, seed: int = 0) -> BprBatch:
    rng = np.random.default_rng(seed)
    pairs = torch.as_tensor(inputs.train_pairs)
    return BprBatch(pairs[:, 0], pairs[:, 1], torch.as_tensor(rng.integers(0, inputs.n_items, len(pairs))))


def train_steps(model, batch, steps=30, lr=0.01) -> list[float]:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        model.pre_epoch()
        loss = model.calculate_loss(batch)["loss"]
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_mostpop_scores_are_training_counts():
    inputs = ModelInputs(3, 4, np.array([[0, 1], [1, 1], [2, 1], [0, 3], [1, 3], [2, 0]]), {})
    model = MostPop(inputs)
    assert not model.trainable
    scores = model.full_sort_predict(torch.tensor([0, 2]))
    assert torch.equal(scores, torch.tensor([[1.0, 3.0, 0.0, 2.0]] * 2))
    scores[0, 1] = -float("inf")  # the evaluator masks in place: rows must not alias each other
    assert scores[1, 1] == 3.0
    with pytest.raises(RuntimeError, match="no parameters"):
        model.calculate_loss(full_batch(inputs))


def test_lightgcn_representation_is_the_layer_mean_of_dense_propagation():
    inputs = tiny_inputs()
    model = LightGCN(inputs, embedding_dim=8, num_layers=2)
    adjacency = normalized_user_item_adjacency(30, 20, inputs.train_pairs).to_dense()
    ego = torch.cat([model.user_embedding.weight, model.item_embedding.weight]).detach()
    expected = (ego + adjacency @ ego + adjacency @ adjacency @ ego) / 3
    users, items = model.representations()
    torch.testing.assert_close(torch.cat([users, items]).detach(), expected, rtol=1e-5, atol=1e-6)
    scores = model.eval().full_sort_predict(torch.tensor([3, 7]))
    torch.testing.assert_close(scores, expected[[3, 7]] @ expected[30:].T, rtol=1e-5, atol=1e-6)


def test_lightgcn_loss_terms_and_gradient_match_autograd_through_dense_graph():
    inputs = tiny_inputs()
    batch = full_batch(inputs)
    model = LightGCN(inputs, embedding_dim=8, reg_weight=0.5)
    out = model.calculate_loss(batch)
    assert set(out) == {"loss", "bpr", "reg"}
    ego = torch.cat([model.user_embedding.weight, model.item_embedding.weight])
    expected_reg = 0.5 * (ego[batch.users].pow(2).sum() + ego[30 + batch.pos_items].pow(2).sum()
                          + ego[30 + batch.neg_items].pow(2).sum()) / len(batch.users)
    torch.testing.assert_close(out["reg"], expected_reg)
    out["loss"].backward()
    sparse_grad = model.user_embedding.weight.grad.clone()
    model.zero_grad()
    adjacency = normalized_user_item_adjacency(30, 20, inputs.train_pairs).to_dense()
    final = (ego + adjacency @ ego + adjacency @ adjacency @ ego) / 3
    u = final[batch.users]
    dense_rank = torch.nn.functional.softplus(
        (u * final[30 + batch.neg_items]).sum(-1) - (u * final[30 + batch.pos_items]).sum(-1)
    ).mean()
    (dense_rank + expected_reg).backward()
    torch.testing.assert_close(sparse_grad, model.user_embedding.weight.grad, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("cls", [LightGCN, FREEDOM])
def test_loss_decreases_on_planted_data(cls):
    torch.manual_seed(0)
    inputs = tiny_inputs()
    model = cls(inputs, embedding_dim=16, **({"knn_k": 3} if cls is FREEDOM else {}))
    losses = train_steps(model, full_batch(inputs))
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("cls", [LightGCN, FREEDOM, MostPop])
def test_state_dict_round_trip_gives_identical_scores(cls):
    torch.manual_seed(0)
    inputs = tiny_inputs()
    kwargs = {"knn_k": 3} if cls is FREEDOM else {}
    model = cls(inputs, **kwargs)
    if model.trainable:
        train_steps(model, full_batch(inputs), steps=3)
    state = model.state_dict()
    assert all(t.layout == torch.strided for t in state.values())
    torch.manual_seed(1)
    rebuilt = cls(inputs, **kwargs)
    rebuilt.load_state_dict(state)
    users = torch.arange(30)
    with torch.no_grad():
        assert torch.equal(model.eval().full_sort_predict(users), rebuilt.eval().full_sort_predict(users))


def test_freedom_prunes_edges_each_epoch_and_evaluates_on_the_full_graph():
    torch.manual_seed(0)
    inputs = tiny_inputs()
    model = FREEDOM(inputs, knn_k=3, edge_dropout=0.5)
    n_edges = len(np.unique(inputs.train_pairs, axis=0))
    model.pre_epoch()
    assert model.pruned_adjacency.matrix._nnz() == 2 * int(n_edges * 0.5)
    first = model.pruned_adjacency.matrix.col_indices().clone()
    model.pre_epoch()
    assert not torch.equal(first, model.pruned_adjacency.matrix.col_indices())
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.full_sort_predict(torch.arange(30)),
                                   model.representations()[0] @ model.representations()[1].T)


def test_freedom_without_features_is_lightgcn_with_pruning():
    inputs = tiny_inputs(modalities=())
    model = FREEDOM(inputs, edge_dropout=0.0)
    assert model.item_graph is None
    out = model.calculate_loss(full_batch(inputs))
    assert out["modality_bpr"] == 0 and torch.isfinite(out["loss"])


def test_evaluation_cache_is_dropped_when_training_resumes():
    torch.manual_seed(0)
    inputs = tiny_inputs()
    model = LightGCN(inputs).eval()
    with torch.no_grad():
        before = model.full_sort_predict(torch.arange(5))
    model.train()
    train_steps(model, full_batch(inputs), steps=2)
    model.eval()
    with torch.no_grad():
        after = model.full_sort_predict(torch.arange(5))
        expected = model.representations()
    assert not torch.equal(before, after)
    torch.testing.assert_close(after, expected[0][:5] @ expected[1].T)
