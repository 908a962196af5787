"""Raw-format readers (2014, 2018, 2023; gzip and plain) and URL sources."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from fitmm_core.data.readers import RawFormatError, read_interactions, read_metadata
from fitmm_core.data.sources import resolve_source
from tests.servers import serving
from tests.shared_data import GIFT_CARD_META


def _write(path: Path, lines: list[str]) -> Path:
    payload = "".join(line + "\n" for line in lines).encode()
    if path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)
    return path


def _review_2018(user: str, item: str, rating: float, when: int) -> str:
    return json.dumps({"reviewerID": user, "asin": item, "overall": rating, "unixReviewTime": when,
                       "reviewText": "long text " * 20, "style": {"Size:": "M"}})


@pytest.mark.parametrize("name", ["reviews.json", "reviews.json.gz"])
@pytest.mark.parametrize("fmt", ["amazon2014", "amazon2018"])
def test_reviews_json_lines(tmp_path: Path, name: str, fmt: str) -> None:
    path = _write(tmp_path / name, [_review_2018("U1", "I1", 5.0, 100), "", _review_2018("U2", "I1", 3, 200)])
    frame, bad = read_interactions(fmt, path)
    assert frame.columns == ["user", "item", "rating", "timestamp"]
    assert frame.rows() == [("U1", "I1", 5.0, 100), ("U2", "I1", 3.0, 200)]
    assert bad.count == 0


def test_interaction_ids_are_categorical_per_file(tmp_path: Path) -> None:
    first, _ = read_interactions("amazon2018", _write(tmp_path / "a.json", [_review_2018("U1", "I1", 5.0, 1)]))
    lines = [_review_2018("U2", "I2", 4.0, 2), _review_2018("U3", "I2", 3.0, 3), _review_2018("U2", "I3", 2.0, 4)]
    second, _ = read_interactions("amazon2018", _write(tmp_path / "b.json", lines))
    for column, ids in (("user", ["U2", "U3"]), ("item", ["I2", "I3"])):
        assert isinstance(second[column].dtype, pl.Categorical)
        assert second[column].dtype != first[column].dtype
        assert sorted(second[column].dtype.categories.to_series().to_list()) == ids


@pytest.mark.parametrize("name", ["ratings.csv", "ratings.csv.gz"])
def test_ratings_csv_2014(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path / name, ["A1,B1,5.0,1400000000", "A2,B2,4.0,1400000001"])
    frame, _ = read_interactions("amazon2014", path)
    assert frame.rows() == [("A1", "B1", 5.0, 1400000000), ("A2", "B2", 4.0, 1400000001)]


def test_ratings_csv_bad_row_names_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "ratings.csv", ["A1,B1,5.0,1", "A2,B2,high,2"])
    with pytest.raises(RawFormatError, match=r"ratings\.csv: line 2: field 'rating': expected a number"):
        read_interactions("amazon2014", path)


def test_meta_2014_python_literals(tmp_path: Path) -> None:
    lines = [
        "{'asin': 'B1', 'title': \"Kid's Bib\", 'brand': 'Acme', 'categories': [['Baby', 'Feeding'], ['Gifts']],"
        " 'description': 'Soft <b>cotton</b>.', 'imUrl': 'http://x/1.jpg', 'related': {'also_bought': ['B2']}}",
        "{'asin': 'B2', 'categories': [['Baby']], 'price': 3.5}",
    ]
    frame, _ = read_metadata("amazon2014", _write(tmp_path / "meta.json.gz", lines))
    assert frame.row(0, named=True) == {
        "item": "B1", "title": "Kid's Bib", "brand": "Acme", "categories": ["Baby", "Feeding"],
        "description": ["Soft <b>cotton</b>."], "features": [], "image_url": "http://x/1.jpg",
    }
    assert frame.row(1, named=True) == {
        "item": "B2", "title": None, "brand": None, "categories": ["Baby"],
        "description": [], "features": [], "image_url": None,
    }


def test_meta_2018_prefers_high_res_and_first_duplicate(tmp_path: Path) -> None:
    lines = [
        json.dumps({"asin": "B1", "title": "One", "category": ["Store", "Toys"], "description": ["a", "b"],
                    "feature": ["f"], "imageURL": ["http://s/1.jpg"], "imageURLHighRes": ["http://h/1.jpg"],
                    "details": {"\n Weight:": "1 oz"}, "rank": "12 in Toys"}),
        json.dumps({"asin": "B2", "title": "Two", "description": "plain string", "imageURL": ["http://s/2.jpg"],
                    "imageURLHighRes": []}),
        json.dumps({"asin": "B1", "title": "One again"}),
    ]
    frame, _ = read_metadata("amazon2018", _write(tmp_path / "meta.json", lines))
    assert frame["item"].to_list() == ["B1", "B2"]
    assert frame["title"].to_list() == ["One", "Two"]
    assert frame["image_url"].to_list() == ["http://h/1.jpg", "http://s/2.jpg"]
    assert frame["description"].to_list() == [["a", "b"], ["plain string"]]
    assert frame["categories"].to_list() == [["Store", "Toys"], []]


def test_reviews_and_meta_2023(tmp_path: Path) -> None:
    review = {"rating": 4.0, "title": "ok", "text": "fine", "images": [], "asin": "B0C1", "parent_asin": "P1",
              "user_id": "AGX", "timestamp": 1588687728923, "helpful_vote": 0, "verified_purchase": True}
    frame, _ = read_interactions("amazon2023", _write(tmp_path / "reviews.jsonl", [json.dumps(review)]))
    assert frame.rows() == [("AGX", "P1", 4.0, 1588687728)]
    meta = {"main_category": "All Beauty", "title": "Serum", "features": ["vegan"], "description": ["Nice."],
            "store": "Glow", "categories": ["Beauty", "Skin"], "details": {"Brand": "Glow"}, "parent_asin": "P1",
            "images": [{"thumb": "t1", "large": "l1", "hi_res": None, "variant": "PT01"},
                       {"thumb": "t0", "large": "l0", "hi_res": "h0", "variant": "MAIN"}]}
    frame, _ = read_metadata("amazon2023", _write(tmp_path / "meta.jsonl.gz", [json.dumps(meta)]))
    assert frame.row(0, named=True) == {
        "item": "P1", "title": "Serum", "brand": "Glow", "categories": ["Beauty", "Skin"],
        "description": ["Nice."], "features": ["vegan"], "image_url": "h0",
    }


@pytest.mark.skipif(not GIFT_CARD_META.exists(), reason="shared Gift Cards data not present")
def test_real_gift_cards_metadata_parses() -> None:
    frame, bad = read_metadata("amazon2018", GIFT_CARD_META)
    assert len(frame) == 1547 and frame["item"].n_unique() == 1547
    assert bad.count == 0
    row = frame.filter(pl.col("item") == "B001GXRQW0").row(0, named=True)
    assert row["title"] == "Amazon.com Gift Cards" and row["brand"] == "Amazon"
    assert row["categories"] == ["Gift Cards", "Gift Cards"]
    assert frame["image_url"].drop_nulls().str.starts_with("https://").all()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"reviewerID": "U9", "asin": "I9", "overall": 5.0', r"line 2: cannot parse the line"),
        ('{"reviewerID": "U9", "overall": 5.0, "unixReviewTime": 3}', r"line 2: field 'asin': missing"),
        ('{"reviewerID": "U9", "asin": "I9", "overall": "five", "unixReviewTime": 3}', r"line 2: field 'overall'"),
        ('["U9", "I9"]', r"line 2: expected an object, got list"),
    ],
)
def test_malformed_line_names_file_line_and_field(tmp_path: Path, line: str, message: str) -> None:
    path = _write(tmp_path / "reviews.json.gz", [_review_2018("U1", "I1", 5.0, 1), line, _review_2018("U2", "I2", 4.0, 2)])
    with pytest.raises(RawFormatError, match=r"reviews\.json\.gz: " + message):
        read_interactions("amazon2018", path)


def test_skip_mode_counts_bad_lines(tmp_path: Path) -> None:
    lines = [_review_2018("U1", "I1", 5.0, 1), "{oops", _review_2018("U2", "I2", 4.0, 2),
             '{"reviewerID": "U3", "asin": "", "overall": 1, "unixReviewTime": 3}']
    frame, bad = read_interactions("amazon2018", _write(tmp_path / "r.json", lines), on_bad_lines="skip")
    assert frame.rows() == [("U1", "I1", 5.0, 1), ("U2", "I2", 4.0, 2)]
    assert bad.count == 2
    assert [e.split(": ")[1] for e in bad.examples] == ["line 2", "line 4"]


def test_invalid_utf8_is_a_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_bytes(_review_2018("U1", "I1", 5.0, 1).encode() + b"\n\xff\xfe\n")
    with pytest.raises(RawFormatError, match="line 2: not valid UTF-8"):
        read_interactions("amazon2018", path)


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="format='amazon2020'"):
        read_interactions("amazon2020", _write(tmp_path / "r.json", [_review_2018("U", "I", 1, 1)]))  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="nothere.json"):
        read_metadata("amazon2018", tmp_path / "nothere.json")


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves one payload, honouring ``Range: bytes=N-`` and recording what it was asked."""

    payload = b""
    requests: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        requested = self.headers.get("Range")
        type(self).requests.append(requested)
        start = int(requested.removeprefix("bytes=").rstrip("-")) if requested else 0
        body = self.payload[start:]
        self.send_response(206 if requested else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def server() -> Iterator[str]:
    _RangeHandler.payload = bytes(range(256)) * 400
    _RangeHandler.requests = []
    with serving(_RangeHandler) as url:
        yield f"{url}/files/meta_Toys.json.gz"


def test_url_downloaded_once_with_record(server: str, tmp_path: Path) -> None:
    path = resolve_source(server, tmp_path / "cache")
    assert path.name == "meta_Toys.json.gz"
    assert path.read_bytes() == _RangeHandler.payload
    record = json.loads(path.with_name(path.name + ".source.json").read_text())
    assert record == {"url": server, "size": 102400, "sha256": hashlib.sha256(_RangeHandler.payload).hexdigest()}
    assert resolve_source(server, tmp_path / "cache") == path
    assert _RangeHandler.requests == [None]


def test_interrupted_download_resumes_with_range(server: str, tmp_path: Path) -> None:
    first = resolve_source(server, tmp_path / "cache")
    first.with_name(first.name + ".source.json").unlink()
    first.unlink()
    first.with_name(first.name + ".part").write_bytes(_RangeHandler.payload[:1000])
    again = resolve_source(server, tmp_path / "cache")
    assert again.read_bytes() == _RangeHandler.payload
    assert _RangeHandler.requests == [None, "bytes=1000-"]


def test_local_sources(tmp_path: Path) -> None:
    local = _write(tmp_path / "r.json", ["{}"])
    assert resolve_source(str(local), tmp_path / "cache") == local
    with pytest.raises(FileNotFoundError, match="missing.json"):
        resolve_source(str(tmp_path / "missing.json"), tmp_path / "cache")


def test_optional_field_of_wrong_type_reads_as_empty(tmp_path: Path) -> None:
    lines = [json.dumps({"asin": "B1", "title": ["not", "a", "string"], "brand": "Acme", "category": "Toys"})]
    frame, bad = read_metadata("amazon2018", _write(tmp_path / "meta.json", lines))
    assert frame.select("item", "title", "brand", "categories").rows() == [("B1", None, "Acme", ["Toys"])]
    assert bad.count == 0
