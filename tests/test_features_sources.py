"""Image references over HTTP: a local server with planted failures, retries, the download cache."""

from __future__ import annotations

import io
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from fitmm_core.features.encode import encode_images
from tests.servers import serving
from fitmm_core.features.image import load_efficientnet_lite0
from fitmm_core.features.image_sources import FetchSettings, resolve_image_sources, url_cache_path

FAST = FetchSettings(timeout_s=0.4, retries=1, backoff_s=0.01, max_bytes=40_000, workers=4)


def jpeg_bytes(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 32), colour).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


RED, BLUE = jpeg_bytes((200, 20, 20)), jpeg_bytes((20, 20, 200))


class ImageServer(BaseHTTPRequestHandler):
    """Routes: /red.jpg /blue.jpg fine; /missing 404; /slow.jpg answers after 2 s; /corrupt.jpg
    garbage labelled image/jpeg; /big.jpg declares 10 MB; /stream.jpg sends 100 kB with no length;
    /page.html is text/html; /flaky.jpg fails with 503 on its first request."""

    hits: Counter = Counter()

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str, length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        ImageServer.hits[self.path] += 1
        if self.path == "/red.jpg":
            self._send(200, RED, "image/jpeg", len(RED))
        elif self.path == "/blue.jpg":
            self._send(200, BLUE, "image/jpeg", len(BLUE))
        elif self.path == "/slow.jpg":
            time.sleep(2.0)
            self._send(200, RED, "image/jpeg", len(RED))
        elif self.path == "/corrupt.jpg":
            self._send(200, b"\xff\xd8\xff\xe0garbage" * 10, "image/jpeg", 110)
        elif self.path == "/big.jpg":
            self._send(200, b"\0" * 1000, "image/jpeg", 10_000_000)
        elif self.path == "/stream.jpg":
            self._send(200, b"\0" * 100_000, "image/jpeg")
        elif self.path == "/page.html":
            self._send(200, b"<html>not an image</html>", "text/html; charset=utf-8", 25)
        elif self.path == "/flaky.jpg" and ImageServer.hits[self.path] == 1:
            self._send(503, b"busy", "text/plain", 4)
        elif self.path == "/flaky.jpg":
            self._send(200, BLUE, "image/jpeg", len(BLUE))
        else:
            self._send(404, b"no", "text/plain", 2)


@pytest.fixture
def server() -> Iterator[str]:
    ImageServer.hits = Counter()
    with serving(ImageServer) as url:
        yield url


def test_each_planted_failure_is_reported_not_raised(server: str, tmp_path: Path) -> None:
    paths = ["/red.jpg", "/missing", "/slow.jpg", "/big.jpg", "/stream.jpg", "/page.html", "/flaky.jpg", "/corrupt.jpg"]
    started = time.monotonic()
    sources = resolve_image_sources([server + p for p in paths], tmp_path, tmp_path / "dl", FAST, progress=False)
    assert time.monotonic() - started < 1.8  # the slow URL is given up after two 0.4 s attempts
    kinds = {p: (s.failure if not s.ok else "ok") for p, s in zip(paths, sources)}
    assert kinds == {
        "/red.jpg": "ok", "/missing": "http error", "/slow.jpg": "timeout", "/big.jpg": "too large",
        "/stream.jpg": "too large", "/page.html": "not an image", "/flaky.jpg": "ok", "/corrupt.jpg": "ok",
    }
    assert "HTTP 404" in sources[1].detail and "text/html" in sources[5].detail
    assert ImageServer.hits["/flaky.jpg"] == 2 and ImageServer.hits["/slow.jpg"] == 2
    assert ImageServer.hits["/missing"] == 1 and ImageServer.hits["/page.html"] == 1  # permanent: no retry
    assert sources[0].path == url_cache_path(server + "/red.jpg", tmp_path / "dl")
    assert sources[0].path.read_bytes() == RED and sources[6].path.read_bytes() == BLUE
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == sorted(s.path.name for s in sources if s.ok)


def test_downloads_are_read_from_the_cache_the_second_time(server: str, tmp_path: Path) -> None:
    urls = [server + "/red.jpg", server + "/red.jpg", server + "/blue.jpg"]
    first = resolve_image_sources(urls, tmp_path, tmp_path / "dl", FAST, progress=False)
    second = resolve_image_sources(urls, tmp_path, tmp_path / "dl", FAST, progress=False)
    assert [s.path for s in first] == [s.path for s in second] and first[0].path == first[1].path
    assert ImageServer.hits == Counter({"/red.jpg": 1, "/blue.jpg": 1})


def test_encode_images_from_urls_masks_the_failures(server: str, tmp_path: Path) -> None:
    paths = ["/red.jpg", "/corrupt.jpg", "/missing", "/blue.jpg", "/page.html"]
    folder = tmp_path / "ds"
    folder.mkdir()
    pl.DataFrame(
        {"itemID": list(range(5)), "asin": list("abcde"), "text": list("abcde"), "image": [server + p for p in paths]}
    ).write_parquet(folder / "items.parquet")
    encoder = load_efficientnet_lite0("cpu")
    report = encode_images(folder, encoder, cache_dir=tmp_path / "cache", progress=False, decode_workers=0, fetch=FAST)
    mask = np.load(folder / "image_mask.npy")
    matrix = np.load(folder / "image_feat.npy")
    assert mask.tolist() == [True, False, False, True, False]
    assert report["missing_reasons"] == {"undecodable": 1, "http error": 1, "not an image": 1}
    real = encoder.encode([Image.open(io.BytesIO(RED)), Image.open(io.BytesIO(BLUE))])
    np.testing.assert_allclose(matrix[[0, 3]], real, atol=1e-4)
    np.testing.assert_allclose(matrix[[1, 2, 4]], np.repeat(real.mean(axis=0, keepdims=True), 3, axis=0), atol=1e-4)
    assert (tmp_path / "cache" / "images").is_dir()
