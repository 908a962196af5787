"""The UIs for real: the Dagster webserver serves every asset with its description and a headless
Chromium shows them all; the registry flow (log, register, champion) works against a real MLflow
tracking server, whose UI shows the experiment and the champion alias."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest

from fitmm_core.bundle import save_bundle
from fitmm_core.models import build_model
from fitmm_core.models.base import ModelInputs
from pipelines.mlflow_resource import MlflowTracking
from tests.servers import free_port, running_server
from tests.test_pipeline import ASSET_KEYS

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (`make test` installs it where apt-get can)"
)


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["data"]


def missing_from_page(url: str, texts: list[str], profile: Path, attempts: int = 3) -> list[str]:
    """The ``texts`` that a real headless Chromium does not show on ``url`` once the page's scripts
    have run; a slow page gets up to ``attempts`` loads, each given more time."""
    missing = texts
    for attempt in range(1, attempts + 1):
        command = [
            str(CHROMIUM), "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            f"--user-data-dir={profile}", f"--virtual-time-budget={20000 * attempt}", "--window-size=1400,900",
            "--dump-dom", url,
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=240)
        assert result.returncode == 0, f"chromium failed on {url}:\n{result.stderr[-2000:]}"
        missing = [text for text in texts if text not in result.stdout]
        if not missing:
            break
    return missing


@pytest.fixture(scope="module")
def dagster_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """``make ui``'s webserver on the project's workspace (an empty instance); yields its port."""
    root = tmp_path_factory.mktemp("dagster")
    port = free_port()
    shutil.copy(REPO / "pipelines" / "dagster.yaml", root / "dagster.yaml")
    command = [str(BIN / "dagster-webserver"), "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)]
    with running_server(command, f"http://127.0.0.1:{port}/server_info", {"DAGSTER_HOME": str(root)},
                        root / "webserver.log"):
        yield port


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, list[tuple[str, bool]]]]:
    """A real MLflow server with three runs of ``mostpop-tiny`` registered through the champion rule;
    yields its port and ``(version, promoted)`` per run."""
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    command = [
        str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1",
    ]
    pairs = np.array([[0, 0], [0, 1], [1, 1], [1, 2], [2, 2], [2, 0]])
    inputs = ModelInputs(n_users=3, n_items=3, train_pairs=pairs, features={})
    bundle = save_bundle(root / "bundle", "mostpop", {}, build_model("mostpop", inputs), inputs, ["a", "b", "c"])
    with running_server(command, f"http://127.0.0.1:{port}/health", {}, root / "mlflow.log"):
        tracking = MlflowTracking(tracking_uri=f"http://127.0.0.1:{port}")
        versions = []
        for score in (0.30, 0.20, 0.40):
            with tracking.run("tiny", "mostpop", {"model": "mostpop"}) as run:
                mlflow.log_param("model", "mostpop")
                mlflow.log_metric("valid_recall_20", score)
            version = tracking.log_and_register(run.info.run_id, bundle, "mostpop-tiny", {"dataset": "tiny"})
            versions.append((version, tracking.promote_if_better("mostpop-tiny", version, score)))
        yield port, versions


@pytest.mark.slow
def test_dagster_webserver_lists_every_asset_with_a_description(dagster_ui: int):
    nodes = graphql(dagster_ui, "{ assetNodes { assetKey { path } description groupName partitionKeys } }")["assetNodes"]
    by_key = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    assert {"interactions", "fitmm_model", "registered_models", "image_features"} <= set(by_key)
    for key, node in by_key.items():
        assert node["description"], f"asset {key} has no description in the UI"
        assert "demo" in node["partitionKeys"]


@pytest.mark.slow
@needs_chromium
def test_dagster_ui_shows_every_asset_in_a_browser(dagster_ui: int, tmp_path: Path):
    base = f"http://127.0.0.1:{dagster_ui}"
    assert missing_from_page(f"{base}/assets", sorted(ASSET_KEYS), tmp_path / "profile") == []
    description = "FITMM trained with early stopping on validation Recall@20"
    assert missing_from_page(f"{base}/assets/fitmm_model", [description, "refresh_dataset"], tmp_path / "profile") == []


@pytest.mark.slow
def test_registry_and_champion_on_a_real_mlflow_server(registry: tuple[int, list[tuple[str, bool]]]):
    port, versions = registry
    champion = MlflowTracking(tracking_uri=f"http://127.0.0.1:{port}").client().get_model_version_by_alias(
        "mostpop-tiny", "champion"
    )
    assert [promoted for _, promoted in versions] == [True, False, True]
    assert champion.version == versions[2][0]


@pytest.mark.slow
@needs_chromium
def test_mlflow_ui_shows_the_experiment_and_the_champion_in_a_browser(
    registry: tuple[int, list[tuple[str, bool]]], tmp_path: Path
):
    port, _ = registry
    base = f"http://127.0.0.1:{port}"
    assert missing_from_page(f"{base}/#/experiments", ["fitmm/tiny"], tmp_path / "profile") == []
    assert missing_from_page(f"{base}/#/models/mostpop-tiny", ["mostpop-tiny", "champion"], tmp_path / "profile") == []
