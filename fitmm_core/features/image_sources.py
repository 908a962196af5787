"""Turn each item's image reference (a local path, an http(s) URL, or nothing) into a file on disk.

URLs are fetched by a bounded thread pool with a per-attempt deadline, retries with exponential
backoff on transient failures (timeouts, connection errors, HTTP 408/429/5xx), a size cap and a
``Content-Type: image/*`` check. Downloads land in a cache folder keyed by ``sha256(URL)`` and are
written atomically, so a second run, or another dataset with the same URL, reads them from disk.
A reference that yields no file becomes an :class:`ImageSource` with the reason instead of an error.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from fitmm_core.data.mmrec_format import atomic_write_bytes
from fitmm_core.data.sources import file_sha256, is_url
from fitmm_core.features.ordered_pool import map_chunks_in_order
from fitmm_core.progress import Log, Progress

logger = logging.getLogger(__name__)

HASH_WINDOW_PER_THREAD = 256
HASH_CHUNK = 32

_CHUNK_BYTES = 1 << 16


@dataclass(frozen=True)
class FetchSettings:
    """How image URLs are fetched: ``timeout_s`` bounds each attempt (connect, each read, and the
    whole body), ``retries`` extra attempts wait ``backoff_s * 2**attempt`` before each, bodies over
    ``max_bytes`` are refused, and at most ``workers`` downloads run at once."""

    timeout_s: float = 15.0
    retries: int = 3
    backoff_s: float = 0.5
    max_bytes: int = 20 * 2**20
    workers: int = 16
    user_agent: str = "fitmm-pipeline (item image features)"

    def __post_init__(self) -> None:
        for name in ("timeout_s", "max_bytes", "workers"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)!r}: expected more than 0")
        for name in ("retries", "backoff_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)!r}: expected 0 or more")


@dataclass(frozen=True)
class ImageSource:
    """An item's image file on disk, or ``path=None`` with the kind of failure and its detail."""

    path: Path | None
    failure: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.path is not None


class FetchFailure(Exception):
    """One failed download attempt; ``kind`` names the failure, ``retryable`` whether to try again."""

    def __init__(self, kind: str, detail: str, retryable: bool) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.retryable = retryable


def url_cache_path(url: str, download_dir: Path) -> Path:
    """Where the bytes of ``url`` are cached: ``download_dir/<sha256(url)>``."""
    return Path(download_dir) / hashlib.sha256(url.encode("utf-8")).hexdigest()


def _read_body(response: http.client.HTTPResponse, settings: FetchSettings, deadline: float) -> bytes:
    content_type = response.headers.get_content_type()
    if not content_type.startswith("image/"):
        raise FetchFailure("not an image", f"Content-Type {content_type}", retryable=False)
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > settings.max_bytes:
        raise FetchFailure("too large", f"{declared} bytes > {settings.max_bytes}", retryable=False)
    chunks: list[bytes] = []
    total = 0
    while chunk := response.read(_CHUNK_BYTES):
        total += len(chunk)
        if total > settings.max_bytes:
            raise FetchFailure("too large", f"more than {settings.max_bytes} bytes", retryable=False)
        if time.monotonic() > deadline:
            raise FetchFailure("timeout", f"body not complete after {settings.timeout_s} s", retryable=True)
        chunks.append(chunk)
    if total == 0:
        raise FetchFailure("empty body", "0 bytes", retryable=True)
    return b"".join(chunks)


def _download_once(url: str, settings: FetchSettings) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": settings.user_agent, "Accept": "image/*"})
    deadline = time.monotonic() + settings.timeout_s
    try:
        with urllib.request.urlopen(request, timeout=settings.timeout_s) as response:
            return _read_body(response, settings, deadline)
    except urllib.error.HTTPError as exc:
        retryable = exc.code in (408, 425, 429) or exc.code >= 500
        raise FetchFailure("http error", f"HTTP {exc.code} {exc.reason}", retryable) from None
    except (TimeoutError, socket.timeout) as exc:
        raise FetchFailure("timeout", f"no answer within {settings.timeout_s} s ({exc})", retryable=True) from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, (TimeoutError, socket.timeout)):
            raise FetchFailure("timeout", f"no answer within {settings.timeout_s} s", retryable=True) from None
        raise FetchFailure("connection error", str(exc.reason), retryable=True) from None
    except (http.client.HTTPException, OSError) as exc:
        raise FetchFailure("connection error", f"{type(exc).__name__}: {exc}", retryable=True) from None


def fetch_url(url: str, settings: FetchSettings) -> bytes:
    """The body of ``url`` after up to ``1 + settings.retries`` attempts; raises :class:`FetchFailure`."""
    attempt = 0
    while True:
        try:
            return _download_once(url, settings)
        except FetchFailure as failure:
            if not failure.retryable or attempt >= settings.retries:
                raise
            logger.debug("retrying %s after %s (attempt %d)", url, failure, attempt + 1)
            time.sleep(settings.backoff_s * 2**attempt)
            attempt += 1


def _download_to_cache(url: str, download_dir: Path, settings: FetchSettings) -> ImageSource:
    target = url_cache_path(url, download_dir)
    if target.is_file():
        return ImageSource(target)
    try:
        atomic_write_bytes(target, fetch_url(url, settings))
    except FetchFailure as failure:
        return ImageSource(None, failure.kind, f"{url}: {failure.detail}")
    return ImageSource(target)


def _local_source(reference: str, base_dir: Path) -> ImageSource:
    if reference.startswith("file://"):
        reference = urllib.parse.unquote(urllib.parse.urlparse(reference).path)
    path = Path(reference).expanduser()
    if not path.is_absolute():
        path = Path(base_dir) / path
    if path.is_file():
        return ImageSource(path)
    return ImageSource(None, "file not found", str(path))


def resolve_image_sources(
    references: Sequence[str | None],
    base_dir: Path,
    download_dir: Path,
    settings: FetchSettings = FetchSettings(),
    progress: bool = True,
    log: Log | None = None,
) -> list[ImageSource]:
    """One :class:`ImageSource` per reference: local paths (relative ones are taken from
    ``base_dir``) are checked, URLs are downloaded once each into ``download_dir`` (``progress``
    draws a bar, ``log`` gets throttled progress lines)."""
    sources: list[ImageSource | None] = [None] * len(references)
    url_positions: dict[str, list[int]] = {}
    for position, reference in enumerate(references):
        reference = (reference or "").strip()
        if not reference:
            sources[position] = ImageSource(None, "no image", "no image reference")
        elif is_url(reference):
            url_positions.setdefault(reference, []).append(position)
        else:
            sources[position] = _local_source(reference, base_dir)
    if url_positions:
        Path(download_dir).mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=max(1, settings.workers)) as pool:
            futures = {pool.submit(_download_to_cache, url, download_dir, settings): url for url in url_positions}
            with Progress("fetch images", len(futures), "url", progress, log) as bar:
                for future in as_completed(futures):
                    for position in url_positions[futures[future]]:
                        sources[position] = future.result()
                    bar.update()
    return cast(list[ImageSource], sources)


def default_hash_threads() -> int:
    """Two hashing threads (one on a single core): hashlib releases the GIL on file-sized buffers,
    but for product photos the Python around each file costs as much as the hash, and more threads
    only contend for the GIL (on the development CPU 16 threads hashed 10k files/s, one 30k)."""
    return max(1, min(2, os.cpu_count() or 1))


def _hash_chunk(paths: Sequence[Path]) -> list[str | None]:
    hashes: list[str | None] = []
    for path in paths:
        try:
            hashes.append(file_sha256(path))
        except OSError:  # gone or unreadable since it was found: decoding reports why
            hashes.append(None)
    return hashes


def iter_file_hashes(paths: Iterable[Path], threads: int | None = None) -> Iterator[str | None]:
    """``file_sha256`` of each path (``None`` where the file cannot be read), in order, computed by
    ``threads`` threads :data:`HASH_CHUNK` files per task, at most :data:`HASH_WINDOW_PER_THREAD`
    files per thread ahead of the consumer, so hashing overlaps whatever the consumer does with the
    hashes and memory stays flat."""
    threads = threads or default_hash_threads()
    return map_chunks_in_order(_hash_chunk, paths, threads, HASH_CHUNK, threads * HASH_WINDOW_PER_THREAD, "sha256")


def hash_files(paths: Sequence[Path], threads: int | None = None) -> list[str | None]:
    """``file_sha256`` of each path (see :func:`iter_file_hashes`)."""
    return list(iter_file_hashes(paths, threads))
