"""Interactions: the prepared MMRec-format dataset (dedup, k-core, split, ids) and its blocking checks."""

from pathlib import Path

import dagster as dg

from assets.partitions import dataset_partitions, png_metadata
from fitmm_core.data.checks import check_prepared, dataset_summary, degree_plot_png
from fitmm_core.data.mmrec_format import find_inter_file
from fitmm_core.data.prepare import PrepareSettings, prepare_dataset
from fitmm_core.data.sources import file_sha256
from pipelines.resources import DatasetCatalog, FitmmStorage

CHECKS = {
    "k_core": "Every user and item has at least k interactions in the full data.",
    "splits_disjoint": "Train, valid and test are disjoint and together cover every interaction.",
    "users_have_splits": "Each user has train items, and valid/test items unless too few to split.",
    "user_id_map": "u_id_mapping.csv maps raw user ids one-to-one onto the ids of the .inter file.",
    "item_id_map": "i_id_mapping.csv maps raw item ids one-to-one onto the ids of the .inter file.",
}


@dg.asset(
    partitions_def=dataset_partitions,
    group_name="ingest",
    check_specs=[
        dg.AssetCheckSpec(name, asset="interactions", description=text, blocking=True)
        for name, text in CHECKS.items()
    ],
)
def interactions(
    context: dg.AssetExecutionContext,
    catalog: DatasetCatalog,
    storage: FitmmStorage,
    raw_reviews: dict,
    raw_metadata: dict,
):
    """The MMRec-format folder: duplicates dropped, iterative k-core, contiguous ids, per-user split.

    Writes ``<name>.inter``, the id maps, ``items.parquet`` (item texts and image references) and
    ``manifest.json``; the checks run on what was written and a failure stops everything downstream.
    """
    entry = catalog.entry(context.partition_key)
    folder = storage.dataset_dir(entry.name)
    settings = PrepareSettings(
        format="amazon2018" if entry.format == "demo" else entry.format,
        reviews=raw_reviews["path"],
        meta=raw_metadata.get("path"),
        images=Path(raw_metadata["images"]) if raw_metadata.get("images") else None,
        out=folder,
        name=entry.name,
        k_core=entry.k_core,
        seed=entry.split_seed,
        split=entry.split,
        require_metadata=entry.require_metadata,
        on_bad_lines=entry.on_bad_lines,
        text_template=entry.text_template,
        cache_dir=storage.home() / "downloads",
    )
    manifest = prepare_dataset(settings)
    summary = dataset_summary(folder)
    context.log.info("prepared %s: %s", entry.name, summary)
    digest = file_sha256(find_inter_file(folder, entry.name))
    yield dg.Output(
        {"folder": str(folder), "name": entry.name, "digest": digest},
        metadata={
            "folder": dg.MetadataValue.path(str(folder)),
            "data_digest": digest,
            **{k: v for k, v in summary.items() if isinstance(v, (int, float, str))},
            "bad_lines": manifest.get("bad_lines", {}),
            "degree_distribution": png_metadata(degree_plot_png(folder), "degree distribution"),
        },
    )
    for outcome in check_prepared(folder, entry.k_core):
        yield dg.AssetCheckResult(
            check_name=outcome.name,
            passed=outcome.passed,
            description=outcome.description,
            metadata=outcome.metadata,
        )
