"""Which image files need decoding: hash each item's file, look the hash up in the vector cache, and
hand on only the files whose content is neither cached nor already handed on.

The plan is a lazy iterator. The nvJPEG decoder advances it in its background thread, so hashing
and cache lookups overlap the GPU's work on earlier batches; the PIL decoder, whose worker processes
need the whole list, runs it to the end first. Files are hashed by a thread pool a window ahead
(:func:`~fitmm_core.features.image_sources.iter_file_hashes`) and looked up
:data:`LOOKUP_CHUNK` hashes at a time.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from fitmm_core.features.cache import FeatureCache
from fitmm_core.features.image_sources import iter_file_hashes

LOOKUP_CHUNK = 256


class ImagePlan:
    """One pass over ``paths`` (one file per item, in item order) by :meth:`files_to_decode`.

    Filled as the pass goes: ``keys[j]``, the sha256 of item ``j``'s file; ``cached``, the vectors
    found in the cache; ``todo_keys[p]``, the hash of the ``p``-th file handed on; ``skipped``, how
    many items needed no decoding (cached, or a copy of a file already handed on).
    """

    def __init__(self, paths: Sequence[Path], encoder_identity: str, cache: FeatureCache) -> None:
        self.paths = list(paths)
        self.encoder_identity = encoder_identity
        self.cache = cache
        self.keys: list[str] = []
        self.cached: dict[str, np.ndarray] = {}
        self.todo_keys: list[str] = []
        self.skipped = 0

    def files_to_decode(self) -> Iterator[Path]:
        """The files to decode, each distinct content once, in item order."""
        handed_on: set[str] = set()
        with contextlib.closing(iter_file_hashes(self.paths)) as hashes:  # its threads stop with this pass
            for start in range(0, len(self.paths), LOOKUP_CHUNK):
                chunk = self.paths[start : start + LOOKUP_CHUNK]
                keys = list(itertools.islice(hashes, len(chunk)))
                unknown = [key for key in keys if key not in self.cached and key not in handed_on]
                self.cached.update(self.cache.get_many(self.encoder_identity, unknown))
                for path, key in zip(chunk, keys):
                    self.keys.append(key)
                    if key in self.cached or key in handed_on:
                        self.skipped += 1
                        continue
                    handed_on.add(key)
                    self.todo_keys.append(key)
                    yield path

    @property
    def n_cached(self) -> int:
        """Items (so far) whose vector came from the cache."""
        return sum(key in self.cached for key in self.keys)
