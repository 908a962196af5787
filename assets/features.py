"""Item features: sentence-transformer text vectors and image vectors (CLIP or EfficientNet-Lite0)."""

from collections.abc import Callable

import dagster as dg
import numpy as np

from assets.partitions import dataset_partitions, png_metadata
from fitmm_core.data.mmrec_format import FEATURE_FILES
from fitmm_core.features.encode import encode_images, encode_text, read_items
from fitmm_core.features.plots import projection_png
from pipelines.catalog import DatasetEntry
from pipelines.resources import ComputeDevice, DatasetCatalog, FitmmStorage


def _feature_metadata(entry: DatasetEntry, folder: str, modality: str, report: dict) -> dict:
    """The encoder's report plus a 2-D projection of the items coloured by their top category."""
    matrix = np.load(f"{folder}/{FEATURE_FILES[modality]}")
    labels = read_items(folder).top_categories
    plot = projection_png(matrix, labels, f"{entry.name}: {modality} features ({report['encoder']})")
    scalars = {k: v for k, v in report.items() if isinstance(v, (int, float, str))}
    return {**scalars, "projection": png_metadata(plot, f"{modality} projection")}


def _imported(folder: str, modality: str) -> dict | None:
    """Facts about a feature file an MMRec import brought with it (nothing to encode)."""
    path = f"{folder}/{FEATURE_FILES[modality]}"
    try:
        matrix = np.load(path, mmap_mode="r")
    except FileNotFoundError:
        return None
    return {"encoder": "imported", "dim": int(matrix.shape[1]), "n_items": int(matrix.shape[0]), "file": path}


def _encode(
    context: dg.AssetExecutionContext,
    modality: str,
    interactions: dict,
    catalog: DatasetCatalog,
    storage: FitmmStorage,
    compute: ComputeDevice,
    encode: Callable[..., dict],
) -> dg.Output[dict]:
    """Encode one modality of the prepared folder (or report the features an MMRec import brought)."""
    entry = catalog.entry(context.partition_key)
    folder = interactions["folder"]
    if entry.format == "mmrec":
        report = _imported(folder, modality)
        if report is None:
            context.log.warning("MMRec import %s has no %s features; models train without them", folder, modality)
            return dg.Output({"modality": modality, "encoder": None}, metadata={"encoder": "none"})
        return dg.Output({"modality": modality, **report}, metadata=report)
    encoder = entry.text_encoder if modality == "text" else entry.image_encoder
    options = {"image_decode": entry.image_decode, "fetch": entry.image_fetch} if modality == "image" else {}
    report = encode(
        folder, encoder, device=compute.resolve(entry.training.device),
        cache_dir=storage.feature_cache(), progress=False, log=context.log.info, **options,
    )
    return dg.Output({"modality": modality, **report}, metadata=_feature_metadata(entry, folder, modality, report))


@dg.asset(partitions_def=dataset_partitions, group_name="features")
def text_features(
    context: dg.AssetExecutionContext, catalog: DatasetCatalog, storage: FitmmStorage, compute: ComputeDevice,
    interactions: dict,
) -> dg.Output[dict]:
    """``text_feat.npy``: item texts (title, brand, categories, description) through the catalog's
    sentence-transformers encoder; vectors cached by (encoder, text) so refreshes encode only changes."""
    return _encode(context, "text", interactions, catalog, storage, compute, encode_text)


@dg.asset(partitions_def=dataset_partitions, group_name="features")
def image_features(
    context: dg.AssetExecutionContext, catalog: DatasetCatalog, storage: FitmmStorage, compute: ComputeDevice,
    interactions: dict,
) -> dg.Output[dict]:
    """``image_feat.npy`` and ``image_mask.npy``: item images through the catalog's image encoder;
    items without a usable image get the mean vector and mask False (count and share in metadata)."""
    return _encode(context, "image", interactions, catalog, storage, compute, encode_images)
