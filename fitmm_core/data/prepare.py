"""Raw Amazon dumps (or an MMRec folder) in, one MMRec-format dataset folder out.

``prepare_dataset`` reads reviews and metadata (local paths or http(s) URLs), keeps interactions
whose item has metadata, drops duplicate (user, item) pairs keeping the latest, applies the
iterative k-core, numbers users and items contiguously in sorted order of their raw ids, splits
per user (see :mod:`fitmm_core.data.preprocess`) and writes

- ``<name>.inter``, ``u_id_mapping.csv``, ``i_id_mapping.csv`` (MMRec's files, tab-separated);
- ``items.parquet``: ``itemID asin text image top_category``;
- ``manifest.json``: counts, the settings, source files with size and sha256, bad-line counts.

Everything is written into a temporary folder beside ``out`` and renamed at the end, so a failure
leaves any existing ``out`` untouched and no half-written folder behind.
"""

from __future__ import annotations

import functools
import html
import logging
import os
import re
import shutil
import string
import tempfile
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import polars as pl

from fitmm_core.data import preprocess
from fitmm_core.data.mmrec_format import (
    FEATURE_FILES,
    INTER_COLUMNS,
    ITEM_MAP_FILE,
    ITEMS_FILE,
    SPLIT_LABELS,
    USER_MAP_FILE,
    DatasetFormatError,
    find_inter_file,
    load_mmrec,
    read_id_map,
    read_inter,
    write_manifest,
)
from fitmm_core.data.readers import BadLines, read_interactions, read_metadata
from fitmm_core.data.sources import describe_file, is_url, resolve_source

logger = logging.getLogger(__name__)

Format = Literal["amazon2014", "amazon2018", "amazon2023", "mmrec"]
FORMATS = ("amazon2014", "amazon2018", "amazon2023", "mmrec")
DEFAULT_TEXT_TEMPLATE = "{title} {brand} {categories} {description}"
TEMPLATE_FIELDS = ("asin", "title", "brand", "categories", "description", "features")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
ITEMS_SCHEMA = {
    "itemID": pl.Int64, "asin": pl.String, "text": pl.String, "image": pl.String, "top_category": pl.String,
}
_TAG = re.compile(r"<[^>]*>")


class PrepareError(DatasetFormatError):
    """Raw data that cannot become a dataset (nothing joins, nothing survives the k-core, ...)."""


@dataclass
class PrepareSettings:
    """What to read and how to preprocess it.

    ``text_template`` is a ``str.format`` template over ``asin title brand categories description
    features`` (lists joined by spaces, HTML tags stripped); the default follows MMRec's text
    (title, brand, categories, description). ``cache_dir`` holds downloads of URL sources
    (default ``<out's parent>/.downloads``).
    """

    format: Format
    reviews: str
    meta: str | None
    out: Path
    name: str
    images: Path | None = None
    k_core: int = 5
    seed: int = 999
    split: Literal["random", "temporal"] = "random"
    require_metadata: bool = True
    on_bad_lines: Literal["error", "skip"] = "error"
    text_template: str = DEFAULT_TEXT_TEMPLATE
    cache_dir: Path | None = None

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.images = Path(self.images) if self.images is not None else None
        self.cache_dir = Path(self.cache_dir) if self.cache_dir is not None else None
        if self.format not in FORMATS:
            raise ValueError(f"format={self.format!r}: expected one of {FORMATS}")
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"name={self.name!r}: expected a plain file name such as 'baby'")
        if self.k_core < 1:
            raise ValueError(f"k_core={self.k_core}: expected 1 or more")
        if self.split not in ("random", "temporal"):
            raise ValueError(f"split={self.split!r}: expected 'random' or 'temporal'")
        if self.on_bad_lines not in ("error", "skip"):
            raise ValueError(f"on_bad_lines={self.on_bad_lines!r}: expected 'error' or 'skip'")
        if self.format == "mmrec" and self.meta is not None:
            raise ValueError("meta is not read for format 'mmrec' (the folder is imported as it is); leave it unset")
        if self.format != "mmrec" and self.require_metadata and self.meta is None:
            raise ValueError(f"require_metadata=True needs meta (the {self.format} metadata file)")
        problem = text_template_problem(self.text_template)
        if problem:
            raise ValueError(f"text_template={self.text_template!r}: {problem}")

    def as_dict(self) -> dict:
        return {key: str(value) if isinstance(value, Path) else value for key, value in asdict(self).items()}


def _clean(text: str) -> str:
    """HTML tags to spaces, entities unescaped, whitespace runs collapsed to one space, trimmed."""
    if "<" in text:
        text = _TAG.sub(" ", text)
    return " ".join(html.unescape(text).split())


@functools.lru_cache(maxsize=32)
def _template_fields(template: str) -> frozenset[str]:
    return frozenset(name for _, name, _, _ in string.Formatter().parse(template) if name is not None)


def text_template_problem(template: str) -> str | None:
    """What is wrong with an item-text template (``None`` when nothing is)."""
    try:
        used = _template_fields(template)
    except ValueError as exc:  # e.g. a lone "{"
        return f"not a str.format template ({exc})"
    unknown = sorted(used - set(TEMPLATE_FIELDS))
    if unknown or "" in used:
        return f"unknown field(s) {unknown or ['{}']}; use {list(TEMPLATE_FIELDS)}"
    return None


def render_text(template: str, asin: str, metadata: dict | None) -> str:
    """One item's text from ``template``; lists are joined by spaces, missing fields are empty."""
    metadata = metadata or {}

    def joined(key: str) -> str:
        return " ".join(metadata.get(key) or [])

    fields = {
        "asin": asin,
        "title": metadata.get("title") or "",
        "brand": metadata.get("brand") or "",
        "categories": joined("categories"),
        "description": joined("description"),
        "features": joined("features"),
    }
    return _clean(template.format(**{key: _clean(fields[key]) for key in _template_fields(template)}))


def top_categories(paths: list[list[str]]) -> list[str | None]:
    """Each item's category at the first path level where items differ (level 0 if none differs).

    Amazon paths start with the dump's own category (``Clothing, Shoes & Jewelry``) shared by all
    items; the first level that varies is the one worth colouring a plot by. A path shorter than
    that level gives its last element; an empty path gives ``None``.
    """
    depth = max((len(p) for p in paths), default=0)
    level = next((lv for lv in range(depth) if len({p[lv] for p in paths if len(p) > lv}) > 1), 0)
    return [p[min(level, len(p) - 1)] if p else None for p in paths]


def _item_images(asins: list[str], images: Path | None, urls: list[str | None]) -> list[str | None]:
    """Absolute path of ``<images>/<asin>.<jpg|jpeg|png|webp>`` if present, else the metadata URL."""
    if images is None:
        return list(urls)
    if not images.is_dir():
        raise PrepareError(f"images={images}: not a directory")
    present = set(os.listdir(images))
    root = images.resolve()
    found = []
    for asin, url in zip(asins, urls):
        name = next((asin + s for s in IMAGE_SUFFIXES if asin + s in present), None)
        found.append(str(root / name) if name else url)
    return found


def _source_record(given: str, local: Path) -> dict:
    record = describe_file(local)
    if is_url(given):
        record["url"] = given
    return record


def _write_tsv(frame: pl.DataFrame, path: Path) -> None:
    frame.write_csv(path, separator="\t", include_header=True, line_terminator="\n")


def _counts(inter: pl.DataFrame) -> dict:
    """Users, items, interactions, per-split counts and density of ``userID itemID x_label`` rows."""
    n_users = int(inter["userID"].max()) + 1
    n_items = int(inter["itemID"].max()) + 1
    labels = inter["x_label"]
    splits = {name: int((labels == label).sum()) for name, label in SPLIT_LABELS.items()}
    return {
        "users": n_users,
        "items": n_items,
        "interactions": len(inter),
        "density": len(inter) / (n_users * n_items),
        "splits": splits,
    }


def _items_frame(
    item_map: pl.DataFrame, metadata: pl.DataFrame | None, settings: PrepareSettings
) -> tuple[pl.DataFrame, dict]:
    """``items.parquet`` rows (one per itemID) and counts of what each item has."""
    asins = item_map.sort("itemID")["asin"].to_list()
    by_asin: dict[str, dict] = {}
    if metadata is not None:
        kept = metadata.filter(pl.col("item").is_in(item_map["asin"].implode()))
        by_asin = {row["item"]: row for row in kept.iter_rows(named=True)}
    records = [by_asin.get(asin) for asin in asins]
    texts = [render_text(settings.text_template, asin, record) for asin, record in zip(asins, records)]
    urls = [record["image_url"] if record else None for record in records]
    images = _item_images(asins, settings.images, urls)
    categories = top_categories([(record["categories"] if record else []) for record in records])
    frame = pl.DataFrame(
        {"itemID": list(range(len(asins))), "asin": asins, "text": texts, "image": images, "top_category": categories},
        schema=ITEMS_SCHEMA,
    )
    local_root = str(settings.images.resolve()) if settings.images is not None else None
    stats = {
        "items_without_metadata": sum(record is None for record in records),
        "items_with_local_image": sum(bool(local_root) and i is not None and i.startswith(local_root) for i in images),
        "items_with_image_url": sum(i is not None and i.startswith(("http://", "https://")) for i in images),
        "items_without_image": sum(i is None for i in images),
        "items_with_empty_text": sum(not t for t in texts),
    }
    return frame, stats


def _prepare_raw(settings: PrepareSettings, folder: Path, cache_dir: Path) -> dict:
    reviews_path = resolve_source(settings.reviews, cache_dir)
    meta_path = resolve_source(settings.meta, cache_dir) if settings.meta is not None else None
    fmt = settings.format
    interactions, bad_reviews = read_interactions(fmt, reviews_path, settings.on_bad_lines)
    metadata, bad_meta = (read_metadata(fmt, meta_path, settings.on_bad_lines) if meta_path else (None, BadLines()))
    steps = {"raw_interactions": len(interactions)}
    if len(interactions) == 0:
        raise PrepareError(f"{reviews_path}: no interactions read")
    interactions = preprocess.encode_ids(interactions)
    if settings.require_metadata and metadata is not None:
        review_items = interactions["item"].head(3).to_list()
        interactions = preprocess.keep_items_with_metadata(interactions, metadata["item"])
        if len(interactions) == 0:
            raise PrepareError(
                f"no review item of {reviews_path} has metadata in {meta_path}: review items look like "
                f"{review_items}, metadata items like {metadata['item'].head(3).to_list()}; "
                f"check format={fmt!r} and the two files"
            )
    steps["with_metadata"] = len(interactions)
    interactions = preprocess.drop_duplicate_pairs(interactions)
    steps["deduplicated"] = len(interactions)
    interactions, rounds = preprocess.k_core(interactions, settings.k_core)
    steps["k_core"] = len(interactions)
    steps["k_core_rounds"] = rounds
    if len(interactions) == 0:
        raise PrepareError(
            f"nothing survives the {settings.k_core}-core of {reviews_path} "
            f"({steps['deduplicated']} interactions before); lower k_core or use more data"
        )
    indexed, user_map, item_map = preprocess.assign_ids(interactions)
    del interactions
    inter = preprocess.split(indexed, settings.split, settings.seed).select(INTER_COLUMNS)
    del indexed
    _write_tsv(inter, folder / f"{settings.name}.inter")
    _write_tsv(user_map, folder / USER_MAP_FILE)
    _write_tsv(item_map, folder / ITEM_MAP_FILE)
    items, item_stats = _items_frame(item_map, metadata, settings)
    items.write_parquet(folder / ITEMS_FILE)
    sources = {"reviews": _source_record(settings.reviews, reviews_path)}
    if meta_path is not None:
        sources["meta"] = _source_record(settings.meta, meta_path)
    return {
        "dataset": settings.name,
        "format": fmt,
        "counts": _counts(inter),
        "steps": steps,
        "items": item_stats,
        "settings": settings.as_dict(),
        "sources": sources,
        "bad_lines": {"reviews": bad_reviews.as_dict(), "meta": bad_meta.as_dict()},
    }


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _import_mmrec(settings: PrepareSettings, folder: Path) -> dict:
    """Copy an MMRec folder's ``.inter``, id maps and feature files; items.parquet from the item map."""
    source = Path(settings.reviews).expanduser()
    if not source.is_dir():
        raise PrepareError(f"reviews={settings.reviews}: format 'mmrec' expects an MMRec dataset folder")
    inter_path = find_inter_file(source)
    table = read_inter(inter_path)
    load_mmrec(source, inter_path.stem)
    _link_or_copy(inter_path, folder / f"{settings.name}.inter")
    copied = [inter_path]
    for name in (USER_MAP_FILE, ITEM_MAP_FILE, *FEATURE_FILES.values()):
        if (source / name).is_file():
            _link_or_copy(source / name, folder / name)
            copied.append(source / name)
    counts = _counts(pl.DataFrame(table, schema=["userID", "itemID", "x_label"], orient="row"))
    asin_of = {}
    if (source / ITEM_MAP_FILE).is_file():
        asin_of = {item_id: asin for asin, item_id in read_id_map(source / ITEM_MAP_FILE).items()}
    items = pl.DataFrame(
        {
            "itemID": list(range(counts["items"])),
            "asin": [asin_of.get(i) for i in range(counts["items"])],
            "text": [None] * counts["items"],
            "image": [None] * counts["items"],
            "top_category": [None] * counts["items"],
        },
        schema=ITEMS_SCHEMA,
    )
    items.write_parquet(folder / ITEMS_FILE)
    return {
        "dataset": settings.name,
        "format": "mmrec",
        "counts": counts,
        "steps": {"imported": True},
        "items": {"items_without_metadata": counts["items"]},
        "settings": settings.as_dict(),
        "sources": {path.name: describe_file(path) for path in copied},
        "bad_lines": {},
    }


def _replace_folder(new: Path, out: Path) -> None:
    """Move ``new`` to ``out``; an existing ``out`` is swapped out first and removed afterwards."""
    if out.exists() and not out.is_dir():
        raise PrepareError(f"out={out}: exists and is not a directory")
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
        out.rename(old)
    try:
        new.rename(out)
    except OSError:
        if old is not None:
            old.rename(out)
        raise
    if old is not None:
        shutil.rmtree(old)


def prepare_dataset(settings: PrepareSettings) -> dict:
    """Write the MMRec-format folder ``settings.out`` and return its manifest."""
    out = settings.out.expanduser().resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    cache_dir = settings.cache_dir or out.parent / ".downloads"
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    work.chmod(0o755)
    try:
        if settings.format == "mmrec":
            manifest = _import_mmrec(settings, work)
        else:
            manifest = _prepare_raw(settings, work, cache_dir)
        manifest["files"] = sorted(p.name for p in work.iterdir())
        write_manifest(work, manifest)
        _replace_folder(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    counts = manifest["counts"]
    logger.info(
        "prepared %s: %d users, %d items, %d interactions -> %s",
        settings.name, counts["users"], counts["items"], counts["interactions"], out,
    )
    return manifest
