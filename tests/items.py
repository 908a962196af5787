"""Write the ``items.parquet`` of a dataset folder for the feature tests."""

from __future__ import annotations

from pathlib import Path

import polars as pl


def write_items(
    folder: Path,
    texts: list[str | None] | None = None,
    images: list[str | None] | None = None,
    category: str | None = None,
) -> Path:
    """``items.parquet`` with one row per text (or image); missing columns get defaults."""
    n = len(texts if texts is not None else images)
    folder.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(
        {
            "itemID": list(range(n)),
            "asin": [f"B{i:04d}" for i in range(n)],
            "text": texts if texts is not None else [f"item {i}" for i in range(n)],
            "image": images if images is not None else [None] * n,
            "top_category": [category] * n,
        },
        schema={"itemID": pl.Int64, "asin": pl.String, "text": pl.String, "image": pl.String, "top_category": pl.String},
    ).write_parquet(folder / "items.parquet")
    return folder
