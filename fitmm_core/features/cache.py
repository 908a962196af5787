"""An on-disk cache of item vectors keyed by (encoder identity, sha256 of the item's content).

The cache is one SQLite file shared by every dataset (a product that appears in two categories, or
in a refreshed dump, is encoded once). Each batch is written in one transaction, so a crash loses at
most the few batches in flight (:class:`BackgroundWriter`) and never leaves a half-written vector;
WAL mode lets a text and an image encoding job write at the same time. One :class:`FeatureCache` may
be shared by threads (the image path looks vectors up in one thread while another writes them).
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

CACHE_FILE = "vectors.sqlite"
_SQLITE_MAX_VARIABLES = 900


def content_key(content: bytes | str) -> str:
    """The sha256 hex digest of ``content`` (text is UTF-8 encoded first)."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    return hashlib.sha256(data).hexdigest()


class FeatureCache:
    """Vectors stored by ``(encoder identity, content key)``; float32, any dimension per encoder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / CACHE_FILE
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=120.0, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS vectors ("
            " encoder TEXT NOT NULL, content_sha256 TEXT NOT NULL, dim INTEGER NOT NULL,"
            " vector BLOB NOT NULL, PRIMARY KEY (encoder, content_sha256)) WITHOUT ROWID"
        )
        self._db.commit()

    def get_many(self, encoder: str, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """The cached vectors among ``keys`` for ``encoder``; keys not cached are absent."""
        unique = list(dict.fromkeys(keys))
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(unique), _SQLITE_MAX_VARIABLES):
            chunk = unique[start : start + _SQLITE_MAX_VARIABLES]
            query = (
                "SELECT content_sha256, dim, vector FROM vectors"
                f" WHERE encoder = ? AND content_sha256 IN ({','.join('?' * len(chunk))})"
            )
            with self._lock:
                rows = self._db.execute(query, [encoder, *chunk]).fetchall()
            for key, dim, blob in rows:
                vector = np.frombuffer(blob, dtype=np.float32)
                if vector.shape[0] == dim:
                    found[key] = vector
        return found

    def put_many(self, encoder: str, vectors: Mapping[str, np.ndarray]) -> None:
        """Store ``vectors`` (content key -> 1-D vector) for ``encoder`` in one transaction."""
        rows = []
        for key, vector in vectors.items():
            flat = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
            rows.append((encoder, key, int(flat.shape[0]), flat.tobytes()))
        with self._lock, self._db:
            self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?)", rows)

    def count(self, encoder: str | None = None) -> int:
        """How many vectors are stored (for one encoder, or in all)."""
        with self._lock:
            if encoder is None:
                return self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
            return self._db.execute("SELECT COUNT(*) FROM vectors WHERE encoder = ?", (encoder,)).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> FeatureCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BackgroundWriter:
    """``cache.put_many`` in one background thread, so writing a batch overlaps encoding the next
    (a GPU encodes a batch in about the time SQLite takes to store it). At most ``depth`` writes
    wait at once; a failed write is raised by the next :meth:`put` or on exit, and leaving the
    ``with`` block, normally or by an error, waits until every queued batch is stored."""

    def __init__(self, cache: FeatureCache, encoder: str, depth: int = 2) -> None:
        self.cache = cache
        self.encoder = encoder
        self.depth = depth
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache-writer")
        self._pending: deque[Future[None]] = deque()

    def put(self, vectors: Mapping[str, np.ndarray]) -> None:
        self._pending.append(self._pool.submit(self.cache.put_many, self.encoder, dict(vectors)))
        while len(self._pending) > self.depth:
            self._pending.popleft().result()

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True)


def folder_fingerprint(folder: Path) -> str:
    """The first 12 hex digits of a sha256 over a model folder's files (names and bytes), README and
    dotfiles left out, so an encoder's identity changes exactly when its weights or configs do."""
    digest = hashlib.sha256()
    folder = Path(folder)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if path.suffix.lower() == ".md" or any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        digest.update(relative.encode("utf-8") + b"\0")
        with path.open("rb") as handle:
            while block := handle.read(1 << 22):
                digest.update(block)
    return digest.hexdigest()[:12]
