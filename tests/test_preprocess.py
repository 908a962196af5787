"""Dedup, k-core, ids and splits on hand-made interactions with known answers."""

from __future__ import annotations

from collections import Counter

import polars as pl
import pytest

from fitmm_core.data import preprocess


def _frame(rows: list[tuple[str, str, float, int]]) -> pl.DataFrame:
    schema = {"user": pl.String, "item": pl.String, "rating": pl.Float64, "timestamp": pl.Int64}
    return preprocess.encode_ids(pl.DataFrame(rows, schema=schema, orient="row"))


def _indexed(counts: dict[str, int]) -> pl.DataFrame:
    rows = [(u, f"i{k:03d}", 5.0, 1000 + k) for u, n in counts.items() for k in range(n)]
    return preprocess.assign_ids(_frame(rows))[0]


@pytest.mark.parametrize("dtype", [pl.String, pl.Categorical])
def test_encoded_codes_follow_sorted_raw_ids(dtype: pl.DataType) -> None:
    raw = pl.DataFrame({"user": ["zed", "amy", "bob", "amy"], "item": ["B9", "B1", "B5", "B9"]})
    encoded = preprocess.encode_ids(raw.cast({"user": dtype, "item": dtype}))
    assert encoded["user"].dtype == pl.Enum(["amy", "bob", "zed"])
    assert encoded["item"].dtype == pl.Enum(["B1", "B5", "B9"])
    assert encoded["user"].to_physical().to_list() == [2, 0, 1, 0]
    assert encoded["item"].to_physical().to_list() == [2, 0, 1, 2]
    assert encoded.rows() == raw.rows()


def test_duplicates_keep_latest_then_last_in_file() -> None:
    frame = _frame([("v", "a", 4.0, 1), ("u", "a", 1.0, 5), ("u", "a", 2.0, 9), ("u", "b", 1.0, 1),
                    ("u", "a", 3.0, 7), ("v", "a", 5.0, 1), ("w", "c", 6.0, 3), ("u", "a", 0.0, 8)])
    # ordered by (user, item): u,a keeps the latest (t=9); v,a has a tie at t=1 -> the later line
    assert preprocess.drop_duplicate_pairs(frame).rows() == [
        ("u", "a", 2.0, 9), ("u", "b", 1.0, 1), ("v", "a", 5.0, 1), ("w", "c", 6.0, 3),
    ]


def test_k_core_needs_two_rounds() -> None:
    # k=2: item c has one rating -> dropped; then user w has one rating left -> dropped;
    # then item d (rated by w and x) has one rating left -> dropped; then x has one -> dropped.
    rows = [("u", "a"), ("u", "b"), ("v", "a"), ("v", "b"), ("w", "c"), ("w", "d"), ("x", "d"), ("x", "a")]
    frame = _frame([(u, i, 5.0, 0) for u, i in rows])
    kept, rounds = preprocess.k_core(frame, 2)
    assert kept.select("user", "item").rows() == [("u", "a"), ("u", "b"), ("v", "a"), ("v", "b")]
    assert rounds == 4
    assert preprocess.k_core(frame, 1) == (frame, 0)
    assert len(preprocess.k_core(frame, 3)[0]) == 0


def test_keep_items_with_metadata() -> None:
    frame = _frame([("u", "a", 5.0, 0), ("u", "b", 5.0, 0)])
    assert preprocess.keep_items_with_metadata(frame, pl.Series(["b", "z"])).rows() == [("u", "b", 5.0, 0)]


def test_ids_are_contiguous_in_sorted_raw_order() -> None:
    frame = _frame([("zed", "B9", 5.0, 0), ("amy", "B5", 4.0, 0), ("amy", "B9", 3.0, 0)])
    indexed, users, items = preprocess.assign_ids(frame)
    assert users.rows() == [("amy", 0), ("zed", 1)]
    assert items.rows() == [("B5", 0), ("B9", 1)]
    assert indexed.select("userID", "itemID", "rating").rows() == [(0, 0, 4.0), (0, 1, 3.0), (1, 1, 5.0)]


def test_ids_skip_raw_ids_dropped_before() -> None:
    frame = _frame([("amy", "B1", 5.0, 0), ("bob", "B2", 4.0, 0), ("cat", "B3", 3.0, 0), ("cat", "B1", 2.0, 0)])
    indexed, users, items = preprocess.assign_ids(frame.filter(pl.col("user") != "bob"))
    assert users.rows() == [("amy", 0), ("cat", 1)]
    assert items.rows() == [("B1", 0), ("B3", 1)]
    assert indexed.select("userID", "itemID", "rating").rows() == [(0, 0, 5.0), (1, 0, 2.0), (1, 1, 3.0)]


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, (1, 0, 0)), (2, (1, 0, 1)), (3, (1, 1, 1)), (5, (3, 1, 1)), (9, (7, 1, 1)),
     (10, (8, 1, 1)), (15, (12, 1, 2)), (20, (16, 2, 2)), (101, (81, 10, 10))],
)
def test_random_split_sizes_follow_mmrec_rule(n: int, expected: tuple[int, int, int]) -> None:
    labels = preprocess.split_random(_indexed({"u": n}), seed=7)["x_label"].to_list()
    assert (labels.count(0), labels.count(1), labels.count(2)) == expected


def test_random_split_is_deterministic_and_seeded() -> None:
    frame = _indexed({f"u{k}": 12 + k for k in range(6)})
    first = preprocess.split_random(frame, seed=1)
    assert first.equals(preprocess.split_random(frame.sample(fraction=1.0, shuffle=True, seed=3), seed=1))
    other = preprocess.split_random(frame, seed=2)
    assert first["x_label"].to_list() != other["x_label"].to_list()
    assert Counter(first["x_label"].to_list()) == Counter(other["x_label"].to_list())


def test_random_split_overall_proportions() -> None:
    labels = Counter(preprocess.split_random(_indexed({f"u{k}": 50 for k in range(20)}), seed=0)["x_label"].to_list())
    assert (labels[0], labels[1], labels[2]) == (800, 100, 100)


def test_temporal_split_leaves_last_out() -> None:
    rows = [("u", "a", 5.0, 30), ("u", "b", 5.0, 10), ("u", "c", 5.0, 20), ("u", "d", 5.0, 30),
            ("v", "a", 5.0, 1), ("v", "b", 5.0, 2), ("w", "c", 5.0, 3)]
    indexed, _, _ = preprocess.assign_ids(_frame(rows))
    labelled = preprocess.split(indexed, "temporal", seed=0)
    got = {(u, i): x for u, i, x in labelled.select("user", "item", "x_label").rows()}
    # u: b(10) c(20) a(30) d(30, tie broken by item id) -> a valid, d test; v: b test; w: c train
    assert got == {("u", "b"): 0, ("u", "c"): 0, ("u", "a"): 1, ("u", "d"): 2,
                   ("v", "a"): 0, ("v", "b"): 2, ("w", "c"): 0}


def test_unknown_split_rule() -> None:
    with pytest.raises(ValueError, match="split='weekly'"):
        preprocess.split(_indexed({"u": 3}), "weekly", seed=0)  # type: ignore[arg-type]
