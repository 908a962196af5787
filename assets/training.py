"""Training: FITMM and the catalog's baselines, each an MLflow run in ``fitmm/<dataset>``.

Every model follows one protocol (``fitmm_core.training.fit``): BPR with one uniform negative,
Adam, early stopping on validation Recall@20, test evaluated once at the best checkpoint.
"""

import shutil

import dagster as dg
import matplotlib.pyplot as plt
import mlflow

from assets.partitions import dataset_partitions
from assets.plots import learning_curve_figure
from fitmm_core.bundle import save_bundle
from fitmm_core.data.mmrec_format import load_mmrec, read_item_ids
from fitmm_core.models import MODELS, build_model, resolve_settings
from fitmm_core.models.base import ModelInputs
from fitmm_core.training.trainer import TrainConfig, TrainResult, fit
from pipelines.catalog import DatasetEntry
from pipelines.mlflow_resource import MlflowTracking, metric_key
from pipelines.resources import ComputeDevice, DatasetCatalog, FitmmStorage

GRAPH_ASSETS = ["text_features", "image_features", "interaction_graph", "item_graphs"]


def _final_metrics(result: TrainResult) -> dict[str, float]:
    return {
        **{metric_key("valid", k): v for k, v in result.valid.items()},
        **{metric_key("test", k): v for k, v in result.test.items()},
        "best_epoch": float(result.best_epoch),
        "train_seconds_per_epoch": result.train_seconds_per_epoch,
        "eval_seconds_per_epoch": result.eval_seconds_per_epoch,
    }


def train_and_log(
    context: dg.AssetExecutionContext,
    entry: DatasetEntry,
    model_name: str,
    interactions: dict,
    storage: FitmmStorage,
    tracking: MlflowTracking,
    device: ComputeDevice,
) -> dict:
    """Train one model on the prepared dataset, log the run to MLflow and save its bundle."""
    data = load_mmrec(interactions["folder"], entry.name)
    spec = MODELS[model_name]
    settings = resolve_settings(model_name, entry.model_settings.get(model_name, {}))
    inputs = ModelInputs(data.n_users, data.n_items, data.train, data.features)
    model = build_model(model_name, inputs, settings, seed=entry.training.seed)
    config = TrainConfig(
        max_epochs=entry.training.max_epochs,
        patience=entry.training.patience,
        batch_size=entry.training.batch_size,
        learning_rate=spec.learning_rate,
        seed=entry.training.seed,
        device=device.resolve(entry.training.device),
        checkpoint_dir=storage.checkpoint_dir(entry.name, model_name) / (context.run.root_run_id or context.run_id),
    )
    tags = {
        "dagster_run_id": context.run_id,
        "dagster_partition": context.partition_key,
        "data_digest": interactions["digest"],
        "model": model_name,
    }
    with tracking.run(entry.name, run_name=f"{model_name}-{context.run_id[:8]}", tags=tags) as run:
        mlflow.log_params(
            {
                "model": model_name,
                **{f"model.{k}": v for k, v in settings.items()},
                **{f"train.{k}": v for k, v in vars(config).items() if k != "checkpoint_dir"},
                "modalities": ",".join(sorted(data.features)) or "none",
                "n_users": data.n_users,
                "n_items": data.n_items,
            }
        )

        def log_epoch(log) -> None:
            metrics = {f"loss_{k}": v for k, v in log.losses.items()}
            metrics.update({metric_key("valid", k): v for k, v in log.valid.items()})
            mlflow.log_metrics(metrics, step=log.epoch)
            context.log.info(
                "%s epoch %d: loss %.4f valid recall@20 %.4f (%.2fs train, %.2fs eval)",
                model_name, log.epoch, log.losses.get("loss", float("nan")), log.valid.get("recall@20", float("nan")),
                log.train_seconds, log.eval_seconds,
            )

        result = fit(model, data, config, callback=log_epoch)
        final = _final_metrics(result)
        mlflow.log_metrics(final)
        if result.history:
            figure = learning_curve_figure(result.history, model_name)
            mlflow.log_figure(figure, "learning_curve.png")
            plt.close(figure)
        summary = result.summary(model_name)
        mlflow.log_dict(summary, "summary.json")
    bundle = save_bundle(
        storage.model_dir(entry.name, model_name), model_name, settings, result.model, inputs,
        read_item_ids(interactions["folder"], data.n_items), extra={"dataset": entry.name, "run_id": run.info.run_id},
    )
    shutil.rmtree(config.checkpoint_dir, ignore_errors=True)  # only an unfinished run resumes from them
    return {"model": model_name, "run_id": run.info.run_id, "bundle": str(bundle), **summary}


def _model_metadata(summary: dict) -> dict:
    return {
        "mlflow_run_id": summary["run_id"],
        "best_epoch": summary["best_epoch"],
        "test_recall_20": summary["test"]["recall@20"],
        "test_ndcg_20": summary["test"]["ndcg@20"],
        "valid_recall_20": summary["valid"]["recall@20"],
        "train_seconds_per_epoch": summary["train_seconds_per_epoch"],
        "device": summary.get("device", ""),
    }


@dg.asset(partitions_def=dataset_partitions, group_name="train", deps=GRAPH_ASSETS)
def fitmm_model(
    context: dg.AssetExecutionContext,
    catalog: DatasetCatalog,
    storage: FitmmStorage,
    mlflow_tracking: MlflowTracking,
    compute: ComputeDevice,
    interactions: dict,
) -> dg.Output[dict]:
    """FITMM trained with early stopping on validation Recall@20 and evaluated on test at the best epoch.

    Graph-enhanced item representations, modality-wise spectral bands, within-band fusion, a residual
    task-adaptive gate, the frequency-domain IB term and cross-modal spectral consistency.
    """
    entry = catalog.entry(context.partition_key)
    summary = train_and_log(context, entry, "fitmm", interactions, storage, mlflow_tracking, compute)
    return dg.Output(summary, metadata=_model_metadata(summary))


@dg.asset(partitions_def=dataset_partitions, group_name="train", deps=GRAPH_ASSETS)
def baseline_models(
    context: dg.AssetExecutionContext,
    catalog: DatasetCatalog,
    storage: FitmmStorage,
    mlflow_tracking: MlflowTracking,
    compute: ComputeDevice,
    interactions: dict,
) -> dg.Output[dict]:
    """The catalog's baselines (``models`` other than fitmm), trained and evaluated like FITMM."""
    entry = catalog.entry(context.partition_key)
    names = [m for m in entry.models if m != "fitmm"]
    summaries = {m: train_and_log(context, entry, m, interactions, storage, mlflow_tracking, compute) for m in names}
    metadata = {f"{m}_test_recall_20": s["test"]["recall@20"] for m, s in summaries.items()}
    return dg.Output(summaries, metadata={"models": ", ".join(names) or "none", **metadata})
