"""Shared fixtures: every test runs with its own FITMM_HOME and never touches the developer's state."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def fitmm_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty FITMM_HOME; MLflow falls back to sqlite inside it."""
    home = tmp_path / "fitmm_home"
    home.mkdir()
    monkeypatch.setenv("FITMM_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("FITMM_DEVICE", raising=False)
    return home

