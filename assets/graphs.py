"""Graphs: the normalized user-item graph and the item-item kNN graph of each modality."""

import dagster as dg
import numpy as np
import torch

from assets.partitions import dataset_partitions
from fitmm_core.data.mmrec_format import load_mmrec
from fitmm_core.features.encode import read_items
from fitmm_core.graphs import knn_item_graph, normalized_user_item_adjacency

KNN_K = 10


def same_category_share(graph: torch.Tensor, categories: list[str | None]) -> float:
    """Share of kNN edges (self-loops excluded) whose two items have the same known top category."""
    rows, cols = graph.coalesce().indices().numpy()
    labels = np.array([c if c is not None else "" for c in categories], dtype=object)
    keep = (rows != cols) & (labels[rows] != "") & (labels[cols] != "")
    return float((labels[rows[keep]] == labels[cols[keep]]).mean()) if keep.any() else float("nan")


def chance_share(categories: list[str | None]) -> float:
    """The same-category share a graph with random edges would have: the sum of squared category shares."""
    known = [c for c in categories if c is not None]
    _, counts = np.unique(np.array(known, dtype=object), return_counts=True)
    return float(((counts / counts.sum()) ** 2).sum()) if known else float("nan")


@dg.asset(partitions_def=dataset_partitions, group_name="graphs")
def interaction_graph(context: dg.AssetExecutionContext, interactions: dict) -> dg.Output[dict]:
    """The symmetric normalized user-item adjacency ``D^-1/2 A D^-1/2`` of the training split."""
    data = load_mmrec(interactions["folder"], interactions["name"], features=())
    graph = normalized_user_item_adjacency(data.n_users, data.n_items, data.train).coalesce()
    item_degree = np.bincount(data.train[:, 1], minlength=data.n_items)
    summary = {
        "nodes": data.n_users + data.n_items,
        "edges": int(graph.indices().shape[1]),
        "items_without_training_edges": int((item_degree == 0).sum()),
        "mean_item_degree": float(item_degree.mean()),
    }
    context.log.info("user-item graph: %s", summary)
    return dg.Output(summary, metadata=summary)


@dg.asset(partitions_def=dataset_partitions, group_name="graphs", deps=["text_features", "image_features"])
def item_graphs(context: dg.AssetExecutionContext, interactions: dict) -> dg.Output[dict]:
    """Item-item cosine kNN graphs (k=10, symmetric normalization) per modality, as FREEDOM/LATTICE build
    them; the share of neighbours in the same category shows how much structure each modality finds."""
    data = load_mmrec(interactions["folder"], interactions["name"])
    categories = read_items(interactions["folder"]).top_categories
    if all(c is None for c in categories):  # an MMRec import carries no categories
        categories = None
    summary: dict[str, float | int] = {}
    if categories is not None:
        summary["same_category_share_by_chance"] = round(chance_share(categories), 4)
    for modality, matrix in data.features.items():
        graph = knn_item_graph(matrix, k=KNN_K)
        summary[f"{modality}_edges"] = int(graph.coalesce().indices().shape[1])
        if categories is not None:
            summary[f"{modality}_same_category_share"] = round(same_category_share(graph, categories), 4)
    context.log.info("item graphs: %s", summary)
    return dg.Output({"k": KNN_K, **summary}, metadata={"k": KNN_K, **summary})
