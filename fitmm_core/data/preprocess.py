"""Interaction preprocessing on polars frames with columns ``user item rating timestamp``.

:func:`encode_ids` comes first: it turns ``user`` and ``item`` (String or Categorical) into
``pl.Enum`` columns whose categories are the sorted raw ids. Every later step then works on the
4-byte physical codes, which sort like the raw ids, and strings appear again only in the id maps.
Steps, each its own function: keep items with metadata, drop duplicate (user, item) pairs keeping
the latest, iterative k-core, contiguous ids, and the train/valid/test split (``x_label`` 0/1/2).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

import numpy as np
import polars as pl

logger = logging.getLogger(__name__)

SplitRule = Literal["random", "temporal"]


def _sorted_enum(column: pl.Series) -> pl.Series:
    """``column`` (no nulls) as a ``pl.Enum`` over its distinct values in sorted order.

    Works on the categorical codes: only the distinct strings are sorted, and each row's new code
    is a lookup of its old one. Categories that no row uses (a shared ``pl.Categories``) are left out.
    """
    if not isinstance(column.dtype, pl.Categorical):
        column = column.cast(pl.Categorical(pl.Categories.random()))
    codes = column.to_physical().to_numpy()
    categories = column.dtype.categories.to_series()
    used = np.flatnonzero(np.bincount(codes, minlength=len(categories)))
    values = categories.gather(used)
    order = values.arg_sort().to_numpy()
    new_code = np.zeros(len(categories), dtype=np.uint32)
    new_code[used[order]] = np.arange(len(used), dtype=np.uint32)
    return pl.Series(column.name, new_code[codes]).cat.to(pl.Enum(values.gather(order)))


def encode_ids(interactions: pl.DataFrame) -> pl.DataFrame:
    """``user`` and ``item`` as ``pl.Enum`` columns whose physical codes follow sorted raw-id order."""
    return interactions.with_columns(_sorted_enum(interactions["user"]), _sorted_enum(interactions["item"]))


def _pair_code(user: str, item: str) -> pl.Expr:
    """One UInt64 per row, ``user code * 2**32 + item code``: sorting by it sorts by (user, item)."""
    return pl.col(user).to_physical().cast(pl.UInt64) * (1 << 32) + pl.col(item).to_physical().cast(pl.UInt64)


def _sort_by_pair(frame: pl.DataFrame, user: str, item: str) -> pl.DataFrame:
    """``frame`` ordered by (user, item); a frame already in that order is returned as it is (no copy)."""
    if frame.select(_pair_code(user, item)).to_series().is_sorted():
        return frame
    return frame.sort(_pair_code(user, item), maintain_order=True)


def keep_items_with_metadata(interactions: pl.DataFrame, items: pl.Series) -> pl.DataFrame:
    """Rows whose ``item`` is among ``items`` (the raw ids that have metadata)."""
    return interactions.filter(pl.col("item").is_in(items.implode()))


def drop_duplicate_pairs(interactions: pl.DataFrame) -> pl.DataFrame:
    """One row per (user, item): the latest by timestamp; among equal timestamps the last in file order.

    Rows come out ordered by (user, item). A stable arg-sort by the pair code puts each pair's rows
    together in file order; only pairs with several rows are then ordered by timestamp, and the
    kept rows are gathered from ``interactions`` once.
    """
    pairs = interactions.select(_pair_code("user", "item").alias("pair"))
    order = pairs.select(pl.arg_sort_by("pair", maintain_order=True)).to_series()
    pairs = pairs.to_series().gather(order)
    repeated = ((pairs == pairs.shift(1)) | (pairs == pairs.shift(-1))).fill_null(False).to_numpy()
    positions = np.flatnonzero(repeated)
    latest = (
        pl.DataFrame({
            "pair": pairs.gather(positions),
            "timestamp": interactions["timestamp"].gather(order.gather(positions)),
            "position": positions,
        })
        .sort(["pair", "timestamp"], maintain_order=True)
        .filter((pl.col("pair") != pl.col("pair").shift(-1)).fill_null(True))["position"]
    )
    del pairs
    keep = ~repeated
    keep[latest.to_numpy()] = True
    return interactions.gather(order.filter(pl.Series(keep)))


def k_core(interactions: pl.DataFrame, k: int) -> tuple[pl.DataFrame, int]:
    """Iteratively drop users and items with fewer than ``k`` interactions until none is left.

    Counts are ``np.bincount`` over the codes of the rows still kept. Returns the filtered rows
    (order kept) and the number of rounds that removed rows; ``k <= 1`` keeps everything (0 rounds).
    """
    if k <= 1:
        return interactions, 0
    users = interactions["user"].to_physical().to_numpy()
    items = interactions["item"].to_physical().to_numpy()
    kept = np.arange(len(interactions))
    rounds = 0
    while True:
        u, i = users[kept], items[kept]
        enough = (np.bincount(u)[u] >= k) & (np.bincount(i)[i] >= k)
        if enough.all():
            break
        rounds += 1
        logger.debug("k-core round %d: %d -> %d rows", rounds, len(kept), int(enough.sum()))
        kept = kept[enough]
    mask = np.zeros(len(interactions), dtype=bool)
    mask[kept] = True
    return interactions.filter(pl.Series(mask)), rounds


def _contiguous(column: pl.Series, raw_name: str, id_name: str) -> tuple[pl.Series, pl.DataFrame]:
    """Ids 0..n-1 over the codes present in ``column`` (an encoded Enum) and the ``raw_name id_name`` map."""
    codes = column.to_physical().to_numpy()
    categories = column.dtype.categories
    present = np.bincount(codes, minlength=len(categories)) > 0
    new_id = (np.cumsum(present) - 1).astype(np.uint32)
    mapping = pl.DataFrame({raw_name: categories.filter(pl.Series(present))}).with_row_index(id_name)
    return (
        pl.Series(id_name, new_id[codes]),
        mapping.select(raw_name, pl.col(id_name).cast(pl.Int64)),
    )


def assign_ids(interactions: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Add ``userID``/``itemID`` (UInt32), contiguous from 0 in sorted order of the raw ids.

    ``interactions`` must come from :func:`encode_ids`. Returns the rows (sorted by ``userID,
    itemID``), the user map (``user_id userID``) and the item map (``asin itemID``).
    """
    user_ids, user_map = _contiguous(interactions["user"], "user_id", "userID")
    item_ids, item_map = _contiguous(interactions["item"], "asin", "itemID")
    indexed = _sort_by_pair(interactions.with_columns(user_ids, item_ids), "userID", "itemID")
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
    data and ``seed``; a PCG64 stream then gives each row a random key, and a row's position in
    its user's shuffled order is the rank of its key among that user's keys.
    """
    ordered = _sort_by_pair(interactions, "userID", "itemID")
    keys = pl.Series("_key", np.random.default_rng(seed).random(len(ordered)))
    position = pl.col("_key").rank("ordinal").over("userID") - 1
    return _with_labels(ordered.with_columns(keys), position, _labels_from_position).drop("_key")


def _with_labels(
    ordered: pl.DataFrame, position: pl.Expr, rule: Callable[[pl.Expr, pl.Expr], pl.Expr]
) -> pl.DataFrame:
    """Add ``x_label = rule(position, count)``, with each row's 0-based ``position`` in its user's
    order and the user's row ``count`` computed once each (eager frames do not share repeated
    sub-expressions)."""
    counted = ordered.with_columns(position.alias("_position"), pl.len().over("userID").alias("_count"))
    label = rule(pl.col("_position"), pl.col("_count"))
    return counted.with_columns(label.alias("x_label")).drop("_position", "_count")


def _last_out(position: pl.Expr, count: pl.Expr) -> pl.Expr:
    """Leave-last-out labels: the last row test, the one before valid (from 3 rows on)."""
    return (
        pl.when(count == 1).then(0)
        .when(position == count - 1).then(2)
        .when((position == count - 2) & (count >= 3)).then(1)
        .otherwise(0)
        .cast(pl.Int8)
    )


def split_temporal(interactions: pl.DataFrame) -> pl.DataFrame:
    """Add ``x_label`` by leave-last-out: per user the latest row is test, the one before valid.

    Order is by timestamp, ties broken by ``itemID``; users with 1 row keep it in train, with 2
    rows the later is test.
    """
    ordered = _sort_by_pair(interactions, "userID", "itemID")
    return _with_labels(ordered, pl.col("timestamp").rank("ordinal").over("userID") - 1, _last_out)


def split(interactions: pl.DataFrame, rule: SplitRule, seed: int) -> pl.DataFrame:
    """Dispatch to :func:`split_random` or :func:`split_temporal`."""
    if rule == "random":
        return split_random(interactions, seed)
    if rule == "temporal":
        return split_temporal(interactions)
    raise ValueError(f"split={rule!r}: expected 'random' or 'temporal'")
