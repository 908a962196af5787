"""Where the project keeps its state: ``FITMM_HOME`` (default ``.fitmm/`` in the current directory)."""

from __future__ import annotations

import os
from pathlib import Path


def fitmm_home() -> Path:
    """The state folder: asset outputs, the feature cache, the Dagster instance and MLflow's store."""
    return Path(os.environ.get("FITMM_HOME", ".fitmm")).resolve()


def feature_cache_dir() -> Path:
    """The encoder cache shared by every dataset (vectors keyed by encoder and item content)."""
    return fitmm_home() / "feature_cache"
