"""Sparse propagation: exact products and gradients on CPU; float32 sparse products under CUDA bf16 autocast."""

import pytest
import torch

from fitmm_core.models.propagation import SparseGraph, light_propagate


def dense_graph(symmetric: bool) -> torch.Tensor:
    """A 6-node weighted graph with a few zero rows, symmetric or not."""
    matrix = torch.zeros(6, 6)
    matrix[0, 1], matrix[1, 2], matrix[2, 4], matrix[4, 0], matrix[3, 3] = 0.5, 0.25, 1.0, 0.75, 2.0
    return matrix + matrix.T if symmetric else matrix


@pytest.mark.parametrize("symmetric", [True, False])
def test_product_and_gradient_equal_the_dense_ones(symmetric):
    matrix = dense_graph(symmetric)
    graph = SparseGraph(matrix.to_sparse())
    assert graph.symmetric == symmetric and graph.shape == (6, 6)
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    weights = torch.arange(18.0).reshape(6, 3)
    y = graph(x)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, matrix @ x, rtol=0, atol=1e-6)
    (y * weights).sum().backward()
    torch.testing.assert_close(x.grad, matrix.T @ weights, rtol=0, atol=1e-5)


def test_light_propagate_is_the_layer_mean():
    matrix = dense_graph(True)
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(1))
    expected = (x + matrix @ x + matrix @ matrix @ x) / 3
    torch.testing.assert_close(light_propagate(SparseGraph(matrix.to_sparse()), x, 2), expected, rtol=0, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 autocast of the sparse product needs CUDA")
@pytest.mark.parametrize("symmetric", [True, False])
def test_bf16_autocast_runs_the_sparse_product_in_float32(symmetric):
    device = torch.device("cuda")
    matrix = dense_graph(symmetric).to(device)
    graph = SparseGraph(matrix.to_sparse()).to(device)
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 3).to(device)
    features = torch.randn(6, 4, device=device)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        hidden = layer(features)
        assert hidden.dtype == torch.bfloat16
        out = graph(hidden)
    assert out.dtype == torch.float32
    out.pow(2).sum().backward()
    amp_grad = layer.weight.grad.clone()
    layer.zero_grad()
    (matrix @ layer(features)).pow(2).sum().backward()
    torch.testing.assert_close(amp_grad, layer.weight.grad, rtol=0.05, atol=0.05)
