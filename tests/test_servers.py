"""The UIs' servers for real: the Dagster webserver shows every asset with its description, and the
registry flow (log, register, champion) works against a real MLflow tracking server."""

from __future__ import annotations

import json
import shutil
import sys
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest

from fitmm_core.bundle import save_bundle
from fitmm_core.models import build_model
from fitmm_core.models.base import ModelInputs
from pipelines.mlflow_resource import MlflowTracking
from tests.servers import free_port, running_server

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["data"]


@pytest.mark.slow
def test_dagster_webserver_lists_every_asset_with_a_description(tmp_path: Path):
    port = free_port()
    home = tmp_path / "dagster"
    home.mkdir()
    shutil.copy(REPO / "pipelines" / "dagster.yaml", home / "dagster.yaml")
    command = [str(BIN / "dagster-webserver"), "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)]
    with running_server(command, f"http://127.0.0.1:{port}/server_info", {"DAGSTER_HOME": str(home)},
                        tmp_path / "webserver.log"):
        nodes = graphql(port, "{ assetNodes { assetKey { path } description groupName partitionKeys } }")["assetNodes"]
    by_key = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    assert {"interactions", "fitmm_model", "registered_models", "image_features"} <= set(by_key)
    for key, node in by_key.items():
        assert node["description"], f"asset {key} has no description in the UI"
        assert "demo" in node["partitionKeys"]


@pytest.mark.slow
def test_registry_and_champion_on_a_real_mlflow_server(tmp_path: Path):
    port = free_port()
    store = tmp_path / "store"
    store.mkdir()
    command = [
        str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
        "--artifacts-destination", str(store / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1",
    ]
    pairs = np.array([[0, 0], [0, 1], [1, 1], [1, 2], [2, 2], [2, 0]])
    inputs = ModelInputs(n_users=3, n_items=3, train_pairs=pairs, features={})
    bundle = save_bundle(tmp_path / "bundle", "mostpop", {}, build_model("mostpop", inputs), inputs, ["a", "b", "c"])
    with running_server(command, f"http://127.0.0.1:{port}/health", {}, tmp_path / "mlflow.log"):
        tracking = MlflowTracking(tracking_uri=f"http://127.0.0.1:{port}")
        versions = []
        for score in (0.30, 0.20, 0.40):
            with tracking.run("tiny", "mostpop", {"model": "mostpop"}) as run:
                mlflow.log_param("model", "mostpop")
                mlflow.log_metric("valid_recall_20", score)
            version = tracking.log_and_register(run.info.run_id, bundle, "mostpop-tiny", {"dataset": "tiny"})
            versions.append((version, tracking.promote_if_better("mostpop-tiny", version, score)))
        champion = tracking.client().get_model_version_by_alias("mostpop-tiny", "champion")
    assert [promoted for _, promoted in versions] == [True, False, True]
    assert champion.version == versions[2][0]
