"""Decode JPEGs on the GPU with nvJPEG and resize them there, so CPU decoding never bounds the encoder.

On the CPU, threads only read file bytes, hash them (the cache key: each file is read once) and parse
JPEG headers, :data:`READ_CHUNK` files per task. Each batch goes to
``torchvision.io.decode_jpeg(..., device="cuda")`` (nvJPEG; baseline JPEGs use the hardware decoder of
A100/H100-class cards), then images that share a size are resized in one call: shortest side to
:math:`S` by antialiased bicubic interpolation, centre :math:`S \\times S` crop, rounded to ``uint8``:
the geometry of :class:`~fitmm_core.features.image.Preprocess` on the CPU. A background thread
prepares batch :math:`k+1` on its own CUDA stream while the caller encodes batch :math:`k`.

Files nvJPEG should not see (PNG, WebP, CMYK or arithmetic-coded JPEG, a truncated file, more pixels
than PIL's decompression-bomb limit) and files it rejects are decoded by PIL in the I/O threads,
so this path accepts and rejects the same files as the CPU path, with the same reasons.
"""

from __future__ import annotations

import functools
import io
import itertools
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from fitmm_core.features.cache import content_key
from fitmm_core.features.image import Preprocess
from fitmm_core.features.image_decode import DecodedBatch, decode_image, empty_pixels
from fitmm_core.features.jpeg_header import JpegHeader, read_jpeg_header
from fitmm_core.features.ordered_pool import map_chunks_in_order

NVJPEG_CODINGS = frozenset({"baseline", "extended", "progressive"})
EOI = b"\xff\xd9"
EOI_SEARCH_BYTES = 64  # some encoders pad after the end-of-image marker
DECODE_PIXELS_PER_CALL = 1 << 27  # 384 MiB of decoded RGB per nvJPEG call
RESIZE_VALUES_PER_CALL = 1 << 27  # 512 MiB of float32 per interpolate call
PREFETCH_BATCHES = 2
# Reading a product photo from the page cache takes ~10 us: a task per file, or more threads
# contending for the GIL, cost more than that (measured on the development CPU: 8 threads with a
# task per file read 9k files/s, one thread 26k), so two threads read 32 files per task.
IO_THREADS = 2
READ_CHUNK = 32
PIL_THREADS = max(1, min(8, os.cpu_count() or 1))  # decode what nvJPEG does not take; PIL releases the GIL


@dataclass
class EncodedFile:
    """One image file's bytes, their sha256 and JPEG header (``data`` and ``sha256`` are ``None``,
    with the reason in ``error``, when the file could not be read)."""

    position: int
    path: Path
    data: np.ndarray | None
    error: str = ""
    header: JpegHeader | None = None
    sha256: str | None = None

    def suits_nvjpeg(self) -> bool:
        """A complete Huffman-coded JPEG with 1 or 3 components under PIL's pixel limit."""
        header = self.header
        if header is None or self.data is None:
            return False
        limit = Image.MAX_IMAGE_PIXELS or float("inf")
        return (
            header.coding in NVJPEG_CODINGS
            and header.components in (1, 3)
            and header.width * header.height <= limit
            and EOI in self.data[-EOI_SEARCH_BYTES:].tobytes()
        )


def read_encoded_file(position: int, path: Path) -> EncodedFile:
    """The bytes of ``path``, their sha256 and, for a JPEG, its frame header."""
    try:
        with open(path, "rb", buffering=0) as handle:  # one unbuffered read into a writable buffer
            buffer = bytearray(os.fstat(handle.fileno()).st_size)
            handle.readinto(buffer)
    except OSError as exc:
        return EncodedFile(position, path, None, f"{type(exc).__name__}: {exc}")
    return EncodedFile(
        position, path, np.frombuffer(buffer, dtype=np.uint8), header=read_jpeg_header(buffer),
        sha256=content_key(buffer),
    )


def read_encoded_files(numbered: Sequence[tuple[int, Path]]) -> list[EncodedFile]:
    """:func:`read_encoded_file` of each ``(position, path)``."""
    return [read_encoded_file(position, path) for position, path in numbered]


def iter_encoded_files(paths: Iterable[Path], ahead: int = 512, threads: int = IO_THREADS) -> Iterator[EncodedFile]:
    """:func:`read_encoded_file` of each path (numbered in order), read by ``threads`` threads
    :data:`READ_CHUNK` files per task, at most about ``ahead`` files ahead of the consumer."""
    return map_chunks_in_order(read_encoded_files, enumerate(paths), threads, READ_CHUNK, ahead, "nvjpeg-io")


def _probe_jpeg() -> torch.Tensor:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 100, 50)).save(buffer, "JPEG")
    return torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)


@functools.cache
def nvjpeg_unavailable(device: torch.device) -> str | None:
    """Why JPEGs cannot be decoded on ``device`` with nvJPEG, or ``None`` when they can (checked
    once per device by decoding a tiny JPEG there)."""
    if device.type != "cuda":
        return f"nvJPEG needs a CUDA device; the image encoder runs on {device}"
    try:
        import torchvision.io  # noqa: F401
    except Exception as exc:  # ImportError, or RuntimeError from a torchvision built for another torch
        return (
            f"torchvision is not importable ({type(exc).__name__}: {exc}); install the torchvision "
            f"release built for torch {torch.__version__}"
        )
    try:
        decode_jpegs([_probe_jpeg()], device)
    except RuntimeError as exc:
        return f"torchvision cannot decode JPEGs on {device}: {exc}"
    return None


def decode_jpegs(encoded: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """JPEG bytes (1-D uint8 CPU tensors) -> ``(3, H, W)`` uint8 RGB images on ``device``, by
    ``torchvision.io.decode_jpeg`` (nvJPEG on CUDA); raises ``RuntimeError`` if any stream fails.

    On CUDA the current stream is drained first: the decoder takes its output blocks from the
    caching allocator on this stream but writes them from its own stream (the hardware engine ignores
    stream order), so a block freed while queued kernels still read it would be overwritten under
    them (pytorch/vision#9606). torchvision waits for the decode on the host anyway, so the fence
    costs only the queued work, never the encoder's, which runs on another stream."""
    from torchvision.io import ImageReadMode, decode_jpeg

    if device.type == "cuda":
        torch.cuda.current_stream(device).synchronize()
    return decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)


def resize_and_crop(images: Sequence[torch.Tensor], preprocess: Preprocess) -> torch.Tensor:
    """``(3, H, W)`` uint8 images -> ``(N, S, S, 3)`` uint8, as :meth:`Preprocess.to_pixels` does
    on the CPU; images of one size share each interpolate call."""
    size = preprocess.size
    out = torch.empty((len(images), size, size, 3), dtype=torch.uint8, device=images[0].device)
    by_shape: dict[tuple[int, int], list[int]] = {}
    for index, image in enumerate(images):
        by_shape.setdefault((int(image.shape[1]), int(image.shape[2])), []).append(index)
    for (height, width), members in by_shape.items():
        new_width, new_height = preprocess.resized_size(width, height)
        left, top = preprocess.crop_offsets(new_width, new_height)
        step = max(1, RESIZE_VALUES_PER_CALL // (3 * max(height * width, new_height * new_width)))
        for start in range(0, len(members), step):
            part = members[start : start + step]
            stack = torch.stack([images[i] for i in part]).float()
            if (new_height, new_width) != (height, width):
                stack = F.interpolate(stack, size=(new_height, new_width), mode="bicubic", antialias=True)
            crop = stack[:, :, top : top + size, left : left + size]
            out[part] = crop.clamp_(0, 255).round_().to(torch.uint8).permute(0, 2, 3, 1)
    return out


def _bounded_groups(files: list[EncodedFile]) -> Iterator[list[EncodedFile]]:
    """Consecutive groups of ``files`` with at most :data:`DECODE_PIXELS_PER_CALL` pixels (or one file)."""
    group: list[EncodedFile] = []
    pixels = 0
    for file in files:
        assert file.header is not None
        area = file.header.width * file.header.height
        if group and pixels + area > DECODE_PIXELS_PER_CALL:
            yield group
            group, pixels = [], 0
        group.append(file)
        pixels += area
    if group:
        yield group


def _nvjpeg(files: list[EncodedFile], device: torch.device) -> tuple[list[int], list[torch.Tensor], list[EncodedFile]]:
    """``(positions, images, rejected)``: one batched nvJPEG call; if it fails, one call per file."""
    tensors = [torch.from_numpy(file.data) for file in files]
    try:
        return [file.position for file in files], decode_jpegs(tensors, device), []
    except RuntimeError:
        positions, images, rejected = [], [], []
        for file, tensor in zip(files, tensors):
            try:
                images.append(decode_jpegs([tensor], device)[0])
                positions.append(file.position)
            except RuntimeError:
                rejected.append(file)
        return positions, images, rejected


def decode_files(
    files: list[EncodedFile], preprocess: Preprocess, device: torch.device, pool: ThreadPoolExecutor
) -> DecodedBatch:
    """Decode ``files`` into ``(N, S, S, 3)`` uint8 pixels on ``device``: nvJPEG plus
    :func:`resize_and_crop` for the JPEGs it suits, PIL in ``pool`` for the rest."""
    failures = [(file.position, file.error) for file in files if file.data is None]
    on_gpu: list[EncodedFile] = []
    by_pil: dict[int, Future] = {}
    for file in files:
        if file.suits_nvjpeg():
            on_gpu.append(file)
        elif file.data is not None:
            by_pil[file.position] = pool.submit(decode_image, file.path, preprocess)
    positions: list[int] = []
    parts: list[torch.Tensor] = []
    for group in _bounded_groups(on_gpu):
        decoded_positions, images, rejected = _nvjpeg(group, device)
        by_pil.update({file.position: pool.submit(decode_image, file.path, preprocess) for file in rejected})
        if images:
            parts.append(resize_and_crop(images, preprocess))
            positions.extend(decoded_positions)
    decoded_on_cpu = []
    for position, future in by_pil.items():
        pixels, reason = future.result()
        if pixels is None:
            failures.append((position, reason))
        else:
            decoded_on_cpu.append(pixels)
            positions.append(position)
    if decoded_on_cpu:
        parts.append(torch.from_numpy(np.stack(decoded_on_cpu)).to(device))
    pixels = torch.cat(parts) if parts else empty_pixels(preprocess.size).to(device)
    return DecodedBatch(positions, pixels, failures)


def iter_nvjpeg_batches(
    files: Iterable[EncodedFile],
    preprocess: Preprocess,
    batch_size: int,
    device: torch.device,
) -> Iterator[DecodedBatch]:
    """Batches of at most ``batch_size`` images with pixels already on ``device``; ``positions``
    count the files in the order they were taken from ``files`` (e.g. :func:`iter_encoded_files`).

    One background thread takes the files (``files`` may be lazy: it is advanced only in that
    thread, and closed at the end) and decodes and resizes them, up to :data:`PREFETCH_BATCHES`
    batches ahead of the caller, on CUDA on its own stream; the caller's stream waits for each batch
    before using it."""
    remaining = iter(files)
    taken = 0
    stream = torch.cuda.Stream(device) if device.type == "cuda" else None
    try:
        with ThreadPoolExecutor(PIL_THREADS, "nvjpeg-pil") as pool, ThreadPoolExecutor(1, "nvjpeg") as decoder:

            def prepare() -> tuple[DecodedBatch, torch.cuda.Event | None] | None:
                nonlocal taken
                chunk = list(itertools.islice(remaining, batch_size))
                if not chunk:
                    return None
                for file in chunk:  # positions count the files taken here (the plan may have skipped some)
                    file.position = taken
                    taken += 1
                with torch.cuda.stream(stream) if stream is not None else nullcontext():
                    batch = decode_files(chunk, preprocess, device, pool)
                    ready = stream.record_event() if stream is not None else None
                return batch, ready

            pending = deque(decoder.submit(prepare) for _ in range(PREFETCH_BATCHES))
            while pending:
                prepared = pending.popleft().result()
                if prepared is None:
                    continue
                pending.append(decoder.submit(prepare))
                batch, ready = prepared
                if ready is not None:
                    consumer = torch.cuda.current_stream(device)
                    consumer.wait_event(ready)
                    batch.pixels.record_stream(consumer)
                yield batch
    finally:  # the decoder thread has stopped: close the files' iterator (and its reading threads) here
        close = getattr(remaining, "close", None)
        if close is not None:
            close()
