"""Graph construction: exact values on hand examples, chunking invariance, mixing, errors."""

import math
import warnings

import numpy as np
import pytest
import torch

from fitmm_core.graphs import (
    knn_item_graph,
    mix_graphs,
    mixed_knn_item_graph,
    modality_graph_weights,
    normalized_user_item_adjacency,
)
from fitmm_core.models.propagation import SparseGraph


def test_user_item_adjacency_values_on_hand_example():
    # users 0, 1, 2 (2 has no interaction); items 0, 1; the duplicate (0, 0) counts once
    pairs = np.array([[0, 0], [0, 1], [1, 0], [0, 0]])
    adjacency = normalized_user_item_adjacency(3, 2, pairs)
    assert adjacency.layout == torch.sparse_coo and adjacency.is_coalesced()
    expected = torch.zeros(5, 5)
    # degrees: user0 2, user1 1, user2 0, item0 (node 3) 2, item1 (node 4) 1
    expected[0, 3] = expected[3, 0] = 1 / math.sqrt(2 * 2)
    expected[0, 4] = expected[4, 0] = 1 / math.sqrt(2 * 1)
    expected[1, 3] = expected[3, 1] = 1 / math.sqrt(1 * 2)
    torch.testing.assert_close(adjacency.to_dense(), expected, rtol=0, atol=1e-7)
    assert adjacency._nnz() == 6


@pytest.mark.parametrize(
    "pairs, message",
    [
        (np.array([[0, 2]]), "n_items=2"),
        (np.array([[-1, 0]]), "negative"),
        (np.array([0, 1, 2]), "shape"),
        (np.array([[0.5, 1.0]]), "integer"),
    ],
)
def test_user_item_adjacency_rejects_bad_pairs(pairs, message):
    with pytest.raises(ValueError, match=message):
        normalized_user_item_adjacency(2, 2, pairs)


def test_knn_binary_graph_keeps_self_and_nearest_with_value_one_over_k():
    features = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    graph = knn_item_graph(features, k=2).to_dense()
    expected = torch.tensor([[0.5, 0.5, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5], [0, 0, 0.5, 0.5]])
    torch.testing.assert_close(graph, expected, rtol=0, atol=1e-7)


def test_knn_weighted_graph_normalises_similarities_symmetrically():
    features = np.array([[1.0, 0.0], [1.0, 0.5], [0.0, 1.0]])
    graph = knn_item_graph(features, k=2, weighted=True).to_dense()
    near, far = 1 / math.sqrt(1.25), 0.5 / math.sqrt(1.25)  # cos(item 1, item 0), cos(item 1, item 2)
    # every row keeps itself (cos 1) and item 0 or 1, whichever is closer
    s = torch.tensor([[1.0, near, 0.0], [near, 1.0, 0.0], [0.0, far, 1.0]])
    degree = s.sum(dim=1)
    expected = s / torch.sqrt(degree[:, None] * degree[None, :])
    torch.testing.assert_close(graph, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("weighted", [False, True])
def test_knn_chunked_equals_unchunked(weighted):
    features = torch.randn(53, 8, generator=torch.Generator().manual_seed(0))
    whole = knn_item_graph(features, k=5, chunk_size=4096, weighted=weighted)
    chunked = knn_item_graph(features, k=5, chunk_size=7, weighted=weighted)
    assert torch.equal(whole.indices(), chunked.indices())
    torch.testing.assert_close(whole.values(), chunked.values(), rtol=0, atol=1e-6)
    assert whole._nnz() == 53 * 5


def test_knn_drops_edges_of_all_zero_feature_rows():
    features = np.array([[1.0, 0.0], [0.0, 0.0], [0.9, 0.1]])
    graph = knn_item_graph(features, k=2).to_dense()
    assert torch.count_nonzero(graph[1]) == 0 and torch.count_nonzero(graph[:, 1]) == 0
    assert torch.isfinite(graph).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [({"k": 0}, "k=0"), ({"k": 4}, "k=4"), ({"k": 1, "chunk_size": 0}, "chunk_size")],
)
def test_knn_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        knn_item_graph(np.eye(3), **kwargs)


def test_knn_rejects_non_finite_features():
    with pytest.raises(ValueError, match="NaN"):
        knn_item_graph(np.array([[1.0, np.nan], [0.0, 1.0]]), k=1)


def test_mix_graphs_weights_and_renormalisation():
    a = knn_item_graph(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), k=2)
    b = knn_item_graph(np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 0.2]]), k=1)
    mixed = mix_graphs({"image": a, "text": b}, {"image": 0.1, "text": 0.9}).to_dense()
    torch.testing.assert_close(mixed, 0.1 * a.to_dense() + 0.9 * b.to_dense())
    only_text = mix_graphs({"text": b}, {"image": 0.1, "text": 0.9}).to_dense()
    torch.testing.assert_close(only_text, b.to_dense())


def test_mix_graphs_errors():
    a = knn_item_graph(np.eye(3), k=1)
    with pytest.raises(ValueError, match="no weight given for graph"):
        mix_graphs({"image": a}, {"text": 1.0})
    with pytest.raises(ValueError, match="different shapes"):
        mix_graphs({"image": a, "text": knn_item_graph(np.eye(4), k=1)}, {"image": 0.5, "text": 0.5})
    with pytest.raises(ValueError, match="at least one graph"):
        mix_graphs({}, {})


def test_modality_weights_and_mixed_graph():
    assert modality_graph_weights(["image", "text"], 0.1) == {"image": 0.1, "text": 0.9}
    assert modality_graph_weights(["audio", "text"], 0.1) == {"audio": 0.45, "text": 0.45}
    features = {"image": np.eye(4), "text": np.eye(4)[::-1].copy()}
    mixed = mixed_knn_item_graph(features, k=1, image_weight=0.1).to_dense()
    torch.testing.assert_close(mixed, torch.eye(4))


def test_building_and_converting_graphs_raises_no_warning():
    pairs = np.array([[0, 0], [0, 1], [1, 0], [2, 1]])
    features = {"image": np.eye(3, 4, dtype=np.float32) + 0.1, "text": np.ones((3, 2), dtype=np.float32)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adjacency = normalized_user_item_adjacency(3, 3, pairs)
        items = mixed_knn_item_graph(features, k=2, image_weight=0.1)
        SparseGraph(adjacency)
        SparseGraph(items)
