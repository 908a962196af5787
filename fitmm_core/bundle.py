"""A trained model as a folder that rebuilds it anywhere: config, weights and the inputs it was built on.

``config.json`` names the model and its settings, ``weights.safetensors`` holds the dense state dict
(no pickles), ``inputs.npz`` the training pairs and item features the model's graphs are built from,
``item_ids.json`` the raw item ids (asins) by contiguous id. Loading rebuilds the model with the
registry and loads the weights, so scores are exactly the trained model's.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from fitmm_core.models import build_model
from fitmm_core.models.base import ModelInputs, Recommender
from fitmm_core.device import model_device

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
INPUTS_FILE = "inputs.npz"
ITEM_IDS_FILE = "item_ids.json"


@dataclass(frozen=True)
class LoadedBundle:
    """A rebuilt model with what scoring needs beside it."""

    model: Recommender
    inputs: ModelInputs
    config: dict
    item_ids: list[str]


def save_bundle(
    folder: Path,
    model_name: str,
    settings: dict,
    model: Recommender,
    inputs: ModelInputs,
    item_ids: list[str],
    extra: dict | None = None,
) -> Path:
    """Write the bundle atomically: a temporary sibling folder renamed into place."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        config = {
            "model": model_name,
            "settings": settings,
            "n_users": inputs.n_users,
            "n_items": inputs.n_items,
            "modalities": sorted(inputs.features),
            **(extra or {}),
        }
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(staging / WEIGHTS_FILE))
        arrays = {"train_pairs": inputs.train_pairs}
        arrays.update({f"feature_{m}": f for m, f in inputs.features.items()})
        np.savez(staging / INPUTS_FILE, **arrays)
        (staging / ITEM_IDS_FILE).write_text(json.dumps(item_ids))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def load_bundle(folder: Path, device: str | torch.device = "cpu") -> LoadedBundle:
    """Rebuild the model of a bundle folder on ``device``, in eval mode."""
    folder = Path(folder)
    missing = [f for f in (CONFIG_FILE, WEIGHTS_FILE, INPUTS_FILE, ITEM_IDS_FILE) if not (folder / f).exists()]
    if missing:
        raise FileNotFoundError(f"{folder}: not a model bundle, missing {missing}")
    config = json.loads((folder / CONFIG_FILE).read_text())
    with np.load(folder / INPUTS_FILE) as arrays:
        features = {k.removeprefix("feature_"): arrays[k] for k in arrays.files if k.startswith("feature_")}
        inputs = ModelInputs(config["n_users"], config["n_items"], arrays["train_pairs"], features)
    model = build_model(config["model"], inputs, config["settings"])
    model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
    model.to(device).eval()
    item_ids = json.loads((folder / ITEM_IDS_FILE).read_text())
    return LoadedBundle(model=model, inputs=inputs, config=config, item_ids=item_ids)


def recommend(bundle: LoadedBundle, users: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` unseen items per user: ``(item ids, scores)``, each ``(len(users), k)``.

    Items the user interacted with in training are excluded (score set to ``-inf`` before top-k).
    """
    users = np.asarray(users, dtype=np.int64)
    if users.size and (users.min() < 0 or users.max() >= bundle.inputs.n_users):
        raise ValueError(f"user ids must lie in [0, {bundle.inputs.n_users}); got {users.min()}..{users.max()}")
    k = min(k, bundle.inputs.n_items)
    unique_users, inverse = np.unique(users, return_inverse=True)
    device = model_device(bundle.model)
    with torch.no_grad():
        scores = bundle.model.full_sort_predict(torch.as_tensor(unique_users, device=device)).float()
    pairs = bundle.inputs.train_pairs
    seen = pairs[np.isin(pairs[:, 0], unique_users)]
    rows = torch.as_tensor(np.searchsorted(unique_users, seen[:, 0]), device=device)
    scores[rows, torch.as_tensor(seen[:, 1], device=device)] = float("-inf")
    top = torch.topk(scores, k, dim=1)
    return top.indices.cpu().numpy()[inverse], top.values.cpu().numpy()[inverse]

