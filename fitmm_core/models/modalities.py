"""Checked access to the item features of ``ModelInputs``."""

from __future__ import annotations

import numpy as np
import torch

from fitmm_core.models.base import ModelInputs


def modality_features(inputs: ModelInputs) -> dict[str, torch.Tensor]:
    """The ``(n_items, dim)`` float32 feature matrix of every modality, in a stable (sorted) order.

    A float32 C-contiguous writeable array is shared, not copied; models never modify features.
    """
    tensors = {}
    for name in sorted(inputs.features):
        matrix = np.asarray(inputs.features[name])
        if matrix.ndim != 2 or matrix.shape[0] != inputs.n_items or matrix.shape[1] < 1:
            raise ValueError(
                f"features[{name!r}] has shape {matrix.shape}; "
                f"expected ({inputs.n_items}, dim) for {inputs.n_items} items"
            )
        shareable = matrix.dtype == np.float32 and matrix.flags.c_contiguous and matrix.flags.writeable
        tensor = torch.from_numpy(matrix) if shareable else torch.tensor(matrix, dtype=torch.float32)
        if not torch.isfinite(tensor).all():
            raise ValueError(f"features[{name!r}] holds NaN or infinite values")
        tensors[name] = tensor
    return tensors
