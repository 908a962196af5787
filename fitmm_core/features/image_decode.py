"""Decode image files into fixed-size pixel batches in worker processes.

A ``torch.utils.data.DataLoader`` runs the JPEG/PNG decoding and resizing in ``workers`` processes
with a bounded prefetch queue, so decoding overlaps the encoder and memory stays flat however many
images there are. Workers send ``uint8`` pixels (a quarter of float32's bytes); normalisation happens
on the device. A file that does not decode is reported with the reason, not raised.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from fitmm_core.features.image import Preprocess

PREFETCH_BATCHES_PER_WORKER = 2


def default_decode_workers() -> int:
    """One process per spare CPU core, at most 8 (decoding a 224-px crop is cheap)."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def decode_image(path: Path, preprocess: Preprocess) -> tuple[np.ndarray | None, str]:
    """``(pixels, "")`` for a decodable image file, ``(None, reason)`` otherwise."""
    try:
        with Image.open(path) as image:
            return preprocess.to_pixels(image), ""
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


@dataclass
class DecodedBatch:
    """Pixels of the files that decoded (``positions`` index the input paths) and the failures."""

    positions: list[int]
    pixels: torch.Tensor
    failures: list[tuple[int, str]]

    def pin_memory(self) -> DecodedBatch:
        return DecodedBatch(self.positions, self.pixels.pin_memory(), self.failures)


class _DecodeDataset(Dataset):
    def __init__(self, paths: Sequence[Path], preprocess: Preprocess) -> None:
        self.paths = list(paths)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, np.ndarray | None, str]:
        pixels, reason = decode_image(self.paths[index], self.preprocess)
        return index, pixels, reason


def _empty_pixels(size: int) -> torch.Tensor:
    return torch.zeros((0, size, size, 3), dtype=torch.uint8)


class _Collate:
    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, samples: list[tuple[int, np.ndarray | None, str]]) -> DecodedBatch:
        decoded = [(index, pixels) for index, pixels, _ in samples if pixels is not None]
        failures = [(index, reason) for index, pixels, reason in samples if pixels is None]
        pixels = torch.from_numpy(np.stack([p for _, p in decoded])) if decoded else _empty_pixels(self.size)
        return DecodedBatch([index for index, _ in decoded], pixels, failures)


def iter_decoded_batches(
    paths: Sequence[Path],
    preprocess: Preprocess,
    batch_size: int,
    workers: int,
    pin_memory: bool = False,
) -> Iterator[DecodedBatch]:
    """Batches of at most ``batch_size`` images, in input order, decoded by ``workers`` processes
    (0: in this process)."""
    loader = DataLoader(
        _DecodeDataset(paths, preprocess),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=_Collate(preprocess.size),
        pin_memory=pin_memory,
        prefetch_factor=PREFETCH_BATCHES_PER_WORKER if workers > 0 else None,
    )
    yield from loader
