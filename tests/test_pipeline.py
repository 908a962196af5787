"""The whole asset graph on tiny demo data, in process, with an ephemeral Dagster instance and MLflow
on a temporary sqlite store: the same assets and resources that ``make demo`` runs."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import mlflow
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from pipelines.catalog import CatalogError, load_catalog
from pipelines.definitions import defs
from pipelines.mlflow_resource import MlflowTracking
from pipelines.report import metrics_table
from pipelines.resources import ComputeDevice, DatasetCatalog, FitmmStorage

INSTANCE_SETTINGS = yaml.safe_load((Path(__file__).parents[1] / "pipelines" / "dagster.yaml").read_text())
ASSET_KEYS = {
    "raw_reviews", "raw_metadata", "interactions", "text_features", "image_features", "interaction_graph",
    "item_graphs", "fitmm_model", "baseline_models", "model_evaluation", "registered_models",
}


def _materialize(
    catalog: Path, home: Path, only: set[str] | None = None, instance: dg.DagsterInstance | None = None
) -> dg.ExecuteInProcessResult:
    """Materialize partition ``demo`` (every asset, or the assets defining a key in ``only``)."""
    selected = [a for a in defs.assets if only is None or {k.to_user_string() for k in a.keys} & only]
    return dg.materialize(
        selected,
        partition_key="demo",
        instance=instance or dg.DagsterInstance.ephemeral(),
        raise_on_error=only is None,
        resources={
            "catalog": DatasetCatalog(path=str(catalog)),
            "storage": FitmmStorage(root=str(home)),
            "mlflow_tracking": MlflowTracking(tracking_uri=f"sqlite:///{home / 'mlflow.db'}"),
            "compute": ComputeDevice(device="cpu"),
        },
    )


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory):
    """One materialization of every asset, shared by the tests of this module (it takes a while)."""
    root = tmp_path_factory.mktemp("pipeline")
    home = root / "home"
    catalog = root / "catalog.yaml"
    catalog.write_text(
        "datasets:\n  demo:\n    format: demo\n    demo_users: 160\n    demo_items: 60\n"
        "    image_encoder: efficientnet-lite0\n    models: [fitmm, lightgcn, mostpop]\n"
        "    training: {max_epochs: 4, patience: 2, device: cpu}\n"
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FITMM_HOME", str(home))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        instance = dg.DagsterInstance.ephemeral(settings=INSTANCE_SETTINGS)  # the instance `make` sets up
        result = _materialize(catalog, home, instance=instance)
        yield result, home, catalog, instance


def test_every_asset_materializes_and_every_check_passes(pipeline_run):
    result, _, _, _ = pipeline_run
    assert result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == ASSET_KEYS
    checks = result.get_asset_check_evaluations()
    assert {c.check_name for c in checks} >= {"k_core", "splits_disjoint", "users_have_splits", "user_id_map", "item_id_map"}
    assert all(c.passed for c in checks if c.check_name != "fitmm_beats_most_popular")


def test_feature_progress_reaches_the_run_log(pipeline_run):
    result, _, _, instance = pipeline_run
    messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    for stage, unit in (("encode texts", "text"), ("encode images", "img")):
        assert any(m.startswith(f"{stage}: ") and f" {unit}/s)" in m for m in messages), stage


def test_library_log_lines_reach_the_run_log(pipeline_run):
    result, _, _, instance = pipeline_run
    messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any(m.startswith("epoch 1/4 ") and "valid recall@20=" in m for m in messages)
    assert any(m.startswith("best epoch ") for m in messages)
    assert any(m.startswith("image features: ") for m in messages)


def test_every_asset_is_described():
    for assets_def in defs.assets:
        for key in assets_def.keys:
            assert assets_def.descriptions_by_key.get(key), f"{key.to_user_string()} has no description"


def test_mlflow_holds_runs_metrics_and_champion(pipeline_run):
    _, home, _, _ = pipeline_run
    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = client.get_model_version_by_alias("fitmm-demo", "champion")
    run = client.get_run(version.run_id)
    assert {"test_recall_20", "test_ndcg_20", "valid_recall_20"} <= set(run.data.metrics)
    assert run.data.params["model"] == "fitmm"
    assert run.data.tags["dagster_partition"] == "demo"
    assert run.data.tags["data_digest"]
    assert len(client.get_metric_history(run.info.run_id, "valid_recall_20")) >= 1
    for baseline in ("lightgcn-demo", "mostpop-demo"):
        assert client.get_model_version_by_alias(baseline, "champion")
    table = metrics_table("demo", MlflowTracking(tracking_uri=uri))
    assert "fitmm" in table and "mostpop" in table


def test_registered_pyfunc_returns_unseen_top_k(pipeline_run):
    _, home, _, _ = pipeline_run
    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model("models:/fitmm-demo@champion")
    answer = model.predict(pd.DataFrame({"user_id": [0, 3]}), params={"k": 5})
    assert list(answer.columns) == ["user_id", "rank", "item_id", "asin", "score"]
    assert len(answer) == 10
    assert answer.groupby("user_id")["item_id"].nunique().tolist() == [5, 5]
    train = pd.read_csv(next((home / "datasets" / "demo").glob("*.inter")), sep="\t")
    seen = set(train[(train.userID == 0) & (train.x_label == 0)].itemID)
    assert not seen & set(answer[answer.user_id == 0].item_id)


def test_second_run_keeps_champion_unless_beaten(pipeline_run):
    result, home, catalog, _ = pipeline_run
    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    first = client.get_model_version_by_alias("fitmm-demo", "champion")
    first_score = client.get_run(first.run_id).data.metrics["valid_recall_20"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FITMM_HOME", str(home))
        again = _materialize(catalog, home)
    assert again.success
    versions = client.search_model_versions("name='fitmm-demo'")
    assert len(versions) == 2
    champion = client.get_model_version_by_alias("fitmm-demo", "champion")
    second = next(v for v in versions if v.version != first.version)
    second_score = client.get_run(second.run_id).data.metrics["valid_recall_20"]
    expected = second.version if second_score > first_score else first.version
    assert champion.version == expected
    encoded = [
        e for e in again.get_asset_materialization_events() if e.asset_key.to_user_string() == "text_features"
    ]
    assert encoded[0].materialization.metadata["n_cached"].value == encoded[0].materialization.metadata["n_items"].value


def test_catalog_errors_name_the_file_and_key(tmp_path: Path):
    path = tmp_path / "catalog.yaml"
    path.write_text("datasets:\n  mine:\n    format: amazon2018\n    reviews: r.json\n    meta: m.json\n    k_cores: 5\n")
    with pytest.raises(CatalogError, match=r"catalog.yaml: datasets.mine: unknown key\(s\) \['k_cores'\]"):
        load_catalog(path)
    path.write_text("datasets:\n  mine:\n    format: amazon2018\n    meta: m.json\n")
    with pytest.raises(CatalogError, match="datasets.mine.reviews: required"):
        load_catalog(path)
    path.write_text("datasets:\n  mine:\n    format: demo\n    training: {max_epochs: many}\n")
    with pytest.raises(CatalogError, match="datasets.mine.training.max_epochs: expected int"):
        load_catalog(path)
    path.write_text("datasets:\n  mine:\n    format: demo\n    text_template: '{title} {colour}'\n")
    with pytest.raises(CatalogError, match=r"datasets.mine.text_template: '\{title\} \{colour\}': unknown field"):
        load_catalog(path)
    path.write_text("datasets:\n  mine:\n    format: demo\n    text_template: '{title} by {brand}'\n")
    assert load_catalog(path)["mine"].text_template == "{title} by {brand}"
    path.write_text("datasets:\n  mine:\n    format: demo\n    image_fetch: {workers: 0}\n")
    with pytest.raises(CatalogError, match=r"datasets.mine.image_fetch: workers=0: expected more than 0"):
        load_catalog(path)
    path.write_text("datasets:\n  mine:\n    format: demo\n    image_fetch: {timeout: 3}\n")
    with pytest.raises(CatalogError, match=r"datasets.mine.image_fetch: unknown key\(s\) \['timeout'\]"):
        load_catalog(path)
    path.write_text("datasets:\n  mine:\n    format: demo\n    image_fetch: {timeout_s: 3, retries: 0}\n")
    assert load_catalog(path)["mine"].image_fetch.timeout_s == 3
    path.write_text("datasets:\n  mine:\n    format: demo\n    image_decode: gpu\n")
    with pytest.raises(CatalogError, match=r"datasets.mine.image_decode: 'gpu'; expected one of \['auto', 'pil'"):
        load_catalog(path)


def test_a_planted_leak_fails_the_blocking_check_and_stops_downstream(tmp_path: Path):
    source = tmp_path / "leaky"
    source.mkdir()
    rows = [(u, i, 0) for u in range(6) for i in range(6)] + [(0, 0, 2)]  # (0, 0) in train and in test
    (source / "leaky.inter").write_text(
        "userID\titemID\trating\ttimestamp\tx_label\n" + "".join(f"{u}\t{i}\t5.0\t1\t{x}\n" for u, i, x in rows)
    )
    (source / "u_id_mapping.csv").write_text("user_id\tuserID\n" + "".join(f"U{u}\t{u}\n" for u in range(6)))
    (source / "i_id_mapping.csv").write_text("asin\titemID\n" + "".join(f"I{i}\t{i}\n" for i in range(6)))
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(f"datasets:\n  demo:\n    format: mmrec\n    reviews: {source}\n    k_core: 1\n")
    result = _materialize(catalog, tmp_path / "home", only={"raw_reviews", "interactions", "interaction_graph"})
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["splits_disjoint"] is False
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "interactions" in materialized and "interaction_graph" not in materialized
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_key == "interactions"
    assert "blocking asset checks failed" in failure.event_specific_data.error.message
    assert "interaction_graph" not in {e.step_key for e in result.all_events if e.is_step_start}
