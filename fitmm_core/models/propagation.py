"""Sparse propagation shared by the graph models, and inference caching for full-sort scoring.

``SparseGraph`` holds a graph as CSR non-persistent buffers (so ``state_dict`` stays dense and
``.to(device)`` moves it); multiplying through it back-propagates with the stored transpose
(the graph itself when symmetric) instead of transposing the CSR matrix every step.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from fitmm_core.models.base import Recommender


class _SparseMatmul(torch.autograd.Function):
    """``y = A x`` with ``dL/dx = A^T dL/dy``; ``A`` and ``A^T`` are constants (no gradient).

    cuSPARSE has no float32-matrix x bfloat16-dense product, so under CUDA autocast the dense
    input is cast to float32 and both passes run in float32 (``torch.amp.custom_fwd`` /
    ``custom_bwd``); outside autocast, and on the CPU, the decorators do nothing.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, matrix: torch.Tensor, matrix_t: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        ctx.matrix_t = matrix_t
        return torch.sparse.mm(matrix, dense)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad: torch.Tensor) -> tuple[None, None, torch.Tensor]:
        return None, None, torch.sparse.mm(ctx.matrix_t, grad.to(ctx.matrix_t.dtype))


def _is_symmetric(matrix: torch.Tensor) -> bool:
    a = matrix.coalesce()
    b = a.t().coalesce()
    return torch.equal(a.indices(), b.indices()) and torch.equal(a.values(), b.values())


class SparseGraph(nn.Module):
    """A fixed sparse ``(N, N)`` operator ``A``; ``graph(x)`` computes ``A x`` for dense ``x``."""

    def __init__(self, matrix: torch.Tensor) -> None:
        super().__init__()
        coo = matrix.coalesce().to(torch.float32)
        self.symmetric = _is_symmetric(coo)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
            self.register_buffer("matrix", coo.to_sparse_csr(), persistent=False)
            if not self.symmetric:
                self.register_buffer("matrix_t", coo.t().coalesce().to_sparse_csr(), persistent=False)

    @property
    def shape(self) -> torch.Size:
        return self.matrix.shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        transpose = self.matrix if self.symmetric else self.matrix_t
        return _SparseMatmul.apply(self.matrix, transpose, x)


def light_propagate(graph: SparseGraph, x: torch.Tensor, num_layers: int) -> torch.Tensor:
    r"""LightGCN's layer mean :math:`\frac{1}{L+1}\sum_{l=0}^{L} \hat A^l x`."""
    total = x
    layer = x
    for _ in range(num_layers):
        layer = graph(layer)
        total = total + layer
    return total / (num_layers + 1)


class GraphRecommender(Recommender):
    """A recommender scoring ``u . i`` from full-graph representations.

    Subclasses implement ``representations()`` -> ``(users (U, d), items (I, d))``. In eval mode
    under ``torch.no_grad()`` the representations are computed once and reused across the
    evaluator's user batches; ``train()``, ``load_state_dict`` and ``.to()`` drop the cache.
    """

    def __init__(self) -> None:
        super().__init__()
        self._inference_cache: tuple[torch.Tensor, torch.Tensor] | None = None
        self.register_load_state_dict_post_hook(lambda module, _keys: module.clear_inference_cache())

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def clear_inference_cache(self) -> None:
        self._inference_cache = None

    def train(self, mode: bool = True) -> "GraphRecommender":
        self.clear_inference_cache()
        return super().train(mode)

    def _apply(self, fn, recurse=True):  # noqa: ANN001 - torch's signature
        self.clear_inference_cache()
        return super()._apply(fn, recurse)

    def inference_representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training or torch.is_grad_enabled():
            return self.representations()
        if self._inference_cache is None:
            self._inference_cache = self.representations()
        return self._inference_cache

    def full_sort_predict(self, users: torch.Tensor) -> torch.Tensor:
        user_rep, item_rep = self.inference_representations()
        return user_rep[users] @ item_rep.T
