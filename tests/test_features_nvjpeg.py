"""GPU image decoding: JPEG headers, GPU-side resizing, decoder choice, and the nvJPEG path.

The path's routing, retries, PIL fallback and threading run on the CPU with two stand-ins for
nvJPEG: a PIL decoder of JPEG bytes (always) and torchvision's CPU decoder (where torchvision
imports). nvJPEG itself runs in the CUDA tests, skipped without a device.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from fitmm_core.features import image_plan, image_sources, nvjpeg_decode
from fitmm_core.features.cache import FeatureCache
from fitmm_core.features.encode import embed_image_sources, encode_images
from fitmm_core.features.errors import EncoderConfigError
from fitmm_core.features.image import IMAGENET_MEAN, IMAGENET_STD, Preprocess, load_efficientnet_lite0
from fitmm_core.features.image_decode import choose_image_decoder, decode_image
from fitmm_core.features.image_sources import ImageSource
from fitmm_core.features.jpeg_header import JpegHeader, read_jpeg_header
from fitmm_core.features.nvjpeg_decode import (
    iter_encoded_files,
    iter_nvjpeg_batches,
    nvjpeg_unavailable,
    read_encoded_file,
    resize_and_crop,
)
from tests.shared_data import GIFT_CARD_IMAGES

PREPROCESS = Preprocess(64, IMAGENET_MEAN, IMAGENET_STD)


def _torchvision_missing() -> str | None:
    try:
        from torchvision.io import decode_jpeg  # noqa: F401
    except Exception as exc:  # ImportError, or RuntimeError from a build for another torch
        return f"torchvision is not importable here ({type(exc).__name__})"
    return None


def _nvjpeg_missing() -> str | None:
    if not torch.cuda.is_available():
        return "needs a CUDA device"
    return nvjpeg_unavailable(torch.device("cuda"))


NVJPEG_MISSING = _nvjpeg_missing()
needs_nvjpeg = pytest.mark.skipif(NVJPEG_MISSING is not None, reason=str(NVJPEG_MISSING))


def picture(size: tuple[int, int], seed: int, mode: str = "RGB") -> Image.Image:
    """A product-photo-like picture: white background, a filled ellipse and a rectangle."""
    rng = np.random.default_rng(seed)
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    image = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.ellipse((6, 6, size[0] - 6, size[1] - 6), fill=colour)
    draw.rectangle((0, 0, size[0] // 3, size[1] // 3), fill=tuple(255 - c for c in colour))
    return image.convert(mode)


def jpeg_bytes(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95, **options)
    return buffer.getvalue()


def mixed_files(folder: Path) -> tuple[list[Path], set[str]]:
    """Files of every kind an image column meets, and the names that no decoder can read."""
    folder.mkdir(parents=True, exist_ok=True)
    baseline = jpeg_bytes(picture((300, 200), 1))
    contents = {
        "a.jpg": baseline,
        "b.jpg": jpeg_bytes(picture((300, 200), 2)),  # same size as a.jpg: resized in one call
        "tall.jpg": jpeg_bytes(picture((120, 260), 3)),
        "small.jpg": jpeg_bytes(picture((40, 30), 4)),  # upscaled
        "progressive.jpg": jpeg_bytes(picture((200, 160), 5), progressive=True),
        "grey.jpg": jpeg_bytes(picture((150, 150), 6, "L")),
        "cmyk.jpg": jpeg_bytes(picture((150, 120), 7, "CMYK")),
        "truncated.jpg": baseline[: len(baseline) // 2],
        "garbage.jpg": bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)),
        "empty.jpg": b"",
    }
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    rgba = picture((90, 70), 8, "RGBA")
    rgba.putalpha(128)
    rgba.save(folder / "alpha.png")
    names = sorted([*contents, "alpha.png", "missing.jpg"])
    return [folder / name for name in names], {"truncated.jpg", "garbage.jpg", "empty.jpg", "missing.jpg"}


def test_header_of_baseline_progressive_grey_and_cmyk_jpegs() -> None:
    assert read_jpeg_header(jpeg_bytes(picture((300, 200), 0))) == JpegHeader(300, 200, 3, "baseline")
    assert read_jpeg_header(jpeg_bytes(picture((30, 20), 0), progressive=True)) == JpegHeader(30, 20, 3, "progressive")
    assert read_jpeg_header(jpeg_bytes(picture((30, 20), 0, "L"))) == JpegHeader(30, 20, 1, "baseline")
    assert read_jpeg_header(jpeg_bytes(picture((30, 20), 0, "CMYK"))).components == 4


def test_header_of_non_jpegs_and_broken_headers_is_none() -> None:
    png = io.BytesIO()
    picture((20, 20), 0).save(png, "PNG")
    data = jpeg_bytes(picture((30, 20), 0))
    frame = data.index(b"\xff\xc0")
    assert read_jpeg_header(png.getvalue()) is None
    assert read_jpeg_header(b"") is None
    assert read_jpeg_header(data[: frame + 5]) is None  # cut inside the frame header
    assert read_jpeg_header(data[:2] + b"\x00" + data[2:]) is None  # not a marker where one must be
    assert read_jpeg_header(data[:2] + b"\xff\xff" + data[2:]) == JpegHeader(30, 20, 3, "baseline")  # fill bytes


def test_only_complete_huffman_jpegs_within_the_pixel_limit_suit_nvjpeg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths, _ = mixed_files(tmp_path)
    suits = {path.name: read_encoded_file(i, path).suits_nvjpeg() for i, path in enumerate(paths)}
    assert {name for name, ok in suits.items() if ok} == {"a.jpg", "b.jpg", "tall.jpg", "small.jpg",
                                                         "progressive.jpg", "grey.jpg"}
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300 * 200 - 1)
    assert not read_encoded_file(0, tmp_path / "a.jpg").suits_nvjpeg()
    missing = read_encoded_file(3, tmp_path / "missing.jpg")
    assert missing.data is None and missing.error.startswith("FileNotFoundError") and not missing.suits_nvjpeg()


@pytest.mark.parametrize(("size", "target"), [((300, 200), 64), ((120, 260), 64), ((40, 30), 64), ((500, 500), 224)])
def test_gpu_resize_matches_pil_bicubic_resize_and_crop(size: tuple[int, int], target: int) -> None:
    image = picture(size, 3)
    preprocess = Preprocess(target, IMAGENET_MEAN, IMAGENET_STD)
    expected = preprocess.to_pixels(image).astype(int)
    chw = torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()
    got = resize_and_crop([chw], preprocess)[0].numpy().astype(int)
    assert got.shape == (target, target, 3)
    assert np.abs(got - expected).mean() < 0.2  # PIL and torch's antialiased bicubic differ only at a few edge pixels


def test_same_size_images_are_resized_together_in_input_order() -> None:
    images = [picture((300, 200), seed) for seed in range(3)] + [picture((120, 260), 9)]
    tensors = [torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous() for image in images]
    batch = resize_and_crop(tensors, PREPROCESS)
    for row, tensor in zip(batch, tensors):
        assert torch.equal(row, resize_and_crop([tensor], PREPROCESS)[0])


def test_auto_decodes_with_pil_off_cuda_and_bad_settings_are_config_errors() -> None:
    cpu = torch.device("cpu")
    assert choose_image_decoder("auto", cpu) == "pil"
    assert choose_image_decoder("pil", cpu) == "pil"
    with pytest.raises(EncoderConfigError, match=r"image_decode 'nvjpeg': nvJPEG needs a CUDA device.*'pil'"):
        choose_image_decoder("nvjpeg", cpu)
    with pytest.raises(EncoderConfigError, match=r"image_decode 'gpu' is unknown.*'nvjpeg'"):
        choose_image_decoder("gpu", cpu)


def test_auto_on_cuda_without_nvjpeg_warns_and_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(nvjpeg_decode, "nvjpeg_unavailable", lambda device: "torchvision is not importable")
    with caplog.at_level(logging.WARNING, logger="fitmm_core.features.image_decode"):
        assert choose_image_decoder("auto", torch.device("cuda")) == "pil"
    assert "since torchvision is not importable" in caplog.text and "[nvjpeg]" in caplog.text


def test_asking_for_nvjpeg_on_the_cpu_fails_before_any_work(tmp_path: Path) -> None:
    from tests.items import write_items  # polars; imported here so the CUDA tests run without it

    folder = write_items(tmp_path / "data", images=[str(tmp_path / "missing.jpg")])
    with pytest.raises(EncoderConfigError, match="image_decode 'nvjpeg'"):
        encode_images(folder, load_efficientnet_lite0("cpu"), cache_dir=tmp_path / "cache", progress=False,
                      image_decode="nvjpeg")
    assert not (folder / "image_feat.npy").exists()


def pil_decode_jpegs(encoded: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """Stands in for nvJPEG on the CPU: JPEG bytes -> (3, H, W) RGB, RuntimeError if any fails."""
    images = []
    for tensor in encoded:
        try:
            with Image.open(io.BytesIO(tensor.numpy().tobytes()), formats=["JPEG"]) as image:
                rgb = np.array(image.convert("RGB"))
        except OSError as exc:
            raise RuntimeError(f"planted decoder: {exc}") from exc
        images.append(torch.from_numpy(rgb).permute(2, 0, 1).contiguous().to(device))
    return images


@pytest.fixture(params=["pil-stand-in", "torchvision-cpu"])
def jpeg_decoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which stand-in decodes the JPEGs that would go to nvJPEG."""
    if request.param == "pil-stand-in":
        monkeypatch.setattr(nvjpeg_decode, "decode_jpegs", pil_decode_jpegs)
    elif (missing := _torchvision_missing()) is not None:
        pytest.skip(missing)
    return request.param


def _decode_all(
    paths: list[Path], device: torch.device, batch_size: int
) -> tuple[dict[int, np.ndarray], dict[int, str]]:
    pixels: dict[int, np.ndarray] = {}
    failures: dict[int, str] = {}
    for batch in iter_nvjpeg_batches(iter_encoded_files(paths), PREPROCESS, batch_size, device):
        assert batch.pixels.device.type == device.type and batch.pixels.dtype == torch.uint8
        pixels.update(zip(batch.positions, batch.pixels.cpu().numpy()))
        failures.update(batch.failures)
    return pixels, failures


def _check_against_pil(paths: list[Path], unreadable: set[str], device: torch.device) -> None:
    pixels, failures = _decode_all(paths, device, batch_size=5)
    assert {paths[i].name for i in failures} == unreadable
    assert set(pixels) | set(failures) == set(range(len(paths)))
    for i, path in enumerate(paths):
        expected, reason = decode_image(path, PREPROCESS)
        if expected is None:
            assert failures[i] == reason
            continue
        # The CPU path decodes big JPEGs at a reduced DCT scale (PIL's draft mode); the GPU decodes in full.
        assert np.abs(pixels[i].astype(int) - expected.astype(int)).mean() < 2.0, path.name


def test_nvjpeg_path_decodes_and_rejects_the_same_files_as_pil(tmp_path: Path, jpeg_decoder: str) -> None:
    paths, unreadable = mixed_files(tmp_path)
    _check_against_pil(paths, unreadable, torch.device("cpu"))


def test_a_batch_nvjpeg_rejects_is_retried_file_by_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jpeg_decoder: str
) -> None:
    decode = nvjpeg_decode.decode_jpegs
    calls: list[int] = []

    def fails_on_batches(encoded: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
        calls.append(len(encoded))  # nvJPEG refuses a whole batch when one stream is bad
        if len(encoded) > 1:
            raise RuntimeError("planted batch failure")
        if encoded[0].numel() == (tmp_path / "tall.jpg").stat().st_size:
            raise RuntimeError("planted failure of one stream")
        return decode(encoded, device)

    monkeypatch.setattr(nvjpeg_decode, "decode_jpegs", fails_on_batches)
    paths, unreadable = mixed_files(tmp_path)
    pixels, failures = _decode_all(paths, torch.device("cpu"), batch_size=len(paths))
    assert {paths[i].name for i in failures} == unreadable and len(pixels) == len(paths) - len(unreadable)
    assert calls[0] == 6 and calls[1:] == [1] * 6  # tall.jpg then went to PIL, and decoded there
    tall = paths.index(tmp_path / "tall.jpg")
    assert np.array_equal(pixels[tall], decode_image(paths[tall], PREPROCESS)[0])


def test_stopping_early_leaves_no_thread_behind(tmp_path: Path, jpeg_decoder: str) -> None:
    import threading

    paths, _ = mixed_files(tmp_path)
    batches = iter_nvjpeg_batches(iter_encoded_files(paths * 4), PREPROCESS, 3, torch.device("cpu"))
    first = next(batches)
    batches.close()
    assert len(first.positions) + len(first.failures) == 3
    assert not [t for t in threading.enumerate() if t.name.startswith(("nvjpeg", "sha256"))]


@pytest.mark.gpu
@needs_nvjpeg
def test_nvjpeg_on_cuda_decodes_and_rejects_the_same_files_as_pil(tmp_path: Path) -> None:
    paths, unreadable = mixed_files(tmp_path)
    assert choose_image_decoder("auto", torch.device("cuda")) == "nvjpeg"
    _check_against_pil(paths, unreadable, torch.device("cuda"))


@pytest.mark.gpu
@needs_nvjpeg
def test_nvjpeg_features_match_the_pil_path_on_cuda(tmp_path: Path) -> None:
    paths, unreadable = mixed_files(tmp_path / "images")
    encoder = load_efficientnet_lite0("cuda")
    sources = [ImageSource(p) for p in paths]
    results = {}
    for decoder in ("pil", "nvjpeg"):
        with FeatureCache(tmp_path / f"cache-{decoder}") as cache:
            results[decoder] = embed_image_sources(sources, encoder, cache, 4, 2, False, decoder)
    assert results["nvjpeg"].decoder == "nvjpeg" and results["pil"].decoder == "pil"
    assert list(results["nvjpeg"].mask) == list(results["pil"].mask)
    assert (~results["nvjpeg"].mask).sum() == len(unreadable)
    a, b = results["pil"].matrix, results["nvjpeg"].matrix
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.97


@pytest.mark.gpu
@needs_nvjpeg
def test_nvjpeg_never_writes_memory_that_queued_kernels_still_read() -> None:
    """Blocks freed while a slow kernel queue still reads them must not receive decoded pixels."""
    device = torch.device("cuda")
    jpeg = torch.frombuffer(bytearray(jpeg_bytes(picture((640, 480), 1))), dtype=torch.uint8)
    shape = (3, 480, 640)  # the decoder's output: the freed blocks fit it exactly
    for _ in range(10):
        torch.cuda.synchronize()
        tensors = [torch.full(shape, value, dtype=torch.uint8, device=device) for value in range(1, 9)]
        torch.cuda._sleep(20_000_000)  # keeps the reductions below queued while the decode starts
        sums = [t.sum(dtype=torch.int64) for t in tensors]
        del tensors
        images = nvjpeg_decode.decode_jpegs([jpeg] * 8, device)
        torch.cuda.synchronize()
        assert [int(s) for s in sums] == [value * 3 * 480 * 640 for value in range(1, 9)]
        assert all(tuple(image.shape) == shape for image in images)


@pytest.fixture
def nvjpeg_on_cpu(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Let ``image_decode: nvjpeg`` run on the CPU with the PIL stand-in; returns the sizes of the
    decode calls."""
    calls: list[int] = []

    def counted(encoded: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
        calls.append(len(encoded))
        return pil_decode_jpegs(encoded, device)

    monkeypatch.setattr(nvjpeg_decode, "nvjpeg_unavailable", lambda device: None)
    monkeypatch.setattr(nvjpeg_decode, "decode_jpegs", counted)
    return calls


def test_encode_images_through_the_nvjpeg_path_matches_pil_and_is_incremental(
    tmp_path: Path, nvjpeg_on_cpu: list[int]
) -> None:
    from tests.items import write_items

    paths, unreadable = mixed_files(tmp_path / "images")
    references = [str(p) for p in paths] + [str(paths[0])]  # the last item shares the first item's file
    folder = write_items(tmp_path / "data", images=references)
    encoder = load_efficientnet_lite0("cpu")
    vectors, reports = {}, {}
    for decoder in ("pil", "nvjpeg"):
        reports[decoder] = encode_images(folder, encoder, cache_dir=tmp_path / f"cache-{decoder}", progress=False,
                                         image_decode=decoder, batch_size=4)
        vectors[decoder] = np.load(folder / "image_feat.npy")
    assert reports["nvjpeg"]["decoder"] == "nvjpeg" and sum(nvjpeg_on_cpu) == 6  # each JPEG nvJPEG suits, once
    assert reports["nvjpeg"]["n_missing"] == reports["pil"]["n_missing"] == len(unreadable)
    a, b = vectors["pil"], vectors["nvjpeg"]
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.99
    np.testing.assert_array_equal(b[-1], b[0])

    nvjpeg_on_cpu.clear()
    again = encode_images(folder, encoder, cache_dir=tmp_path / "cache-nvjpeg", progress=False, image_decode="nvjpeg")
    assert nvjpeg_on_cpu == [] and again["n_cached"] == len(references) - len(unreadable)
    (tmp_path / "images" / "tall.jpg").write_bytes(jpeg_bytes(picture((120, 260), 42)))
    refresh = encode_images(folder, encoder, cache_dir=tmp_path / "cache-nvjpeg", progress=False, image_decode="nvjpeg")
    assert nvjpeg_on_cpu == [1] and refresh["n_encoded"] == 1


def test_files_are_read_once_and_reading_overlaps_decoding_on_the_nvjpeg_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nvjpeg_on_cpu: list[int]
) -> None:
    events: list[str] = []
    read = nvjpeg_decode.read_encoded_file
    decode = nvjpeg_decode.decode_jpegs
    monkeypatch.setattr(image_sources, "file_sha256", lambda path: events.append("separate hash") or "")
    monkeypatch.setattr(nvjpeg_decode, "read_encoded_file", lambda i, path: events.append("read") or read(i, path))
    monkeypatch.setattr(nvjpeg_decode, "decode_jpegs", lambda t, d: events.append("decode") or decode(t, d))
    monkeypatch.setattr(image_plan, "LOOKUP_CHUNK", 4)
    monkeypatch.setattr(nvjpeg_decode, "READ_CHUNK", 2)
    (tmp_path / "images").mkdir()
    paths = []
    for seed in range(40):
        paths.append(tmp_path / "images" / f"{seed}.jpg")
        paths[-1].write_bytes(jpeg_bytes(picture((80, 80), seed)))
    encoder = load_efficientnet_lite0("cpu")
    with FeatureCache(tmp_path / "cache") as cache:
        result = embed_image_sources([ImageSource(p) for p in paths], encoder, cache, 4, progress=False,
                                     decoder="nvjpeg")
    assert result.mask.all() and events.count("read") == 40 and events.count("decode") == 10
    assert "separate hash" not in events  # the cache key is the hash of the bytes read for decoding
    assert events.index("decode") < len(events) - 1 - events[::-1].index("read")  # decoding began before reading ended


@pytest.mark.parametrize("decoder", ["pil", "nvjpeg"])
def test_a_file_gone_before_encoding_is_reported_not_raised(
    tmp_path: Path, decoder: str, nvjpeg_on_cpu: list[int]
) -> None:
    paths, _ = mixed_files(tmp_path / "images")
    sources = [ImageSource(p) for p in paths if p.exists()]
    (tmp_path / "images" / "b.jpg").unlink()  # after the sources were resolved
    with FeatureCache(tmp_path / "cache") as cache:
        result = embed_image_sources(sources, load_efficientnet_lite0("cpu"), cache, 4, 0, False, decoder)
    gone = [i for i, source in enumerate(sources) if source.path.name == "b.jpg"][0]
    kind, detail = result.failures[gone]
    assert kind == "undecodable" and "b.jpg" in detail and "No such file" in detail
    assert not result.mask[gone] and result.mask.sum() == len(sources) - 4  # b.jpg and the 3 broken files


@pytest.mark.skipif(not GIFT_CARD_IMAGES.exists(), reason="shared Amazon 2018 Gift Cards images not present")
def test_real_product_jpegs_all_go_to_nvjpeg_and_match_pil(jpeg_decoder: str) -> None:
    """Every real product photo (baseline JPEGs) suits nvJPEG; decoded at full resolution and resized
    on the device they match PIL's full-resolution resize closely. (The CPU path decodes big JPEGs at
    half scale first, PIL's draft mode: a median difference of ~0.1 grey levels, a few on fine print.)"""
    preprocess = Preprocess(224, IMAGENET_MEAN, IMAGENET_STD)
    paths = sorted(GIFT_CARD_IMAGES.glob("*.jpg"))[:96]
    assert paths and all(read_encoded_file(i, p).suits_nvjpeg() for i, p in enumerate(paths))
    pixels: dict[int, np.ndarray] = {}
    for batch in iter_nvjpeg_batches(iter_encoded_files(paths), preprocess, 32, torch.device("cpu")):
        assert not batch.failures
        pixels.update(zip(batch.positions, batch.pixels.numpy()))
    assert len(pixels) == len(paths)
    for i, path in enumerate(paths):
        with Image.open(path) as image:
            full_resolution = preprocess.to_pixels(image.convert("RGB"))  # converted: no draft mode
        assert np.abs(pixels[i].astype(int) - full_resolution.astype(int)).mean() < 0.5, path.name
