"""Print a dataset's metrics table from MLflow: the latest run per model and each champion.

``python -m pipelines.report demo`` (what ``make demo`` ends with).
"""

from __future__ import annotations

import sys

from mlflow.exceptions import MlflowException

from pipelines.mlflow_resource import CHAMPION, MlflowTracking

COLUMNS = ("valid_recall_20", "test_recall_10", "test_recall_20", "test_ndcg_10", "test_ndcg_20")


def metrics_table(dataset: str, tracking: MlflowTracking | None = None) -> str:
    """Latest finished run of each model in ``fitmm/<dataset>``, best test Recall@20 first."""
    tracking = tracking or MlflowTracking()
    client = tracking.client()
    experiment = client.get_experiment_by_name(f"fitmm/{dataset}")
    if experiment is None:
        raise SystemExit(f"no MLflow experiment fitmm/{dataset} in {tracking.uri()}: materialize the dataset first")
    runs = client.search_runs(
        [experiment.experiment_id], filter_string="attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"]
    )
    latest: dict[str, object] = {}
    for run in runs:
        latest.setdefault(run.data.params.get("model", "?"), run)
    ranked = sorted(latest.items(), key=lambda kv: -kv[1].data.metrics.get("test_recall_20", 0.0))
    lines = [f"{'model':<10} " + " ".join(f"{c:>16}" for c in COLUMNS) + "  champion"]
    for model, run in ranked:
        values = " ".join(f"{run.data.metrics.get(c, float('nan')):>16.4f}" for c in COLUMNS)
        lines.append(f"{model:<10} {values}  {_champion(client, f'{model}-{dataset}')}")
    lines.append(f"\nMLflow store: {tracking.uri()}  (make mlflow, then http://127.0.0.1:5000)")
    return "\n".join(lines)


def _champion(client, registered_name: str) -> str:
    try:
        version = client.get_model_version_by_alias(registered_name, CHAMPION)
    except MlflowException:
        return "-"
    return f"{registered_name}@{CHAMPION} = v{version.version}"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m pipelines.report DATASET")
    print(metrics_table(args[0]))


if __name__ == "__main__":
    main()
