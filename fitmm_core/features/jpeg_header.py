"""Read a JPEG's frame header (size, colour components, coding) without decoding it.

The GPU decoder uses this to send only what nvJPEG handles (Huffman-coded baseline, extended or
progressive frames with 1 or 3 components, of a sane size) to the GPU, and to plan memory; anything
else goes to PIL, which accepts or rejects it exactly as the CPU path does.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

START_OF_SCAN = 0xDA
# Start-of-frame markers are 0xC0-0xCF except DHT (C4), JPG (C8) and DAC (CC).
FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
HUFFMAN_FRAMES = {0xC0: "baseline", 0xC1: "extended", 0xC2: "progressive"}
STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})
SEGMENT_LENGTH = struct.Struct(">H")
FRAME_HEADER = struct.Struct(">BHHB")  # precision, height, width, components


@dataclass(frozen=True)
class JpegHeader:
    """``coding`` is ``baseline``, ``extended``, ``progressive`` or ``other`` (lossless, arithmetic)."""

    width: int
    height: int
    components: int
    coding: str


def read_jpeg_header(data: bytes | bytearray | memoryview) -> JpegHeader | None:
    """The frame header of JPEG bytes ``data``; ``None`` when they do not start like a JPEG or the
    header is truncated or malformed. Walks the marker segments only, so it costs microseconds."""
    if len(data) < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in STANDALONE_MARKERS:
            pos += 2
            continue
        if marker == START_OF_SCAN:
            return None
        (length,) = SEGMENT_LENGTH.unpack_from(data, pos + 2)
        if length < 2:
            return None
        if marker in FRAME_MARKERS:
            if length < 8 or pos + 10 > len(data):
                return None
            _, height, width, components = FRAME_HEADER.unpack_from(data, pos + 4)
            if not width or not height:
                return None
            return JpegHeader(width, height, components, HUFFMAN_FRAMES.get(marker, "other"))
        pos += 2 + length
    return None
