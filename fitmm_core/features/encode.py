"""Encode a dataset folder's item texts and images into MMRec's ``text_feat.npy`` / ``image_feat.npy``.

Row ``i`` of each matrix is item ``i`` of ``items.parquet``. Vectors come from the shared
:class:`~fitmm_core.features.cache.FeatureCache` when the same encoder has seen the same content
(text, or image file bytes) before, so a refreshed dataset encodes only new or changed items.
Items without a usable image get the mean of the real image vectors (MMRec's convention) and
``False`` in ``image_mask.npy``. The manifest's ``features`` section records what was done.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import logging
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

from fitmm_core.data.mmrec_format import (
    FEATURE_FILES,
    ITEMS_FILE,
    DatasetFormatError,
    atomic_write_bytes,
    read_manifest,
    save_features,
    update_manifest,
)
from fitmm_core.data.sources import file_sha256
from fitmm_core.features.cache import BackgroundWriter, FeatureCache, content_key
from fitmm_core.features.errors import EncoderConfigError
from fitmm_core.features.image import EFFICIENTNET_LITE0, ImageEncoder, load_image_encoder
from fitmm_core.features.image_decode import choose_image_decoder, default_decode_workers, iter_decoded_batches
from fitmm_core.features.image_plan import ImagePlan
from fitmm_core.features.image_sources import FetchSettings, ImageSource, resolve_image_sources
from fitmm_core.features.nvjpeg_decode import iter_encoded_files, iter_nvjpeg_batches
from fitmm_core.features.text import DEFAULT_TEXT_ENCODER, SentenceTransformerEncoder, TextEncoder
from fitmm_core.paths import feature_cache_dir
from fitmm_core.progress import Log, Progress

logger = logging.getLogger(__name__)

MODALITIES = ("text", "image")
IMAGE_MASK_FILE = "image_mask.npy"
IMAGE_DOWNLOADS = "images"
TEXT_CHUNK_BATCHES = 8
_LOCK_FILE = ".manifest.lock"


@dataclass(frozen=True)
class Items:
    """The columns of ``items.parquet`` that encoding reads, in item-id order."""

    texts: list[str]
    images: list[str | None]
    top_categories: list[str | None]

    def __len__(self) -> int:
        return len(self.texts)


def read_items(folder: Path) -> Items:
    """Read and check ``items.parquet`` (``itemID`` must be ``0..n-1`` in order)."""
    import polars as pl

    path = Path(folder) / ITEMS_FILE
    if not path.is_file():
        raise DatasetFormatError(f"{path}: missing; run `fitmm prepare` first (it writes the item texts and images)")
    table = pl.read_parquet(path)
    missing = [c for c in ("itemID", "text", "image") if c not in table.columns]
    if missing:
        raise DatasetFormatError(f"{path}: lacks column(s) {missing}; found {table.columns}")
    ids = table["itemID"].to_numpy()
    if len(ids) == 0:
        raise DatasetFormatError(f"{path}: no items")
    if not np.array_equal(ids, np.arange(len(ids))):
        bad = int(np.flatnonzero(ids != np.arange(len(ids)))[0])
        raise DatasetFormatError(f"{path}: itemID must be 0..{len(ids) - 1} in order; row {bad} has {ids[bad]}")
    categories = table["top_category"].to_list() if "top_category" in table.columns else [None] * len(ids)
    return Items(
        texts=[text or "" for text in table["text"].to_list()],
        images=table["image"].to_list(),
        top_categories=categories,
    )


def embed_texts(
    texts: Sequence[str],
    encoder: TextEncoder,
    cache: FeatureCache,
    batch_size: int = 64,
    progress: bool = True,
    log: Log | None = None,
) -> tuple[np.ndarray, int]:
    """``(matrix, n_cached)``: one vector per text, each distinct text encoded at most once and
    written to ``cache`` chunk by chunk; ``progress`` draws a bar, ``log`` gets throttled progress lines."""
    keys = [content_key(text) for text in texts]
    vectors = cache.get_many(encoder.identity, keys)
    n_cached = sum(key in vectors for key in keys)
    todo = {key: text for key, text in zip(keys, texts) if key not in vectors}
    pending = list(todo.items())
    chunk = max(1, batch_size * TEXT_CHUNK_BATCHES)
    with Progress("encode texts", len(pending), "text", progress, log) as bar, \
            BackgroundWriter(cache, encoder.identity) as writer:
        for start in range(0, len(pending), chunk):
            part = pending[start : start + chunk]
            encoded = encoder.encode([text for _, text in part], batch_size=batch_size)
            fresh = {key: vector for (key, _), vector in zip(part, encoded)}
            writer.put(fresh)
            vectors.update(fresh)
            bar.update(len(part))
    matrix = np.stack([vectors[key] for key in keys]).astype(np.float32, copy=False)
    return matrix, n_cached


@dataclass
class ImageEmbedding:
    """Per-item image vectors: ``mask[i]`` is True where item ``i`` had a real, decodable image;
    the other rows hold the mean of the real ones. ``failures`` maps item -> (kind, detail);
    ``decoder`` is the decoder chosen for the files not in the cache (``pil`` or ``nvjpeg``)."""

    matrix: np.ndarray
    mask: np.ndarray
    n_cached: int
    failures: dict[int, tuple[str, str]]
    decoder: str


def embed_image_sources(
    sources: Sequence[ImageSource],
    encoder: ImageEncoder,
    cache: FeatureCache,
    batch_size: int = 64,
    decode_workers: int | None = None,
    progress: bool = True,
    decoder: str = "auto",
    log: Log | None = None,
) -> ImageEmbedding:
    """Vectors for the items' image files. An :class:`ImagePlan` looks the files' content hashes up in
    ``cache``; the files it hands on are decoded (``decoder``: see :func:`choose_image_decoder`) and
    encoded batch by batch, each batch written to ``cache``."""
    failures = {i: (source.failure or "missing", source.detail) for i, source in enumerate(sources) if not source.ok}
    present = [i for i, source in enumerate(sources) if source.ok]
    paths = [cast(Path, sources[i].path) for i in present]
    used = choose_image_decoder(decoder, encoder.device)
    plan = ImagePlan(encoder.identity, cache)
    fresh: dict[str, np.ndarray] = {}
    undecodable: dict[str, str] = {}
    decoded = 0
    with contextlib.ExitStack() as stack:
        if used == "nvjpeg":  # each file is read and hashed once by I/O threads; the plan runs in the decoder's thread
            files = stack.enter_context(contextlib.closing(iter_encoded_files(paths, ahead=batch_size)))
            to_decode = plan.select((file, file.sha256) for file in files)
            batches = iter_nvjpeg_batches(to_decode, encoder.preprocess, batch_size, encoder.device)
        else:  # worker processes need the whole list, so every file is hashed first
            todo = list(plan.files_to_decode(paths))
            n_batches = -(-len(todo) // batch_size)  # no more worker processes than batches
            workers = min(default_decode_workers() if decode_workers is None else decode_workers, n_batches)
            batches = iter_decoded_batches(
                todo, encoder.preprocess, batch_size, workers, pin_memory=encoder.device.type == "cuda"
            )
        batches = stack.enter_context(contextlib.closing(batches))  # closed first: it may still read ``files``
        bar = stack.enter_context(Progress("encode images", len(present), "img", progress, log))
        writer = stack.enter_context(BackgroundWriter(cache, encoder.identity))
        for batch in batches:
            encoded = encoder.encode_pixels(batch.pixels)
            new = {plan.todo_keys[position]: vector for position, vector in zip(batch.positions, encoded)}
            writer.put(new)
            fresh.update(new)
            undecodable.update({plan.todo_keys[position]: reason for position, reason in batch.failures})
            decoded += len(batch.positions) + len(batch.failures)
            bar.advance_to(decoded + plan.skipped)
        bar.advance_to(decoded + plan.skipped)
    vectors = {**plan.cached, **fresh}
    keys = dict(zip(present, plan.keys))
    for i in present:
        if keys[i] in undecodable:
            failures[i] = ("undecodable", f"{sources[i].path}: {undecodable[keys[i]]}")
    mask = np.zeros(len(sources), dtype=bool)
    mask[[i for i in present if i not in failures]] = True
    if not mask.any():
        return ImageEmbedding(np.zeros((len(sources), encoder.dim), np.float32), mask, plan.n_cached, failures, used)
    real = np.stack([vectors[keys[i]] for i in np.flatnonzero(mask)]).astype(np.float32, copy=False)
    matrix = np.empty((len(sources), real.shape[1]), dtype=np.float32)
    matrix[mask] = real
    matrix[~mask] = real.mean(axis=0)
    return ImageEmbedding(matrix, mask, plan.n_cached, failures, used)


@contextlib.contextmanager
def _manifest_lock(folder: Path) -> Iterator[None]:
    """Serialise manifest updates of encoders running in parallel (e.g. two Dagster assets)."""
    with (Path(folder) / _LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _record(folder: Path, modality: str, entry: dict) -> None:
    with _manifest_lock(folder):
        features = dict(read_manifest(folder).get("features", {}))
        features[modality] = entry
        update_manifest(folder, features=features)


def _open_cache(cache_dir: Path | None) -> FeatureCache:
    return FeatureCache(Path(cache_dir) if cache_dir is not None else feature_cache_dir())


def _report(identity: str, dim: int, n_items: int, n_cached: int, n_missing: int, seconds: float) -> dict:
    return {
        "encoder": identity,
        "dim": dim,
        "n_items": n_items,
        "n_encoded": n_items - n_cached - n_missing,
        "n_cached": n_cached,
        "n_missing": n_missing,
        "seconds": round(seconds, 3),
        "items_per_second": round(n_items / seconds, 1) if seconds > 0 else None,
    }


def encode_text(
    folder: Path,
    encoder: str | TextEncoder = DEFAULT_TEXT_ENCODER,
    device: str = "auto",
    batch_size: int = 64,
    cache_dir: Path | None = None,
    progress: bool = True,
    log: Log | None = None,
) -> dict:
    """Write ``text_feat.npy`` for ``folder`` and record it in the manifest; returns the report
    (encoder, dim, n_items, n_encoded, n_cached, n_missing, seconds, items_per_second, load_seconds).
    ``seconds`` counts the work after the model is loaded; ``items_per_second`` is ``n_items / seconds``."""
    folder = Path(folder)
    items = read_items(folder)
    loading = time.perf_counter()
    model = SentenceTransformerEncoder(encoder, device) if isinstance(encoder, str) else encoder
    started = time.perf_counter()
    with _open_cache(cache_dir) as cache:
        matrix, n_cached = embed_texts(items.texts, model, cache, batch_size, progress, log)
    path = save_features(folder, "text", matrix)
    report = _report(model.identity, int(matrix.shape[1]), len(items), n_cached, 0, time.perf_counter() - started)
    report["load_seconds"] = round(started - loading, 3)
    _record(folder, "text", {
        "encoder": model.identity,
        "encoder_setting": encoder if isinstance(encoder, str) else model.identity,
        "dim": report["dim"],
        "n_items": len(items),
        "file": FEATURE_FILES["text"],
        "sha256": file_sha256(path),
    })
    logger.info("text features: %s", report)
    return report


def _summarise_failures(failures: dict[int, tuple[str, str]], n_items: int) -> dict[str, int]:
    reasons = dict(Counter(kind for kind, _ in failures.values()).most_common())
    if failures:
        examples = "; ".join(f"item {i}: {kind} ({detail})" for i, (kind, detail) in list(sorted(failures.items()))[:5])
        logger.warning(
            "%d of %d items have no usable image %s; they get the mean image vector and image_mask False. "
            "First ones: %s", len(failures), n_items, reasons, examples,
        )
        for i, (kind, detail) in sorted(failures.items()):
            logger.debug("item %d has no usable image: %s (%s)", i, kind, detail)
    return reasons


def encode_images(
    folder: Path,
    encoder: str | ImageEncoder = EFFICIENTNET_LITE0,
    device: str = "auto",
    batch_size: int = 64,
    cache_dir: Path | None = None,
    progress: bool = True,
    decode_workers: int | None = None,
    fetch: FetchSettings = FetchSettings(),
    image_decode: str = "auto",
    log: Log | None = None,
) -> dict:
    """Write ``image_feat.npy`` and ``image_mask.npy`` for ``folder`` and record them in the
    manifest; returns the report (as :func:`encode_text`, plus ``missing_share``,
    ``missing_reasons`` and ``decoder``). ``image_decode`` is ``auto``, ``pil`` or ``nvjpeg`` (see
    :func:`~fitmm_core.features.image_decode.choose_image_decoder`). Raises
    :class:`EncoderConfigError` when no item has a usable image."""
    folder = Path(folder)
    items = read_items(folder)
    loading = time.perf_counter()
    model = load_image_encoder(encoder, device) if isinstance(encoder, str) else encoder
    decoder = choose_image_decoder(image_decode, model.device)  # a bad setting fails before any download
    started = time.perf_counter()
    cache_root = Path(cache_dir) if cache_dir is not None else feature_cache_dir()
    sources = resolve_image_sources(items.images, folder, cache_root / IMAGE_DOWNLOADS, fetch, progress, log)
    with _open_cache(cache_root) as cache:
        result = embed_image_sources(sources, model, cache, batch_size, decode_workers, progress, decoder, log)
    reasons = _summarise_failures(result.failures, len(items))
    if not result.mask.any():
        raise EncoderConfigError(
            f"image encoder {model.identity!r}: none of the {len(items)} items in {folder / ITEMS_FILE} has a usable "
            f"image ({reasons}); check the image column and the --images folder given to `fitmm prepare`, "
            "or encode text only (modalities=('text',))"
        )
    path = save_features(folder, "image", result.matrix)
    buffer = io.BytesIO()
    np.save(buffer, result.mask)
    atomic_write_bytes(folder / IMAGE_MASK_FILE, buffer.getvalue())
    n_missing = int((~result.mask).sum())
    report = _report(model.identity, model.dim, len(items), result.n_cached, n_missing, time.perf_counter() - started)
    report["load_seconds"] = round(started - loading, 3)
    report["missing_share"] = round(n_missing / len(items), 6)
    report["missing_reasons"] = reasons
    report["decoder"] = result.decoder
    _record(folder, "image", {
        "encoder": model.identity,
        "encoder_setting": encoder if isinstance(encoder, str) else model.identity,
        "dim": model.dim,
        "n_items": len(items),
        "file": FEATURE_FILES["image"],
        "sha256": file_sha256(path),
        "mask_file": IMAGE_MASK_FILE,
        "n_missing": n_missing,
        "missing_share": report["missing_share"],
        "missing_reasons": reasons,
        "decoder": result.decoder,
    })
    logger.info("image features: %s", report)
    return report


def encode_dataset(
    folder: Path,
    text_encoder: str = DEFAULT_TEXT_ENCODER,
    image_encoder: str = EFFICIENTNET_LITE0,
    device: str = "auto",
    batch_size: int = 64,
    cache_dir: Path | None = None,
    modalities: tuple[str, ...] = MODALITIES,
    progress: bool = True,
    image_decode: str = "auto",
    log: Log | None = None,
) -> dict:
    """Encode the chosen ``modalities`` of ``folder``; returns ``{modality: report}``. ``progress``
    draws bars; ``log`` (e.g. Dagster's ``context.log.info``) gets throttled progress lines."""
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown or not modalities:
        raise ValueError(f"modalities={modalities!r}; choose from {MODALITIES}")
    reports: dict[str, dict] = {}
    if "text" in modalities:
        reports["text"] = encode_text(folder, text_encoder, device, batch_size, cache_dir, progress, log)
    if "image" in modalities:
        reports["image"] = encode_images(
            folder, image_encoder, device, batch_size, cache_dir, progress, image_decode=image_decode, log=log
        )
    return reports
