"""Checks of a prepared folder pass on good data and fail on planted faults; summary and plot."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from fitmm_core.data.checks import check_prepared, dataset_summary, degree_plot_png
from fitmm_core.data.demo import generate_demo_data
from fitmm_core.data.prepare import PrepareSettings, prepare_dataset

HEADER = "userID\titemID\trating\ttimestamp\tx_label\n"


def _folder(tmp_path: Path, rows: list[tuple[int, int, int]], users: int | None = None, items: int | None = None) -> Path:
    """A folder with ``rows`` of (user, item, x_label) and id maps for ``users``/``items`` ids."""
    folder = tmp_path / "data"
    folder.mkdir(exist_ok=True)
    (folder / "toy.inter").write_text(HEADER + "".join(f"{u}\t{i}\t5.0\t0\t{x}\n" for u, i, x in rows))
    n_users = users if users is not None else max(r[0] for r in rows) + 1
    n_items = items if items is not None else max(r[1] for r in rows) + 1
    (folder / "u_id_mapping.csv").write_text("user_id\tuserID\n" + "".join(f"U{k}\t{k}\n" for k in range(n_users)))
    (folder / "i_id_mapping.csv").write_text("asin\titemID\n" + "".join(f"B{k}\t{k}\n" for k in range(n_items)))
    return folder


def _good_rows() -> list[tuple[int, int, int]]:
    """3 users x 3 items, each user: train, valid, test."""
    return [(u, i, (i + u) % 3) for u in range(3) for i in range(3)]


def _outcomes(folder: Path, k: int = 3) -> dict[str, bool]:
    return {o.name: o.passed for o in check_prepared(folder, k)}


def test_good_folder_passes_everything(tmp_path: Path) -> None:
    assert _outcomes(_folder(tmp_path, _good_rows())) == {
        "k_core": True, "splits_disjoint": True, "users_have_splits": True, "user_id_map": True, "item_id_map": True}


def test_planted_leak_fails_disjoint(tmp_path: Path) -> None:
    rows = _good_rows()
    test_pair = next(r for r in rows if r[2] == 2)
    outcomes = check_prepared(_folder(tmp_path, rows + [(test_pair[0], test_pair[1], 0)]), 3)
    disjoint = next(o for o in outcomes if o.name == "splits_disjoint")
    assert not disjoint.passed
    assert disjoint.metadata["repeated_pairs"] == 1
    assert disjoint.metadata["examples"] == [{"userID": test_pair[0], "itemID": test_pair[1], "x_labels": [2, 0]}]


def test_low_degree_fails_k_core(tmp_path: Path) -> None:
    outcome = check_prepared(_folder(tmp_path, _good_rows()), 4)[0]
    assert outcome.name == "k_core" and not outcome.passed
    assert (outcome.metadata["users_below_k"], outcome.metadata["items_below_k"]) == (3, 3)


def test_user_without_test_fails(tmp_path: Path) -> None:
    rows = [(u, i, 0 if (u, i) == (1, 1) else x) for u, i, x in _good_rows()]
    outcome = check_prepared(_folder(tmp_path, rows), 3)[2]
    assert not outcome.passed
    assert outcome.metadata["users_without_test"] == 1 and outcome.metadata["example_users"] == [1]


def test_map_mismatch_fails(tmp_path: Path) -> None:
    folder = _folder(tmp_path, _good_rows(), items=4)
    assert _outcomes(folder)["item_id_map"] is False
    (folder / "u_id_mapping.csv").write_text("user_id\tuserID\nU0\t0\nU1\t1\nU1\t2\n")
    assert _outcomes(folder)["user_id_map"] is False
    (folder / "u_id_mapping.csv").unlink()
    assert _outcomes(folder)["user_id_map"] is False


def test_summary_exact(tmp_path: Path) -> None:
    rows = _good_rows() + [(3, 0, 0), (3, 1, 1)]
    summary = dataset_summary(_folder(tmp_path, rows))
    assert {k: summary[k] for k in ("users", "items", "interactions")} == {"users": 4, "items": 3, "interactions": 11}
    assert summary["density"] == pytest.approx(11 / 12)
    assert summary["splits"] == {"train": 4, "valid": 4, "test": 3}
    assert summary["user_degree"]["p0"] == 2 and summary["user_degree"]["p100"] == 3
    assert summary["item_degree"]["mean"] == pytest.approx(11 / 3)


def test_degree_plot_is_a_png(tmp_path: Path) -> None:
    payload = degree_plot_png(_folder(tmp_path, _good_rows()))
    with Image.open(io.BytesIO(payload)) as image:
        assert image.format == "PNG" and image.size == (800, 340)


def test_prepared_demo_folder_passes(tmp_path: Path) -> None:
    generate_demo_data(tmp_path / "raw", seed=2, n_users=60, n_items=30, n_categories=3)
    prepare_dataset(PrepareSettings(format="amazon2018", reviews=str(tmp_path / "raw" / "reviews.json.gz"),
                                    meta=str(tmp_path / "raw" / "meta.json.gz"), out=tmp_path / "demo", name="demo"))
    outcomes = check_prepared(tmp_path / "demo", 5)
    assert [o.name for o in outcomes if not o.passed] == []
