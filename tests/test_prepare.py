"""prepare_dataset end to end: the MMRec folder, its extras, atomic replacement and clear errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from fitmm_core.data.demo import generate_demo_data
from fitmm_core.data.mmrec_format import load_mmrec, read_id_map, read_manifest
from fitmm_core.data.prepare import PrepareError, PrepareSettings, prepare_dataset, render_text, top_categories
from fitmm_core.data.readers import RawFormatError
from fitmm_core.data.sources import file_sha256
from tests.shared_data import GIFT_CARD_IMAGES, GIFT_CARD_META, GIFT_CARDS


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("raw")
    generate_demo_data(out, seed=1, n_users=90, n_items=40, n_categories=4)
    return out


def _settings(raw: Path, out: Path, **overrides: object) -> PrepareSettings:
    values = {"format": "amazon2018", "reviews": str(raw / "reviews.json.gz"), "meta": str(raw / "meta.json.gz"),
              "images": raw / "images", "out": out, "name": "demo"}
    return PrepareSettings(**{**values, **overrides})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def prepared(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("prepared") / "demo"
    return out, prepare_dataset(_settings(raw, out))


def test_folder_loads_and_manifest_counts_match(prepared: tuple[Path, dict], raw: Path) -> None:
    out, manifest = prepared
    assert sorted(p.name for p in out.iterdir()) == [
        "demo.inter", "i_id_mapping.csv", "items.parquet", "manifest.json", "u_id_mapping.csv"]
    data = load_mmrec(out)
    counts = manifest["counts"]
    assert (data.n_users, data.n_items, data.n_interactions) == (counts["users"], counts["items"], counts["interactions"])
    assert counts["splits"] == {"train": len(data.train), "valid": len(data.valid), "test": len(data.test)}
    assert counts["density"] == pytest.approx(counts["interactions"] / (counts["users"] * counts["items"]))
    assert read_manifest(out) == manifest
    assert manifest["sources"]["reviews"]["sha256"] == file_sha256(raw / "reviews.json.gz")
    assert manifest["settings"]["k_core"] == 5
    steps = manifest["steps"]
    assert steps["raw_interactions"] > steps["deduplicated"] > steps["k_core"] == counts["interactions"]


def test_inter_and_maps_follow_mmrec_layout(prepared: tuple[Path, dict]) -> None:
    out, _ = prepared
    lines = (out / "demo.inter").read_text().splitlines()
    assert lines[0] == "userID\titemID\trating\ttimestamp\tx_label"
    inter = pl.read_csv(out / "demo.inter", separator="\t")
    users, items = read_id_map(out / "u_id_mapping.csv"), read_id_map(out / "i_id_mapping.csv")
    assert sorted(users.values()) == list(range(len(users))) and list(users) == sorted(users)
    assert sorted(items.values()) == list(range(len(items))) and list(items) == sorted(items)
    assert set(inter["userID"]) == set(users.values()) and set(inter["itemID"]) == set(items.values())
    assert (out / "u_id_mapping.csv").read_text().splitlines()[0] == "user_id\tuserID"
    assert (out / "i_id_mapping.csv").read_text().splitlines()[0] == "asin\titemID"
    assert inter.group_by("userID", "itemID").len()["len"].max() == 1


def test_items_parquet(prepared: tuple[Path, dict], raw: Path) -> None:
    out, _ = prepared
    items = pl.read_parquet(out / "items.parquet")
    assert items.schema == {"itemID": pl.Int64, "asin": pl.String, "text": pl.String, "image": pl.String,
                            "top_category": pl.String}
    assert items["itemID"].to_list() == list(range(len(items)))
    assert items["asin"].to_list() == sorted(read_id_map(out / "i_id_mapping.csv"))
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in items["image"])
    meta = {m["asin"]: m for m in map(json.loads, gzip.open(raw / "meta.json.gz", "rt"))}
    first = meta[items["asin"][0]]
    assert items["text"][0].startswith(first["title"] + " " + first["brand"] + " " + " ".join(first["category"]))
    assert items["top_category"].to_list() == [meta[a]["category"][1] for a in items["asin"]]


def test_same_settings_give_same_files(prepared: tuple[Path, dict], raw: Path, tmp_path: Path) -> None:
    out, _ = prepared
    prepare_dataset(_settings(raw, tmp_path / "again"))
    for name in ("demo.inter", "u_id_mapping.csv", "i_id_mapping.csv"):
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes()
    prepare_dataset(_settings(raw, tmp_path / "seed2", seed=2))
    assert (tmp_path / "seed2" / "demo.inter").read_bytes() != (out / "demo.inter").read_bytes()


def _write_2014(folder: Path) -> tuple[Path, Path]:
    users = ["A3", "A1", "A2"]
    reviews = [{"reviewerID": u, "asin": i, "overall": 4.0, "unixReviewTime": t, "reviewText": "..."}
               for t, (u, i) in enumerate((u, i) for u in users for i in ("B2", "B1", "B3"))]
    reviews.append({"reviewerID": "A9", "asin": "B1", "overall": 1.0, "unixReviewTime": 99})
    reviews.append({"reviewerID": "A1", "asin": "B4", "overall": 1.0, "unixReviewTime": 98})
    review_path = folder / "reviews_Tiny.json"
    review_path.write_text("".join(json.dumps(r) + "\n" for r in reviews))
    meta_path = folder / "meta_Tiny.json.gz"
    meta_lines = [f"{{'asin': '{a}', 'title': 'Item {a}', 'categories': [['Tiny', 'Sub{a}']], 'imUrl': 'http://x/{a}.jpg'}}\n"
                  for a in ("B1", "B2", "B3")]
    meta_path.write_bytes(gzip.compress("".join(meta_lines).encode(), mtime=0))
    return review_path, meta_path


def test_tiny_2014_dataset_exact(tmp_path: Path) -> None:
    review_path, meta_path = _write_2014(tmp_path)
    manifest = prepare_dataset(PrepareSettings(
        format="amazon2014", reviews=str(review_path), meta=str(meta_path), out=tmp_path / "tiny", name="tiny",
        k_core=3, split="temporal"))
    # A9 (1 review) and B4 (no metadata) go; 3 users x 3 items remain, each user's latest is test.
    assert manifest["steps"] == {"raw_interactions": 11, "with_metadata": 10, "deduplicated": 10, "k_core": 9,
                                 "k_core_rounds": 1}
    rows = pl.read_csv(tmp_path / "tiny" / "tiny.inter", separator="\t").rows()
    assert rows[:3] == [(0, 0, 4.0, 4, 1), (0, 1, 4.0, 3, 0), (0, 2, 4.0, 5, 2)]
    items = pl.read_parquet(tmp_path / "tiny" / "items.parquet")
    assert items.select("asin", "text", "image", "top_category").rows() == [
        ("B1", "Item B1 Tiny SubB1", "http://x/B1.jpg", "SubB1"),
        ("B2", "Item B2 Tiny SubB2", "http://x/B2.jpg", "SubB2"),
        ("B3", "Item B3 Tiny SubB3", "http://x/B3.jpg", "SubB3"),
    ]


TINY_2018 = [("B", "I2", 4.0, 1), ("A", "I1", 1.0, 5), ("C", "I3", 2.0, 7), ("A", "I1", 2.0, 9), ("B", "I2", 5.0, 0),
             ("A", "I3", 3.5, 4), ("A", "I1", 3.0, 9), ("C", "I1", 1.0, 2), ("A", "I2", 4.5, 6), ("B", "I3", 2.5, 3)]
INTER_HEADER = "userID\titemID\trating\ttimestamp\tx_label\n"


@pytest.mark.parametrize(
    ("split", "labels"), [("random", [0, 1, 2, 2, 0, 0, 2]), ("temporal", [2, 1, 0, 0, 2, 0, 2])]
)
def test_tiny_2018_inter_bytes(tmp_path: Path, split: str, labels: list[int]) -> None:
    # (A, I1): t=5, 9, 9 -> the later t=9 line (3.0); (B, I2): t=1 beats the later line at t=0.
    reviews = [{"reviewerID": u, "asin": i, "overall": r, "unixReviewTime": t} for u, i, r, t in TINY_2018]
    (tmp_path / "r.json").write_text("".join(json.dumps(r) + "\n" for r in reviews))
    (tmp_path / "m.json").write_text("".join(json.dumps({"asin": a, "title": a}) + "\n" for a in ("I3", "I1", "I2")))
    prepare_dataset(PrepareSettings(
        format="amazon2018", reviews=str(tmp_path / "r.json"), meta=str(tmp_path / "m.json"), out=tmp_path / "t",
        name="t", k_core=1, split=split, seed=3))  # type: ignore[arg-type]
    rows = ["0\t0\t3.0\t9", "0\t1\t4.5\t6", "0\t2\t3.5\t4", "1\t1\t4.0\t1", "1\t2\t2.5\t3",
            "2\t0\t1.0\t2", "2\t2\t2.0\t7"]
    expected = INTER_HEADER + "".join(f"{row}\t{label}\n" for row, label in zip(rows, labels))
    assert (tmp_path / "t" / "t.inter").read_text() == expected
    assert (tmp_path / "t" / "u_id_mapping.csv").read_text() == "user_id\tuserID\nA\t0\nB\t1\nC\t2\n"
    assert (tmp_path / "t" / "i_id_mapping.csv").read_text() == "asin\titemID\nI1\t0\nI2\t1\nI3\t2\n"


def test_failure_leaves_existing_output_untouched(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    bad_reviews = tmp_path / "bad.json"
    bad_reviews.write_text('{"reviewerID": "A", "asin": "B", "overall": 5, "unixReviewTime": 1}\n{broken\n')
    with pytest.raises(RawFormatError, match=r"bad\.json: line 2"):
        prepare_dataset(_settings(raw, out, reviews=str(bad_reviews)))
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json", "demo"]
    prepare_dataset(_settings(raw, out))
    assert not (out / "keep.txt").exists() and (out / "demo.inter").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json", "demo"]


def test_skip_mode_reports_bad_lines(raw: Path, tmp_path: Path) -> None:
    text = gzip.decompress((raw / "reviews.json.gz").read_bytes()).decode().splitlines()
    text.insert(3, "not json")
    (tmp_path / "reviews.json").write_text("\n".join(text) + "\n")
    manifest = prepare_dataset(_settings(raw, tmp_path / "out", reviews=str(tmp_path / "reviews.json"),
                                         on_bad_lines="skip"))
    assert manifest["bad_lines"]["reviews"]["count"] == 1
    assert "reviews.json: line 4: cannot parse" in manifest["bad_lines"]["reviews"]["examples"][0]


def test_nothing_joins_or_survives(raw: Path, tmp_path: Path) -> None:
    other_meta = tmp_path / "meta.json"
    other_meta.write_text('{"asin": "X1", "title": "unrelated"}\n')
    with pytest.raises(PrepareError, match="no review item .* has metadata"):
        prepare_dataset(_settings(raw, tmp_path / "a", meta=str(other_meta)))
    with pytest.raises(PrepareError, match="nothing survives the 500-core"):
        prepare_dataset(_settings(raw, tmp_path / "b", k_core=500))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.json"]


def test_mmrec_folder_imported_as_is(prepared: tuple[Path, dict], tmp_path: Path) -> None:
    out, manifest = prepared
    source = tmp_path / "source"
    source.mkdir()
    for name in ("demo.inter", "u_id_mapping.csv", "i_id_mapping.csv"):
        (source / name).write_bytes((out / name).read_bytes())
    np.save(source / "image_feat.npy", np.zeros((manifest["counts"]["items"], 4), dtype=np.float32))
    imported = prepare_dataset(PrepareSettings(format="mmrec", reviews=str(source), meta=None,
                                               out=tmp_path / "baby", name="baby"))
    assert (tmp_path / "baby" / "baby.inter").read_bytes() == (out / "demo.inter").read_bytes()
    assert imported["counts"] == manifest["counts"]
    assert load_mmrec(tmp_path / "baby").features["image"].shape == (manifest["counts"]["items"], 4)
    items = pl.read_parquet(tmp_path / "baby" / "items.parquet")
    assert items["asin"].to_list() == pl.read_parquet(out / "items.parquet")["asin"].to_list()
    assert items["text"].null_count() == len(items)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"format": "amazon2020"}, "format='amazon2020'"), ({"k_core": 0}, "k_core=0"),
     ({"name": "a/b"}, "name='a/b'"), ({"text_template": "{title} {colour}"}, r"unknown field\(s\) \['colour'\]"),
     ({"meta": None}, "require_metadata=True needs meta"), ({"split": "weekly"}, "split='weekly'")],
)
def test_settings_are_validated(tmp_path: Path, overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _settings(tmp_path, tmp_path / "out", **overrides)


def test_render_text_and_top_categories() -> None:
    record = {"title": "Mug &amp; Lid", "brand": None, "categories": ["Home", "Kitchen"],
              "description": ["<p>Big</p>", "mug."], "features": ["Dishwasher safe"]}
    assert render_text("{title} {brand} {categories} {description}", "B1", record) == "Mug & Lid Home Kitchen Big mug."
    assert render_text("{asin}: {features}", "B1", record) == "B1: Dishwasher safe"
    assert render_text("{title}", "B1", None) == ""
    assert top_categories([["Store", "A", "x"], ["Store", "B"], ["Store"], []]) == ["A", "B", "Store", None]
    assert top_categories([["Gift Cards", "Gift Cards"], ["Gift Cards"]]) == ["Gift Cards", "Gift Cards"]


@pytest.mark.skipif(not GIFT_CARDS.exists(), reason="shared Gift Cards data not present")
def test_real_gift_cards_images_and_urls(tmp_path: Path) -> None:
    with_file = ["B001GXRQW0", "B001H53QE4", "B001H53QEO"]
    url_only, no_image = ["B001KMWN2K", "B004BVCHDC"], ["B001BKEWF2"]
    asins = with_file + url_only + no_image
    reviews = [{"reviewerID": f"A{u}", "asin": a, "overall": 5.0, "unixReviewTime": 1_500_000_000 + u}
               for u in range(6) for a in asins]
    (tmp_path / "reviews.json").write_text("".join(json.dumps(r) + "\n" for r in reviews))
    manifest = prepare_dataset(PrepareSettings(
        format="amazon2018", reviews=str(tmp_path / "reviews.json"), meta=str(GIFT_CARD_META),
        images=GIFT_CARD_IMAGES, out=tmp_path / "gift", name="gift"))
    items = pl.read_parquet(tmp_path / "gift" / "items.parquet")
    image = dict(zip(items["asin"], items["image"]))
    assert all(image[a] == str((GIFT_CARD_IMAGES / f"{a}.jpg").resolve()) for a in with_file)
    assert image["B001KMWN2K"] == "https://images-na.ssl-images-amazon.com/images/I/41lbRayp5mL.jpg"
    assert image["B004BVCHDC"].startswith("https://") and image["B001BKEWF2"] is None
    assert manifest["items"]["items_with_local_image"] == 3 and manifest["items"]["items_without_image"] == 1
    assert items.filter(pl.col("asin") == "B001GXRQW0")["text"].item().startswith("Amazon.com Gift Cards Amazon Gift Cards")
