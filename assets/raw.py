"""Raw sources: the review and metadata files of a dataset, generated (demo), local or downloaded."""

from pathlib import Path

import dagster as dg

from assets.partitions import dataset_partitions
from fitmm_core.data.demo import generate_demo_data
from fitmm_core.data.sources import describe_file, resolve_source
from pipelines.resources import DatasetCatalog, FitmmStorage


def _file_facts(path: Path) -> dict:
    """Path, size and sha256 of a source file; an MMRec folder import gets its total size only."""
    if path.is_dir():
        return {"path": str(path), "size": sum(p.stat().st_size for p in path.rglob("*") if p.is_file())}
    return describe_file(path)


def _metadata(facts: dict) -> dict:
    return {
        "path": dg.MetadataValue.path(facts["path"]),
        "size_mb": round(facts["size"] / 1e6, 3),
        **({"sha256": facts["sha256"]} if "sha256" in facts else {}),
    }


@dg.multi_asset(
    outs={
        "raw_reviews": dg.AssetOut(
            description="The dataset's review file (or MMRec folder) as a local path, with size and sha256.",
            is_required=True,
        ),
        "raw_metadata": dg.AssetOut(
            description="The product metadata file and image folder (None for an MMRec import).",
            is_required=True,
        ),
    },
    partitions_def=dataset_partitions,
    group_name="ingest",
)
def raw_sources(context: dg.AssetExecutionContext, catalog: DatasetCatalog, storage: FitmmStorage):
    """Generate the demo data, or resolve the catalog's paths and URLs (downloads are cached)."""
    entry = catalog.entry(context.partition_key)
    cache = storage.home() / "downloads"
    images: str | None = entry.images
    if entry.format == "demo":
        out = storage.raw_dir(entry.name)
        summary = generate_demo_data(out, seed=entry.demo_seed, n_users=entry.demo_users, n_items=entry.demo_items)
        context.log.info("demo data: %s", {k: v for k, v in summary.items() if isinstance(v, int)})
        reviews, meta, images = out / "reviews.json.gz", out / "meta.json.gz", str(out / "images")
    else:
        reviews = resolve_source(entry.reviews, cache)
        meta = resolve_source(entry.meta, cache) if entry.meta else None
    review_facts = _file_facts(Path(reviews))
    meta_facts = _file_facts(Path(meta)) if meta else None
    yield dg.Output(review_facts, output_name="raw_reviews", metadata=_metadata(review_facts))
    meta_value = {**meta_facts, "images": images} if meta_facts else {"images": images}
    yield dg.Output(
        meta_value,
        output_name="raw_metadata",
        metadata={**(_metadata(meta_facts) if meta_facts else {}), "images": str(images)},
    )
