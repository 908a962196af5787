"""Raw sources given as local paths or http(s) URLs; URLs are downloaded once into a cache.

A download goes to ``<cache>/<url digest>/<file name>.part`` and is renamed when complete, so an
interrupted download resumes with an HTTP ``Range`` request (a server that ignores ``Range`` gets a
fresh download). Beside the file, ``<file name>.source.json`` records the URL, size and sha256;
a cached file whose size no longer matches the record is fetched again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlparse

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
TIMEOUT_SECONDS = 60


def is_url(path_or_url: str) -> bool:
    """Whether ``path_or_url`` is an http(s) URL rather than a local path."""
    return urlparse(str(path_or_url)).scheme in ("http", "https")


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe_file(path: Path) -> dict:
    """``{"path", "size", "sha256"}`` of a local file (for manifests)."""
    path = Path(path)
    return {"path": str(path.resolve()), "size": path.stat().st_size, "sha256": file_sha256(path)}


def _cache_path(url: str, cache_dir: Path) -> Path:
    name = Path(unquote(urlparse(url).path)).name or "download"
    return Path(cache_dir) / hashlib.sha256(url.encode()).hexdigest()[:16] / name


def _record_path(target: Path) -> Path:
    return target.with_name(target.name + ".source.json")


def _download(url: str, part: Path) -> None:
    """Fetch ``url`` into ``part``, continuing after the bytes already there when the server allows."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            logger.info("%s: server says the %d cached bytes are complete", url, offset)
            return
        raise OSError(f"{url}: download failed with HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise OSError(f"{url}: download failed ({exc.reason})") from exc
    with response:
        resumed = offset and response.status == 206
        if offset and not resumed:
            logger.info("%s: server ignored the range request; downloading from the start", url)
        expected = response.headers.get("Content-Length")
        with part.open("ab" if resumed else "wb") as handle:
            shutil.copyfileobj(response, handle, CHUNK_BYTES)
    if expected is not None:
        got = part.stat().st_size - (offset if resumed else 0)
        if got != int(expected):
            raise OSError(f"{url}: connection closed after {got} of {expected} bytes; run again to resume")


def resolve_source(path_or_url: str, cache_dir: Path) -> Path:
    """A local file for ``path_or_url``: local paths as they are, URLs downloaded once into ``cache_dir``."""
    if not is_url(path_or_url):
        path = Path(path_or_url).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"{path}: source file not found")
        return path
    target = _cache_path(path_or_url, cache_dir)
    record = _record_path(target)
    if target.is_file() and record.is_file():
        saved = json.loads(record.read_text())
        if saved.get("size") == target.stat().st_size:
            return target
        logger.warning("%s: cached size differs from its record; downloading again", target)
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    logger.info("downloading %s -> %s", path_or_url, target)
    _download(path_or_url, part)
    part.replace(target)
    details = {"url": path_or_url, "size": target.stat().st_size, "sha256": file_sha256(target)}
    record.write_text(json.dumps(details, indent=2) + "\n")
    return target
