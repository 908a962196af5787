"""Decode JPEGs on the GPU with nvJPEG and resize them there, so CPU decoding never bounds the encoder.

On the CPU, threads only read file bytes and parse JPEG headers. Each batch goes to
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

from fitmm_core.features.image import Preprocess
from fitmm_core.features.image_decode import DecodedBatch, decode_image, empty_pixels
from fitmm_core.features.jpeg_header import JpegHeader, read_jpeg_header

NVJPEG_CODINGS = frozenset({"baseline", "extended", "progressive"})
EOI = b"\xff\xd9"
EOI_SEARCH_BYTES = 64  # some encoders pad after the end-of-image marker
DECODE_PIXELS_PER_CALL = 1 << 27  # 384 MiB of decoded RGB per nvJPEG call
RESIZE_VALUES_PER_CALL = 1 << 27  # 512 MiB of float32 per interpolate call
PREFETCH_BATCHES = 2
IO_THREADS = 8  # read files (the syscalls release the GIL) and decode what nvJPEG does not take
READ_CHUNK = 32  # files per read task: one task per file costs more than reading a cached file


@dataclass
class EncodedFile:
    """One image file's bytes (``None`` with ``error`` when it could not be read) and JPEG header."""

    position: int
    path: Path
    data: np.ndarray | None
    error: str = ""
    header: JpegHeader | None = None

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
    """The bytes of ``path`` and, for a JPEG, its frame header."""
    try:
        with open(path, "rb", buffering=0) as handle:  # one unbuffered read into a writable buffer
            buffer = bytearray(os.fstat(handle.fileno()).st_size)
            handle.readinto(buffer)
    except OSError as exc:
        return EncodedFile(position, path, None, f"{type(exc).__name__}: {exc}")
    return EncodedFile(position, path, np.frombuffer(buffer, dtype=np.uint8), header=read_jpeg_header(buffer))


def read_encoded_files(first_position: int, paths: Sequence[Path]) -> list[EncodedFile]:
    """:func:`read_encoded_file` of consecutive ``paths``, numbered from ``first_position``."""
    return [read_encoded_file(first_position + offset, path) for offset, path in enumerate(paths)]


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
    paths: Iterable[Path],
    preprocess: Preprocess,
    batch_size: int,
    device: torch.device,
    io_threads: int = IO_THREADS,
) -> Iterator[DecodedBatch]:
    """Batches of at most ``batch_size`` images with pixels already on ``device``; ``positions``
    count the paths in the order they were taken from ``paths``.

    One background thread takes the paths (``paths`` may be a lazy iterator, advanced only in that
    thread) and has ``io_threads`` threads read them, :data:`READ_CHUNK` files per task and one batch
    ahead, while it decodes and resizes the current batch, up to :data:`PREFETCH_BATCHES` batches
    ahead of the caller, on CUDA on its own stream; the caller's stream waits for each batch before
    using it."""
    remaining = iter(paths)
    taken = 0
    reads_ahead: deque[list[Future] | None] = deque()  # the next batch's read tasks; None: no more paths
    stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    with ThreadPoolExecutor(io_threads, "nvjpeg-io") as pool, ThreadPoolExecutor(1, "nvjpeg") as decoder:

        def start_reading() -> list[Future] | None:
            nonlocal taken
            chunk = list(itertools.islice(remaining, batch_size))
            if not chunk:
                return None
            reads = [
                pool.submit(read_encoded_files, taken + start, chunk[start : start + READ_CHUNK])
                for start in range(0, len(chunk), READ_CHUNK)
            ]
            taken += len(chunk)
            return reads

        def prepare() -> tuple[DecodedBatch, torch.cuda.Event | None] | None:
            reads = reads_ahead.popleft() if reads_ahead else start_reading()
            reads_ahead.append(start_reading() if reads is not None else None)
            if reads is None:
                return None
            files = [file for read in reads for file in read.result()]
            with torch.cuda.stream(stream) if stream is not None else nullcontext():
                batch = decode_files(files, preprocess, device, pool)
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
