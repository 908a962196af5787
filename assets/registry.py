"""Model comparison and registration: every model's pyfunc registered, the best kept as ``champion``."""

import dagster as dg

from assets.partitions import dataset_partitions, png_metadata
from assets.plots import comparison_figure, figure_png
from pipelines.mlflow_resource import SELECTION_METRIC, MlflowTracking

TABLE_METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")


def _all_models(fitmm_model: dict, baseline_models: dict) -> dict[str, dict]:
    return {"fitmm": fitmm_model, **baseline_models}


def comparison_table(models: dict[str, dict]) -> str:
    """A markdown table of test metrics per model, best first by test Recall@20."""
    header = "| model | best epoch | " + " | ".join(f"test {m}" for m in TABLE_METRICS) + " |"
    rows = [header, "|" + "---|" * (len(TABLE_METRICS) + 2)]
    ranked = sorted(models.items(), key=lambda kv: -kv[1]["test"]["recall@20"])
    for name, summary in ranked:
        values = " | ".join(f"{summary['test'][m]:.4f}" for m in TABLE_METRICS)
        rows.append(f"| {name} | {summary['best_epoch']} | {values} |")
    return "\n".join(rows)


@dg.asset(
    partitions_def=dataset_partitions,
    group_name="evaluate",
    check_specs=[
        dg.AssetCheckSpec(
            "fitmm_beats_most_popular",
            asset="model_evaluation",
            description="FITMM's test Recall@20 is above the most-popular baseline's (when that baseline ran).",
        )
    ],
)
def model_evaluation(context: dg.AssetExecutionContext, fitmm_model: dict, baseline_models: dict):
    """Full-ranking test metrics of every model side by side, as a table and a bar chart."""
    models = _all_models(fitmm_model, baseline_models)
    table = comparison_table(models)
    context.log.info("test metrics:\n%s", table)
    test_metrics = {name: summary["test"] for name, summary in models.items()}
    chart = figure_png(comparison_figure(test_metrics, TABLE_METRICS))
    yield dg.Output(
        {name: {"valid": s["valid"], "test": s["test"], "run_id": s["run_id"]} for name, s in models.items()},
        metadata={"comparison": dg.MetadataValue.md(table), "chart": png_metadata(chart, "test metrics")},
    )
    mostpop = models.get("mostpop")
    fitmm_recall = fitmm_model["test"]["recall@20"]
    yield dg.AssetCheckResult(
        check_name="fitmm_beats_most_popular",
        passed=mostpop is None or fitmm_recall > mostpop["test"]["recall@20"],
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "fitmm_test_recall_20": fitmm_recall,
            "mostpop_test_recall_20": mostpop["test"]["recall@20"] if mostpop else -1.0,
        },
    )


@dg.asset(partitions_def=dataset_partitions, group_name="evaluate", deps=["model_evaluation"])
def registered_models(
    context: dg.AssetExecutionContext, mlflow_tracking: MlflowTracking, fitmm_model: dict, baseline_models: dict
) -> dg.Output[dict]:
    """Each model logged as a pyfunc (top-k items for user ids) and registered as ``<model>-<dataset>``.

    The alias ``champion`` moves to the new version when it is the first or beats the current
    champion on validation Recall@20 (test never chooses anything).
    """
    dataset = context.partition_key
    registered = {}
    for name, summary in _all_models(fitmm_model, baseline_models).items():
        registered_name = f"{name}-{dataset}"
        score = summary["valid"]["recall@20"]
        tags = {"dagster_run_id": context.run_id, "dataset": dataset, SELECTION_METRIC: str(score)}
        version = mlflow_tracking.log_and_register(summary["run_id"], summary["bundle"], registered_name, tags)
        promoted = mlflow_tracking.promote_if_better(registered_name, version, score)
        context.log.info("%s version %s%s", registered_name, version, " is the new champion" if promoted else "")
        registered[name] = {"registered_model": registered_name, "version": version, "champion": promoted}
    metadata = {
        f"{v['registered_model']}": f"v{v['version']}" + (" (champion)" if v["champion"] else "")
        for v in registered.values()
    }
    return dg.Output(registered, metadata=metadata)
