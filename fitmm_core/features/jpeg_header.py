"""Read a JPEG's frame header (size, colour components, coding) without decoding it.

The GPU decoder uses this to send only what nvJPEG handles (Huffman-coded baseline, extended or
progressive frames with 1 or 3 components, of a sane size) to the GPU, and to plan memory; anything
else goes to PIL, which accepts or rejects it exactly as the CPU path does.
"""

from __future__ import annotations

from dataclasses import dataclass

SOI = b"\xff\xd8"
START_OF_SCAN = 0xDA
# Start-of-frame markers are 0xC0-0xCF except DHT (C4), JPG (C8) and DAC (CC).
FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
HUFFMAN_FRAMES = {0xC0: "baseline", 0xC1: "extended", 0xC2: "progressive"}
STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})


@dataclass(frozen=True)
class JpegHeader:
    """``coding`` is ``baseline``, ``extended``, ``progressive`` or ``other`` (lossless, arithmetic)."""

    width: int
    height: int
    components: int
    coding: str


def read_jpeg_header(data: bytes | memoryview) -> JpegHeader | None:
    """The frame header of JPEG bytes ``data``; ``None`` when they do not start like a JPEG or the
    header is truncated or malformed. Walks the marker segments only, so it costs microseconds."""
    view = memoryview(data)
    if bytes(view[:2]) != SOI:
        return None
    pos = 2
    while pos + 4 <= len(view):
        if view[pos] != 0xFF:
            return None
        marker = view[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in STANDALONE_MARKERS:
            pos += 2
            continue
        if marker == START_OF_SCAN:
            return None
        length = int.from_bytes(view[pos + 2 : pos + 4], "big")
        if length < 2:
            return None
        if marker in FRAME_MARKERS:
            if length < 8 or pos + 10 > len(view):
                return None
            height = int.from_bytes(view[pos + 5 : pos + 7], "big")
            width = int.from_bytes(view[pos + 7 : pos + 9], "big")
            if not width or not height:
                return None
            return JpegHeader(width, height, view[pos + 9], HUFFMAN_FRAMES.get(marker, "other"))
        pos += 2 + length
    return None
