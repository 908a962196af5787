"""Interaction preprocessing on polars frames with columns ``user item rating timestamp``.

Steps, each its own function: keep items with metadata, drop duplicate (user, item) pairs keeping
the latest, iterative k-core, contiguous ids, and the train/valid/test split (``x_label`` 0/1/2).
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import polars as pl

logger = logging.getLogger(__name__)

SplitRule = Literal["random", "temporal"]


def keep_items_with_metadata(interactions: pl.DataFrame, items: pl.Series) -> pl.DataFrame:
    """Rows whose ``item`` is among ``items`` (the ids that have metadata)."""
    return interactions.filter(pl.col("item").is_in(items.implode()))


def drop_duplicate_pairs(interactions: pl.DataFrame) -> pl.DataFrame:
    """One row per (user, item): the latest by timestamp; among equal timestamps the last in file order."""
    return (
        interactions.with_row_index("_row")
        .sort(["timestamp", "_row"])
        .unique(subset=["user", "item"], keep="last", maintain_order=True)
        .sort("_row")
        .drop("_row")
    )


def k_core(interactions: pl.DataFrame, k: int) -> tuple[pl.DataFrame, int]:
    """Iteratively drop users and items with fewer than ``k`` interactions until none is left.

    Returns the filtered rows and the number of rounds that removed rows; ``k <= 1`` keeps
    everything (0 rounds).
    """
    rounds = 0
    if k <= 1:
        return interactions, rounds
    while True:
        rounds += 1
        before = len(interactions)
        interactions = interactions.filter(
            (pl.len().over("user") >= k) & (pl.len().over("item") >= k)
        )
        logger.debug("k-core round %d: %d -> %d rows", rounds, before, len(interactions))
        if len(interactions) == before:
            return interactions, rounds - 1


def assign_ids(interactions: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Add ``userID``/``itemID``, contiguous from 0 in sorted order of the raw ids.

    Returns the rows (sorted by ``userID, itemID``), the user map (``user_id userID``) and the item
    map (``asin itemID``).
    """
    user_map = (
        interactions.select(pl.col("user").unique().sort())
        .with_row_index("userID")
        .select(pl.col("user").alias("user_id"), pl.col("userID").cast(pl.Int64))
    )
    item_map = (
        interactions.select(pl.col("item").unique().sort())
        .with_row_index("itemID")
        .select(pl.col("item").alias("asin"), pl.col("itemID").cast(pl.Int64))
    )
    indexed = (
        interactions.join(user_map, left_on="user", right_on="user_id")
        .join(item_map, left_on="item", right_on="asin")
        .sort(["userID", "itemID"])
    )
    return indexed, user_map, item_map


def _labels_from_position(position: pl.Expr, count: pl.Expr) -> pl.Expr:
    """``x_label`` of the row at ``position`` (0-based) among a user's ``count`` ordered rows.

    MMRec's rule: with fewer than 10 rows the last two go to valid and test; from 10 rows on,
    ``floor(0.2 n)`` rows go to valid+test, valid taking half (rounded down) and test the rest.
    Users with 1 row keep it in train; with 2 rows: train and test (no valid).
    """
    held = pl.when(count < 10).then(2).otherwise((count * 0.2).floor().cast(pl.Int64))
    valid = held // 2
    train_end = count - held
    two_rows = pl.when(position == 0).then(0).otherwise(2)
    general = pl.when(position < train_end).then(0).when(position < train_end + valid).then(1).otherwise(2)
    return pl.when(count == 1).then(0).when(count == 2).then(two_rows).otherwise(general).cast(pl.Int8)


def split_random(interactions: pl.DataFrame, seed: int) -> pl.DataFrame:
    """Add ``x_label`` by MMRec's per-user rule over a seeded random order of each user's rows.

    The rule (MMRec's ``preprocessing/1splitting``) for a user with ``n`` rows: ``n < 10``: the
    last two shuffled rows go to valid (1) and test (2), the rest to train; ``n >= 10``:
    ``h = floor(0.2 n)`` rows are held out, ``floor(h / 2)`` to valid and the rest to test, giving
    8:1:1 for large ``n``. Small-user exception (only with ``k_core < 3``): ``n = 1`` keeps its row
    in train; ``n = 2`` puts one row in train and one in test, none in valid.

    Rows are first put in canonical order (``userID, itemID``) so the result depends only on the
    data and ``seed``; a PCG64 stream then gives each row a random key, and each user's rows are
    ordered by it before :func:`_labels_from_position` assigns labels.
    """
    ordered = interactions.sort(["userID", "itemID"])
    keys = np.random.default_rng(seed).random(len(ordered))
    shuffled = ordered.with_columns(pl.Series("_key", keys)).sort(["userID", "_key"]).drop("_key")
    return _label_in_order(shuffled).sort(["userID", "itemID"])


def _label_in_order(ordered: pl.DataFrame) -> pl.DataFrame:
    """Label rows already ordered within each user (rows of a user contiguous)."""
    position = pl.int_range(pl.len()).over("userID")
    return ordered.with_columns(_labels_from_position(position, pl.len().over("userID")).alias("x_label"))


def split_temporal(interactions: pl.DataFrame) -> pl.DataFrame:
    """Add ``x_label`` by leave-last-out: per user the latest row is test, the one before valid.

    Order is by timestamp, ties broken by ``itemID``; users with 1 row keep it in train, with 2
    rows the later is test.
    """
    ordered = interactions.sort(["userID", "timestamp", "itemID"])
    position = pl.int_range(pl.len()).over("userID")
    count = pl.len().over("userID")
    label = (
        pl.when(count == 1).then(0)
        .when(position == count - 1).then(2)
        .when((position == count - 2) & (count >= 3)).then(1)
        .otherwise(0)
    )
    return ordered.with_columns(label.cast(pl.Int8).alias("x_label")).sort(["userID", "itemID"])


def split(interactions: pl.DataFrame, rule: SplitRule, seed: int) -> pl.DataFrame:
    """Dispatch to :func:`split_random` or :func:`split_temporal`."""
    if rule == "random":
        return split_random(interactions, seed)
    if rule == "temporal":
        return split_temporal(interactions)
    raise ValueError(f"split={rule!r}: expected 'random' or 'temporal'")
