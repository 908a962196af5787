"""Readers for raw Amazon review dumps (2014, 2018, 2023 releases), gzip or plain.

Each reader returns a polars frame in a canonical shape:

- interactions: ``user`` and ``item`` (``pl.Categorical``, each read with its own fresh
  ``pl.Categories``, so a 10-million-row file holds 4-byte codes plus one copy of each distinct
  id), ``rating`` (f64), ``timestamp`` (i64, seconds);
- metadata: ``item`` (str), ``title`` (str), ``brand`` (str), ``categories`` (list[str], the
  first category path), ``description`` (list[str]), ``features`` (list[str]), ``image_url``
  (str, the best single image URL), one row per item (the first record wins).

The fast path scans JSON lines / CSV with polars' streaming engine and an explicit schema, and maps
the raw keys onto the canonical columns inside that scan, so only the needed keys are ever parsed
(``reviewText`` never is) and raw id strings are never held per row. When polars rejects a file,
or a required field is null or an empty id, the file is read again line by line in Python: that
pass names the file, line and field of the first bad line (``on_bad_lines="error"``), or drops and
counts bad lines (``"skip"``), and it coerces harmless variations (an int rating, a string where a
list is expected). A line is bad when it does not parse, is not an object, or lacks a valid
required field (ids, rating, timestamp, the metadata key); an optional field of an unexpected type
(a list as title) reads as empty. Amazon-2014 metadata is a Python dict literal per line, so it
always takes the line-by-line path.

Item keys: ``asin`` for 2014/2018; ``parent_asin`` for 2023 (reviews and metadata), as in the
2023 benchmark. 2023 timestamps are milliseconds and are converted to seconds.
"""

from __future__ import annotations

import ast
import csv
import gzip
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import polars as pl

from fitmm_core.data.mmrec_format import DatasetFormatError

logger = logging.getLogger(__name__)

RawFormat = Literal["amazon2014", "amazon2018", "amazon2023"]
BadLinePolicy = Literal["error", "skip"]
INTERACTION_COLUMNS = ("user", "item", "rating", "timestamp")
METADATA_COLUMNS = ("item", "title", "brand", "categories", "description", "features", "image_url")
MAX_EXAMPLES = 5

_IMAGE_2023 = pl.Struct({"thumb": pl.String, "large": pl.String, "hi_res": pl.String, "variant": pl.String})


class RawFormatError(DatasetFormatError):
    """A raw source line that cannot be read; the message names the file, the line and the field."""


@dataclass
class BadLines:
    """Lines dropped under ``on_bad_lines="skip"``: how many, and the first few reasons."""

    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, reason: str) -> None:
        self.count += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(reason)

    def as_dict(self) -> dict:
        return {"count": self.count, "examples": list(self.examples)}


@dataclass(frozen=True)
class RawField:
    """One raw key: its polars dtype in the file and whether a record without it is bad."""

    key: str
    dtype: pl.DataType
    required: bool = False


@dataclass(frozen=True)
class RecordLayout:
    """How one kind of raw file maps onto the canonical columns.

    ``canonical`` builds the mapping expressions (fresh categorical mappings on each call);
    ``required_columns`` are the canonical columns a null in which sends the file to the
    line-by-line pass (the required raw keys map onto them, an empty id reading as null).
    """

    fields: tuple[RawField, ...]
    canonical: Callable[[], list[pl.Expr]]
    required_columns: tuple[str, ...]
    parse_line: Callable[[str], object] = json.loads

    @property
    def schema(self) -> dict[str, pl.DataType]:
        return {f.key: f.dtype for f in self.fields}

    @property
    def required(self) -> list[str]:
        return [f.key for f in self.fields if f.required]


def _key(name: str) -> pl.Expr:
    """A required string key with the empty string read as missing (null)."""
    return pl.when(pl.col(name) != "").then(pl.col(name))


def _ids(user: str, item: str, rating: str, timestamp: str, *, millis: bool = False) -> Callable[[], list[pl.Expr]]:
    def exprs() -> list[pl.Expr]:
        seconds = pl.col(timestamp) // 1000 if millis else pl.col(timestamp)
        return [
            _key(user).cast(pl.Categorical(pl.Categories.random())).alias("user"),
            _key(item).cast(pl.Categorical(pl.Categories.random())).alias("item"),
            pl.col(rating).alias("rating"),
            seconds.alias("timestamp"),
        ]

    return exprs


def _first_nonempty(*exprs: pl.Expr) -> pl.Expr:
    """The first of ``exprs`` that is neither null nor the empty string."""
    cleaned = [pl.when(e.str.len_chars() > 0).then(e) for e in exprs]
    return pl.coalesce(cleaned)


def _list_or_empty(name: str) -> pl.Expr:
    return pl.col(name).fill_null(pl.lit([], dtype=pl.List(pl.String)))


def _meta_2014() -> list[pl.Expr]:
    return [
        _key("asin").alias("item"),
        pl.col("title"),
        pl.col("brand"),
        pl.col("categories").list.first().fill_null(pl.lit([], dtype=pl.List(pl.String))).alias("categories"),
        _list_or_empty("description").alias("description"),
        pl.lit([], dtype=pl.List(pl.String)).alias("features"),
        _first_nonempty(pl.col("imUrl")).alias("image_url"),
    ]


def _meta_2018() -> list[pl.Expr]:
    return [
        _key("asin").alias("item"),
        pl.col("title"),
        pl.col("brand"),
        _list_or_empty("category").alias("categories"),
        _list_or_empty("description").alias("description"),
        _list_or_empty("feature").alias("features"),
        _first_nonempty(pl.col("imageURLHighRes").list.first(), pl.col("imageURL").list.first()).alias("image_url"),
    ]


def _meta_2023() -> list[pl.Expr]:
    main = pl.col("images").list.eval(pl.element().filter(pl.element().struct.field("variant") == "MAIN")).list.first()
    first = pl.col("images").list.first()
    return [
        _key("parent_asin").alias("item"),
        pl.col("title"),
        pl.col("store").alias("brand"),
        _list_or_empty("categories").alias("categories"),
        _list_or_empty("description").alias("description"),
        _list_or_empty("features").alias("features"),
        _first_nonempty(
            main.struct.field("hi_res"), main.struct.field("large"),
            first.struct.field("hi_res"), first.struct.field("large"), first.struct.field("thumb"),
        ).alias("image_url"),
    ]


_REVIEWS_2014_2018 = RecordLayout(
    fields=(
        RawField("reviewerID", pl.String, True),
        RawField("asin", pl.String, True),
        RawField("overall", pl.Float64, True),
        RawField("unixReviewTime", pl.Int64, True),
    ),
    canonical=_ids("reviewerID", "asin", "overall", "unixReviewTime"),
    required_columns=INTERACTION_COLUMNS,
)
_RATINGS_CSV = RecordLayout(
    fields=tuple(RawField(name, dtype, True) for name, dtype in zip(
        INTERACTION_COLUMNS, (pl.String, pl.String, pl.Float64, pl.Int64)
    )),
    canonical=_ids("user", "item", "rating", "timestamp"),
    required_columns=INTERACTION_COLUMNS,
)
_REVIEWS_2023 = RecordLayout(
    fields=(
        RawField("user_id", pl.String, True),
        RawField("parent_asin", pl.String, True),
        RawField("rating", pl.Float64, True),
        RawField("timestamp", pl.Int64, True),
    ),
    canonical=_ids("user_id", "parent_asin", "rating", "timestamp", millis=True),
    required_columns=INTERACTION_COLUMNS,
)
_META_2014 = RecordLayout(
    fields=(
        RawField("asin", pl.String, True),
        RawField("title", pl.String),
        RawField("brand", pl.String),
        RawField("categories", pl.List(pl.List(pl.String))),
        RawField("description", pl.List(pl.String)),
        RawField("imUrl", pl.String),
    ),
    canonical=_meta_2014,
    required_columns=("item",),
    parse_line=ast.literal_eval,
)
_META_2018 = RecordLayout(
    fields=(
        RawField("asin", pl.String, True),
        RawField("title", pl.String),
        RawField("brand", pl.String),
        RawField("category", pl.List(pl.String)),
        RawField("description", pl.List(pl.String)),
        RawField("feature", pl.List(pl.String)),
        RawField("imageURL", pl.List(pl.String)),
        RawField("imageURLHighRes", pl.List(pl.String)),
    ),
    canonical=_meta_2018,
    required_columns=("item",),
)
_META_2023 = RecordLayout(
    fields=(
        RawField("parent_asin", pl.String, True),
        RawField("title", pl.String),
        RawField("store", pl.String),
        RawField("categories", pl.List(pl.String)),
        RawField("description", pl.List(pl.String)),
        RawField("features", pl.List(pl.String)),
        RawField("images", pl.List(_IMAGE_2023)),
    ),
    canonical=_meta_2023,
    required_columns=("item",),
)
_METADATA_LAYOUTS: dict[str, RecordLayout] = {
    "amazon2014": _META_2014, "amazon2018": _META_2018, "amazon2023": _META_2023,
}


def _is_csv(path: Path) -> bool:
    suffixes = [s.lower() for s in path.suffixes]
    return bool(suffixes) and (suffixes[-1] == ".csv" or suffixes[-2:] == [".csv", ".gz"])


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """``(line number from 1, raw bytes)`` for every non-blank line, gzip or plain."""
    opener = gzip.open if _is_gzip(path) else open
    with opener(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if raw.strip():
                yield number, raw


def _coerce(value: object, dtype: pl.DataType, key: str) -> object:
    """``value`` as the Python form of ``dtype``; raises ``ValueError`` with a short reason."""
    if value is None:
        return [] if isinstance(dtype, pl.List) else None
    if dtype == pl.String:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ValueError(f"expected a string, got {type(value).__name__}")
    if dtype in (pl.Float64, pl.Int64):
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {value!r}")
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"expected a number, got {value!r}") from None
        if not isinstance(value, int | float) or value != value:
            raise ValueError(f"expected a number, got {value!r}")
        if dtype == pl.Int64:
            if float(value) != int(value):
                raise ValueError(f"expected an integer, got {value!r}")
            return int(value)
        return float(value)
    if isinstance(dtype, pl.List):
        inner = dtype.inner
        if isinstance(value, str) and inner == pl.String:
            return [value]
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {type(value).__name__}")
        if inner == pl.String:
            return [v for v in value if isinstance(v, str)]
        if isinstance(inner, pl.List):
            return [_coerce(v, inner, key) for v in value if isinstance(v, list)]
        if isinstance(inner, pl.Struct):
            names = [f.name for f in inner.fields]
            return [
                {n: v.get(n) if isinstance(v.get(n), str) else None for n in names}
                for v in value if isinstance(v, dict)
            ]
    raise ValueError(f"unsupported dtype {dtype} for field {key!r}")


def _record_from_line(
    layout: RecordLayout, raw: bytes, csv_columns: tuple[str, ...] | None
) -> tuple[dict | None, str | None]:
    """Parse and validate one line: ``(record, None)`` or ``(None, reason naming the field)``."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not valid UTF-8 ({exc.reason} at byte {exc.start})"
    if csv_columns is not None:
        row = next(csv.reader([text]))
        if len(row) < len(csv_columns):
            return None, f"expected {len(csv_columns)} comma-separated fields, found {len(row)}"
        record: object = dict(zip(csv_columns, row))
    else:
        try:
            record = layout.parse_line(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
            return None, f"cannot parse the line ({type(exc).__name__}: {exc})"
    if not isinstance(record, dict):
        return None, f"expected an object, got {type(record).__name__}"
    values = {}
    for raw_field in layout.fields:
        value = record.get(raw_field.key)
        if raw_field.required and (value is None or value == ""):
            return None, f"field {raw_field.key!r}: missing"
        try:
            values[raw_field.key] = _coerce(value, raw_field.dtype, raw_field.key)
        except ValueError as exc:
            if raw_field.required:
                return None, f"field {raw_field.key!r}: {exc}"
            values[raw_field.key] = _coerce(None, raw_field.dtype, raw_field.key)
    return values, None


def _read_line_by_line(
    path: Path, layout: RecordLayout, on_bad_lines: BadLinePolicy, csv_columns: tuple[str, ...] | None = None
) -> tuple[pl.DataFrame, BadLines]:
    columns: dict[str, list] = {f.key: [] for f in layout.fields}
    bad = BadLines()
    for number, raw in _lines(path):
        record, reason = _record_from_line(layout, raw, csv_columns)
        if record is None:
            message = f"{path}: line {number}: {reason}"
            if on_bad_lines == "error":
                raise RawFormatError(message + " (use on_bad_lines='skip' to drop such lines)")
            bad.add(message)
            continue
        for key, value in record.items():
            columns[key].append(value)
    if bad.count:
        logger.warning("%s: skipped %d bad line(s), e.g. %s", path, bad.count, bad.examples[0])
    return pl.DataFrame(columns, schema=layout.schema), bad


def _scan(path: Path, layout: RecordLayout, csv_columns: tuple[str, ...] | None) -> pl.LazyFrame:
    if csv_columns is not None and _is_gzip(path):
        return pl.read_csv(path, has_header=False, schema=layout.schema).lazy()
    if csv_columns is not None:
        return pl.scan_csv(path, has_header=False, schema=layout.schema)
    return pl.scan_ndjson(path, schema=layout.schema)


def _read_fast(path: Path, layout: RecordLayout, csv_columns: tuple[str, ...] | None) -> pl.DataFrame | None:
    """The polars scan in canonical columns; ``None`` when polars rejects the file or a required
    column is null (a missing key, a null, or an empty id)."""
    try:
        frame = _scan(path, layout, csv_columns).select(layout.canonical()).collect(engine="streaming")
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        logger.info("%s: polars scan failed (%s); reading line by line", path, str(exc).splitlines()[0])
        return None
    nulls = frame.select(pl.col(layout.required_columns).null_count()).row(0)
    return None if any(nulls) else frame


def _read(
    path: Path, layout: RecordLayout, on_bad_lines: BadLinePolicy, csv_columns: tuple[str, ...] | None = None
) -> tuple[pl.DataFrame, BadLines]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if on_bad_lines not in ("error", "skip"):
        raise ValueError(f"on_bad_lines={on_bad_lines!r}: expected 'error' or 'skip'")
    frame = None if layout.parse_line is not json.loads else _read_fast(path, layout, csv_columns)
    if frame is not None:
        return frame, BadLines()
    raw, bad = _read_line_by_line(path, layout, on_bad_lines, csv_columns)
    return raw.select(layout.canonical()), bad


def read_interactions(
    fmt: RawFormat, path: Path, on_bad_lines: BadLinePolicy = "error"
) -> tuple[pl.DataFrame, BadLines]:
    """Reviews or ratings of release ``fmt`` as ``user item rating timestamp``.

    ``amazon2014`` reads review JSON lines (``reviewerID asin overall unixReviewTime``) or, for a
    ``.csv``/``.csv.gz`` name, the ratings-only CSV without header (``user,item,rating,timestamp``).
    """
    path = Path(path)
    if fmt == "amazon2014" and _is_csv(path):
        return _read(path, _RATINGS_CSV, on_bad_lines, csv_columns=INTERACTION_COLUMNS)
    layouts = {"amazon2014": _REVIEWS_2014_2018, "amazon2018": _REVIEWS_2014_2018, "amazon2023": _REVIEWS_2023}
    if fmt not in layouts:
        raise ValueError(f"format={fmt!r}: expected one of {sorted(layouts)}")
    return _read(path, layouts[fmt], on_bad_lines)


def read_metadata(
    fmt: RawFormat, path: Path, on_bad_lines: BadLinePolicy = "error"
) -> tuple[pl.DataFrame, BadLines]:
    """Item metadata of release ``fmt`` in the canonical columns, one row per item (first wins)."""
    if fmt not in _METADATA_LAYOUTS:
        raise ValueError(f"format={fmt!r}: expected one of {sorted(_METADATA_LAYOUTS)}")
    frame, bad = _read(Path(path), _METADATA_LAYOUTS[fmt], on_bad_lines)
    return frame.unique(subset="item", keep="first", maintain_order=True), bad
