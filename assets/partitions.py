"""Every asset is partitioned by dataset: one partition per catalog entry."""

import base64

import dagster as dg

from pipelines.catalog import load_catalog

dataset_partitions = dg.StaticPartitionsDefinition(list(load_catalog()))


def png_metadata(png: bytes, alt: str) -> dg.MetadataValue:
    """A PNG shown inline in the Dagster UI's metadata panel."""
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")
