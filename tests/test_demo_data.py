"""The synthetic demo dataset: reproducible bytes, real JPEGs, the planted structure."""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fitmm_core.data.demo import generate_demo_data

SMALL = {"n_users": 80, "n_items": 40, "n_categories": 4}


def _records(path: Path) -> list[dict]:
    with gzip.open(path, "rt") as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo")
    return out, generate_demo_data(out, seed=3, **SMALL)


def _all_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes(demo: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = demo
    generate_demo_data(tmp_path / "again", seed=3, **SMALL)
    assert _all_bytes(out) == _all_bytes(tmp_path / "again")
    generate_demo_data(tmp_path / "other", seed=4, **SMALL)
    assert (out / "reviews.json.gz").read_bytes() != (tmp_path / "other" / "reviews.json.gz").read_bytes()


def test_files_follow_amazon_2018_format(demo: tuple[Path, dict]) -> None:
    out, summary = demo
    reviews = _records(out / "reviews.json.gz")
    meta = _records(out / "meta.json.gz")
    assert len(reviews) == summary["reviews"]
    assert len(meta) == summary["items"] == 40
    assert len({r["reviewerID"] for r in reviews}) == summary["users"] == 80
    review_keys = {"reviewerID", "asin", "overall", "unixReviewTime", "reviewTime", "reviewerName",
                   "summary", "reviewText", "verified"}
    assert all(set(r) == review_keys for r in reviews)
    assert all(re.fullmatch(r"A[A-Z0-9]{13}", r["reviewerID"]) for r in reviews)
    assert all(re.fullmatch(r"B0[A-Z0-9]{8}", m["asin"]) for m in meta)
    assert all(r["overall"] in {1.0, 2.0, 3.0, 4.0, 5.0} for r in reviews)
    assert all(re.fullmatch(r"\d\d \d{1,2}, 20\d\d", r["reviewTime"]) for r in reviews)
    meta_keys = {"asin", "title", "brand", "category", "description", "feature", "imageURL", "imageURLHighRes", "price"}
    assert all(set(m) == meta_keys for m in meta)
    assert {r["asin"] for r in reviews} <= {m["asin"] for m in meta}


def test_jpegs_decode_with_one_per_item(demo: tuple[Path, dict]) -> None:
    out, _ = demo
    asins = {m["asin"] for m in _records(out / "meta.json.gz")}
    files = sorted((out / "images").iterdir())
    assert {p.stem for p in files} == asins
    for path in files:
        with Image.open(path) as image:
            assert image.format == "JPEG"
            assert image.size == (96, 96)
            image.load()


def test_planted_duplicates_and_small_users(demo: tuple[Path, dict]) -> None:
    out, summary = demo
    reviews = _records(out / "reviews.json.gz")
    pairs = Counter((r["reviewerID"], r["asin"]) for r in reviews)
    assert sum(c - 1 for c in pairs.values()) == summary["duplicates"] > 0
    per_user = Counter(r["reviewerID"] for r in reviews)
    assert any(c < 5 for c in per_user.values())


def test_category_shows_in_text_and_image(demo: tuple[Path, dict]) -> None:
    out, summary = demo
    meta = _records(out / "meta.json.gz")
    category = [m["category"][1] for m in meta]
    assert set(category) == set(summary["categories"])
    named = [c.lower() in (m["title"] + " " + " ".join(m["description"])).lower() for m, c in zip(meta, category)]
    assert np.mean(named) >= 0.8
    colours = np.stack([np.asarray(Image.open(out / "images" / f"{m['asin']}.jpg"), dtype=float).mean((0, 1)) for m in meta])
    names = sorted(set(category))
    labels = np.array([names.index(c) for c in category])
    centroids = np.stack([colours[labels == k].mean(0) for k in range(len(names))])
    nearest = np.argmin(((colours[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (nearest == labels).mean() >= 0.9


def test_users_concentrate_on_few_categories(tmp_path: Path) -> None:
    out = tmp_path / "eight"
    generate_demo_data(out, seed=5, n_users=40, n_items=80, n_categories=8)
    category = {m["asin"]: m["category"][1] for m in _records(out / "meta.json.gz")}
    by_user: dict[str, Counter] = {}
    for review in _records(out / "reviews.json.gz"):
        by_user.setdefault(review["reviewerID"], Counter())[category[review["asin"]]] += 1
    top_three_share = [sum(c for _, c in counts.most_common(3)) / sum(counts.values()) for counts in by_user.values()]
    assert np.mean(top_three_share) >= 0.85


@pytest.mark.parametrize("arguments", [{"n_categories": 1}, {"n_categories": 13}, {"n_items": 10}])
def test_invalid_sizes_are_rejected(tmp_path: Path, arguments: dict) -> None:
    with pytest.raises(ValueError, match="n_"):
        generate_demo_data(tmp_path, **{**SMALL, **arguments})
