"""Resources other than MLflow: where outputs live, the dataset catalog, and the compute device."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from fitmm_core.paths import fitmm_home
from pipelines.catalog import DatasetEntry, load_catalog


class FitmmStorage(dg.ConfigurableResource):
    """Folders under ``FITMM_HOME``: raw downloads, prepared datasets, trained model bundles."""

    root: str = ""

    def home(self) -> Path:
        return Path(self.root).resolve() if self.root else fitmm_home()

    def raw_dir(self, dataset: str) -> Path:
        return self.home() / "raw" / dataset

    def dataset_dir(self, dataset: str) -> Path:
        return self.home() / "datasets" / dataset

    def model_dir(self, dataset: str, model: str) -> Path:
        return self.home() / "models" / dataset / model

    def checkpoint_dir(self, dataset: str, model: str) -> Path:
        return self.home() / "checkpoints" / dataset / model

    def feature_cache(self) -> Path:
        return self.home() / "feature_cache"


class DatasetCatalog(dg.ConfigurableResource):
    """The catalog file (``FITMM_CATALOG`` or ``catalog.yaml``), read at each use so edits apply."""

    path: str = ""

    def entry(self, dataset: str) -> DatasetEntry:
        entries = load_catalog(Path(self.path) if self.path else None)
        if dataset not in entries:
            raise dg.Failure(f"dataset {dataset!r} is not in the catalog; known: {sorted(entries)}")
        return entries[dataset]


class ComputeDevice(dg.ConfigurableResource):
    """Overrides the catalog's device for every model (``FITMM_DEVICE``: auto, cpu, cuda)."""

    device: str = ""

    def resolve(self, catalog_device: str) -> str:
        return self.device or os.environ.get("FITMM_DEVICE") or catalog_device
