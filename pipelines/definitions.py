"""The Dagster code location: assets, checks, resources, the refresh job and its schedule."""

from __future__ import annotations

import dagster as dg

from assets.features import image_features, text_features
from assets.graphs import interaction_graph, item_graphs
from assets.interactions import interactions
from assets.raw import raw_sources
from assets.registry import model_evaluation, registered_models
from assets.training import baseline_models, fitmm_model
from pipelines.jobs import refresh_job, weekly_refresh
from pipelines.mlflow_resource import MlflowTracking
from pipelines.resources import ComputeDevice, DatasetCatalog, FitmmStorage

defs = dg.Definitions(
    assets=[
        raw_sources,
        interactions,
        text_features,
        image_features,
        interaction_graph,
        item_graphs,
        fitmm_model,
        baseline_models,
        model_evaluation,
        registered_models,
    ],
    jobs=[refresh_job],
    # One process per run: the stages are sequential in data and each would otherwise pay ~15 s of
    # imports (torch, transformers, mlflow) in its own process.
    executor=dg.in_process_executor,
    schedules=[weekly_refresh],
    resources={
        "catalog": DatasetCatalog(),
        "storage": FitmmStorage(),
        "mlflow_tracking": MlflowTracking(),
        "compute": ComputeDevice(),
    },
)
