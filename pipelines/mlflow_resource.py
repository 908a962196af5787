"""MLflow as a Dagster resource: runs, metrics, the pyfunc model, the registry and the champion alias.

Names (ARCHITECTURE.md): experiment ``fitmm/<dataset>``, registered model ``<model>-<dataset>``,
alias ``champion``, final metrics ``<split>_<metric>_<k>`` (``test_recall_20``).
"""

from __future__ import annotations

import logging
import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import dagster as dg
import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from fitmm_core.paths import fitmm_home
from pipelines.serving import BUNDLE_ARTIFACT, DEFAULT_K, TopKRecommender

CHAMPION = "champion"
SELECTION_METRIC = "valid_recall_20"
logger = logging.getLogger(__name__)


def metric_key(split: str, name: str) -> str:
    """``("test", "recall@20")`` -> ``"test_recall_20"``."""
    return f"{split}_{name.replace('@', '_')}"


def default_tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else sqlite in ``FITMM_HOME``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{fitmm_home() / 'mlflow.db'}"


class MlflowTracking(dg.ConfigurableResource):
    """A thin session over one tracking store; every call names its store explicitly."""

    tracking_uri: str = ""
    artifact_root: str = ""

    def uri(self) -> str:
        return self.tracking_uri or default_tracking_uri()

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.uri(), registry_uri=self.uri())

    def experiment_id(self, dataset: str) -> str:
        """The id of ``fitmm/<dataset>``, created (artifacts under FITMM_HOME) when absent."""
        name = f"fitmm/{dataset}"
        client = self.client()
        found = client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = None
        if self.uri().startswith("sqlite:"):
            root = Path(self.artifact_root or fitmm_home() / "mlartifacts")
            location = (root / dataset).resolve().as_uri()
        return client.create_experiment(name, artifact_location=location)

    def _use_store(self) -> None:
        """Point MLflow's fluent API (``mlflow.log_*``) at this store."""
        mlflow.set_tracking_uri(self.uri())
        mlflow.set_registry_uri(self.uri())

    @contextmanager
    def run(self, dataset: str, run_name: str, tags: dict[str, str]) -> Iterator[mlflow.ActiveRun]:
        """An active MLflow run in the dataset's experiment; failed if the body raises."""
        self._use_store()
        with mlflow.start_run(experiment_id=self.experiment_id(dataset), run_name=run_name, tags=tags) as run:
            yield run

    @contextmanager
    def resume(self, run_id: str) -> Iterator[mlflow.ActiveRun]:
        """Re-open a finished run (to attach the logged model, say)."""
        self._use_store()
        with mlflow.start_run(run_id=run_id) as run:
            yield run

    def log_and_register(self, run_id: str, bundle_dir: Path, registered_name: str, tags: dict[str, str]) -> str:
        """Log the bundle as a pyfunc model of ``run_id`` and register it; returns the version."""
        import pandas as pd

        with self.resume(run_id):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=TopKRecommender(),
                artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
                input_example=(pd.DataFrame({"user_id": [0, 1]}), {"k": DEFAULT_K}),
                pip_requirements=["fitmm-pipeline", "mlflow==3.17.2", "torch==2.13.0", "safetensors"],
            )
        version = self.client().create_model_version(
            name=self._ensure_registered(registered_name),
            source=info.model_uri,
            run_id=run_id,
            tags=tags,
            model_id=info.model_id,
        )
        return str(version.version)

    def _ensure_registered(self, name: str) -> str:
        client = self.client()
        try:
            client.get_registered_model(name)
        except MlflowException:
            client.create_registered_model(name, description="Multimodal recommender trained by FITMM-pipeline.")
        return name

    def champion_score(self, registered_name: str) -> float | None:
        """The selection metric of the current champion's run, or None when there is none."""
        client = self.client()
        try:
            version = client.get_model_version_by_alias(registered_name, CHAMPION)
        except MlflowException:
            return None
        return client.get_run(version.run_id).data.metrics.get(SELECTION_METRIC)

    def promote_if_better(self, registered_name: str, version: str, score: float) -> bool:
        """Point ``champion`` at ``version`` when it is the first or beats the champion's score."""
        current = self.champion_score(registered_name)
        if current is not None and not (math.isfinite(score) and score > current):
            logger.info("%s v%s (%.4f) does not beat champion (%.4f)", registered_name, version, score, current)
            return False
        self.client().set_registered_model_alias(registered_name, CHAMPION, version)
        return True
