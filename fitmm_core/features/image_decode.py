"""Decode image files into fixed-size pixel batches, with PIL in worker processes or nvJPEG on the GPU.

The ``image_decode`` setting picks the decoder: ``pil`` (here: a ``torch.utils.data.DataLoader``
runs the decoding and resizing in ``workers`` processes with a bounded prefetch queue, so decoding
overlaps the encoder and memory stays flat), ``nvjpeg`` (:mod:`fitmm_core.features.nvjpeg_decode`),
or ``auto``: nvJPEG when the encoder runs on CUDA and torchvision can decode there, else PIL.
Batches hold ``uint8`` pixels (a quarter of float32's bytes); normalisation happens on the device.
A file that does not decode is reported with the reason, not raised.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from fitmm_core.features.errors import EncoderConfigError
from fitmm_core.features.image import Preprocess

logger = logging.getLogger(__name__)

PREFETCH_BATCHES_PER_WORKER = 2
IMAGE_DECODERS = ("auto", "pil", "nvjpeg")


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
    def __init__(self, paths: Iterable[Path], preprocess: Preprocess) -> None:
        self.paths = list(paths)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, np.ndarray | None, str]:
        pixels, reason = decode_image(self.paths[index], self.preprocess)
        return index, pixels, reason


def empty_pixels(size: int) -> torch.Tensor:
    return torch.zeros((0, size, size, 3), dtype=torch.uint8)


class _Collate:
    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, samples: list[tuple[int, np.ndarray | None, str]]) -> DecodedBatch:
        decoded = [(index, pixels) for index, pixels, _ in samples if pixels is not None]
        failures = [(index, reason) for index, pixels, reason in samples if pixels is None]
        pixels = torch.from_numpy(np.stack([p for _, p in decoded])) if decoded else empty_pixels(self.size)
        return DecodedBatch([index for index, _ in decoded], pixels, failures)


def iter_decoded_batches(
    paths: Iterable[Path],
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


def choose_image_decoder(setting: str, device: torch.device) -> str:
    """``"pil"`` or ``"nvjpeg"`` for the ``image_decode`` setting ``auto``, ``pil`` or ``nvjpeg``."""
    from fitmm_core.features.nvjpeg_decode import nvjpeg_unavailable

    if setting not in IMAGE_DECODERS:
        raise EncoderConfigError(f"image_decode {setting!r} is unknown; choose one of {list(IMAGE_DECODERS)}")
    if setting == "pil":
        return "pil"
    reason = nvjpeg_unavailable(device)
    if reason is None:
        return "nvjpeg"
    if setting == "nvjpeg":
        raise EncoderConfigError(
            f"image_decode 'nvjpeg': {reason}; set image_decode to 'auto' or 'pil' to decode with PIL on the CPU"
        )
    if device.type == "cuda":
        logger.warning(
            "image_decode auto: decoding images with PIL on the CPU, which can bound the GPU encoder, since %s; "
            "`pip install -e '.[nvjpeg]'` (or `make install`, which adds it on GPU hosts) decodes them on the GPU",
            reason,
        )
    return "pil"


def iter_image_batches(
    paths: Iterable[Path],
    preprocess: Preprocess,
    batch_size: int,
    device: torch.device,
    decoder: str,
    workers: int,
) -> Iterator[DecodedBatch]:
    """Batches from :func:`iter_decoded_batches` (``decoder="pil"``, ``workers`` processes) or
    :func:`~fitmm_core.features.nvjpeg_decode.iter_nvjpeg_batches` (``"nvjpeg"``, which reads
    ``paths`` lazily)."""
    if decoder == "nvjpeg":
        from fitmm_core.features.nvjpeg_decode import iter_encoded_files, iter_nvjpeg_batches

        return iter_nvjpeg_batches(iter_encoded_files(paths, ahead=batch_size), preprocess, batch_size, device)
    return iter_decoded_batches(paths, preprocess, batch_size, workers, pin_memory=device.type == "cuda")
