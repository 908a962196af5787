"""An on-disk cache of item vectors keyed by (encoder identity, sha256 of the item's content).

The cache is one SQLite file shared by every dataset (a product that appears in two categories, or
in a refreshed dump, is encoded once). Each batch is written in one transaction, so a crash loses at
most the few batches in flight (:class:`BackgroundWriter`) and never leaves a half-written vector;
WAL mode lets a text and an image encoding job write at the same time. One :class:`FeatureCache` may
be shared by threads (the image path looks vectors up in one thread while another writes them).

Rows are ``(encoder id, 32-byte digest, dim, float32 bytes)`` in a rowid table with a unique index,
written many rows per statement: the writer is one thread, so its time per vector caps the image
path on any host. The earlier layout (~2 KiB vectors inside a ``WITHOUT ROWID`` primary key that
repeated the encoder's name and the hex digest) took 62 us per 512-d vector on the development CPU,
this one ~23 us (``benchmarks/features_host.py`` prints it). A cache in the earlier layout is
converted in place, in one transaction, when it is first opened; lookups use a second connection, so
they never wait for a write.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

CACHE_FILE = "vectors.sqlite"
_SQLITE_MAX_VARIABLES = 900
_MIGRATE_ROWS = 4096
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS encoders (id INTEGER PRIMARY KEY, identity TEXT NOT NULL UNIQUE)",
    "CREATE TABLE IF NOT EXISTS item_vectors ("
    " encoder INTEGER NOT NULL REFERENCES encoders(id), content_sha256 BLOB NOT NULL, dim INTEGER NOT NULL,"
    " vector BLOB NOT NULL, UNIQUE (encoder, content_sha256))",
)


def content_key(content: bytes | bytearray | str) -> str:
    """The sha256 hex digest of ``content`` (text is UTF-8 encoded first)."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    return hashlib.sha256(data).hexdigest()


def _digest(key: str) -> bytes:
    """The 32 bytes of a sha256 hex digest; anything else is a ``ValueError``."""
    try:
        digest = bytes.fromhex(key)
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise ValueError(f"cache key {key!r} is not a sha256 hex digest")
    return digest


class FeatureCache:
    """Vectors stored by ``(encoder identity, content key)``; keys are sha256 hex digests
    (:func:`content_key`, or a file's), vectors float32 of any dimension per encoder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / CACHE_FILE
        self._lock = threading.Lock()  # guards the writing connection
        self._read_lock = threading.Lock()  # guards the reading one: lookups never wait for a write
        self._encoder_ids: dict[str, int] = {}
        self._db = sqlite3.connect(self.path, timeout=120.0, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._transaction():
            for statement in _SCHEMA:
                self._db.execute(statement)
            self._convert_old_layout()
        self._reader = sqlite3.connect(self.path, timeout=120.0, check_same_thread=False)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on an error): the write lock is taken at
        the start, so two processes converting or writing the same cache wait for each other."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._encoder_ids.clear()  # ids added in this transaction are gone
            raise

    def _convert_old_layout(self) -> None:
        """Move the rows of the older ``vectors`` table (text keys) into ``item_vectors``."""
        if not self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'vectors'").fetchone():
            return
        rows = self._db.execute("SELECT encoder, content_sha256, dim, vector FROM vectors")
        while batch := rows.fetchmany(_MIGRATE_ROWS):
            self._db.executemany(
                "INSERT OR IGNORE INTO item_vectors VALUES (?, ?, ?, ?)",
                [(self._encoder_id(encoder, create=True), _digest(key), dim, blob) for encoder, key, dim, blob in batch],
            )
        self._db.execute("DROP TABLE vectors")

    def _encoder_id(self, identity: str, create: bool) -> int | None:
        """The row id of ``identity`` in ``encoders``, ``None`` if absent; ``create`` adds it (in
        the writing connection, whose lock the caller holds; else the reading one's)."""
        if identity not in self._encoder_ids:
            db = self._db if create else self._reader
            if create:
                db.execute("INSERT OR IGNORE INTO encoders (identity) VALUES (?)", (identity,))
            row = db.execute("SELECT id FROM encoders WHERE identity = ?", (identity,)).fetchone()
            if row is None:
                return None
            self._encoder_ids[identity] = row[0]
        return self._encoder_ids[identity]

    def get_many(self, encoder: str, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """The cached vectors among ``keys`` for ``encoder``; keys not cached are absent."""
        unique = list(dict.fromkeys(keys))
        found: dict[str, np.ndarray] = {}
        with self._read_lock:
            encoder_id = self._encoder_id(encoder, create=False)
        if encoder_id is None:
            return found
        for start in range(0, len(unique), _SQLITE_MAX_VARIABLES):
            chunk = [_digest(key) for key in unique[start : start + _SQLITE_MAX_VARIABLES]]
            query = (
                "SELECT content_sha256, dim, vector FROM item_vectors"
                f" WHERE encoder = ? AND content_sha256 IN ({','.join('?' * len(chunk))})"
            )
            with self._read_lock:
                rows = self._reader.execute(query, [encoder_id, *chunk]).fetchall()
            for digest, dim, blob in rows:
                vector = np.frombuffer(blob, dtype=np.float32)
                if vector.shape[0] == dim:
                    found[digest.hex()] = vector
        return found

    def put_many(self, encoder: str, vectors: Mapping[str, np.ndarray]) -> None:
        """Store ``vectors`` (content key -> 1-D vector) for ``encoder`` in one transaction, many
        rows per statement (SQLite releases the GIL once per statement, not once per row)."""
        rows = []
        for key, vector in vectors.items():
            flat = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
            rows.append((_digest(key), int(flat.shape[0]), flat.tobytes()))
        rows_per_statement = _SQLITE_MAX_VARIABLES // 4
        with self._lock, self._transaction():
            encoder_id = self._encoder_id(encoder, create=True)
            for start in range(0, len(rows), rows_per_statement):
                part = rows[start : start + rows_per_statement]
                self._db.execute(
                    f"INSERT OR REPLACE INTO item_vectors VALUES {','.join(['(?, ?, ?, ?)'] * len(part))}",
                    [value for row in part for value in (encoder_id, *row)],
                )

    def count(self, encoder: str | None = None) -> int:
        """How many vectors are stored (for one encoder, or in all)."""
        with self._read_lock:
            if encoder is None:
                return self._reader.execute("SELECT COUNT(*) FROM item_vectors").fetchone()[0]
            encoder_id = self._encoder_id(encoder, create=False)
            if encoder_id is None:
                return 0
            query = "SELECT COUNT(*) FROM item_vectors WHERE encoder = ?"
            return self._reader.execute(query, (encoder_id,)).fetchone()[0]

    def close(self) -> None:
        with self._lock, self._read_lock:
            self._db.close()
            self._reader.close()

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
