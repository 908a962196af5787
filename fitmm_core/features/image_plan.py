"""Which image files need decoding: look each file's content hash up in the vector cache and hand on
only the files whose content is neither cached nor already handed on.

The plan is a lazy iterator over ``(item, content key)`` pairs. On the nvJPEG path the pairs come
from reading each file once (the key is the hash of the bytes read, which are then decoded), and the
decoder's background thread advances the plan, so reading, hashing and cache lookups overlap the
GPU's work on earlier batches. The PIL decoder, whose worker processes need the whole list, hashes
the files with :func:`~fitmm_core.features.image_sources.iter_file_hashes` and runs the plan to the
end first. Keys are looked up :data:`LOOKUP_CHUNK` at a time.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from fitmm_core.features.cache import FeatureCache
from fitmm_core.features.image_sources import iter_file_hashes

LOOKUP_CHUNK = 256
UNREAD = "unread:"  # prefix of the stand-in key of an item whose file could not be read

Item = TypeVar("Item")


class ImagePlan:
    """One pass over the items' image files, in item order, by :meth:`select` (or
    :meth:`files_to_decode`).

    Filled as the pass goes: ``keys[j]``, item ``j``'s content key; ``cached``, the vectors found in
    the cache; ``todo_keys[p]``, the key of the ``p``-th item handed on; ``skipped``, how many items
    needed no decoding (cached, or a copy of a content already handed on).
    """

    def __init__(self, encoder_identity: str, cache: FeatureCache) -> None:
        self.encoder_identity = encoder_identity
        self.cache = cache
        self.keys: list[str] = []
        self.cached: dict[str, np.ndarray] = {}
        self.todo_keys: list[str] = []
        self.skipped = 0

    def select(self, hashed: Iterable[tuple[Item, str | None]]) -> Iterator[Item]:
        """The items to decode, each distinct content once, in order, from ``(item, sha256)``
        pairs; an item whose file could not be read (key ``None``) is handed on with a key of its
        own, so that decoding reports why."""
        handed_on: set[str] = set()
        pairs = iter(hashed)
        while chunk := list(itertools.islice(pairs, LOOKUP_CHUNK)):
            keys = [key if key is not None else f"{UNREAD}{len(self.keys) + n}" for n, (_, key) in enumerate(chunk)]
            unknown = [
                key for key in keys if not key.startswith(UNREAD) and key not in self.cached and key not in handed_on
            ]
            self.cached.update(self.cache.get_many(self.encoder_identity, unknown))
            for (item, _), key in zip(chunk, keys):
                self.keys.append(key)
                if key in self.cached or key in handed_on:
                    self.skipped += 1
                    continue
                handed_on.add(key)
                self.todo_keys.append(key)
                yield item

    def files_to_decode(self, paths: Sequence[Path]) -> Iterator[Path]:
        """:meth:`select` over ``paths`` hashed by a thread pool a window ahead."""
        with contextlib.closing(iter_file_hashes(paths)) as hashes:  # its threads stop with this pass
            yield from self.select(zip(paths, hashes))

    @property
    def n_cached(self) -> int:
        """Items (so far) whose vector came from the cache."""
        return sum(key in self.cached for key in self.keys)
