"""Image features: preprocessing, EfficientNet-Lite0, a tiny CLIP end to end, missing images, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from fitmm_core.data.mmrec_format import read_manifest
from fitmm_core.features.encode import encode_images
from fitmm_core.features.errors import EncoderConfigError
from fitmm_core.features.image import (
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocess,
    TorchImageEncoder,
    load_efficientnet_lite0,
    load_image_encoder,
)
from tests.items import write_items
from tests.shared_data import GIFT_CARD_IMAGES

COLOURS = [(220, 30, 30), (30, 160, 60), (40, 60, 210), (240, 200, 20)]


def draw_jpeg(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (96, 64)) -> Path:
    image = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.ellipse((8, 8, size[0] - 8, size[1] - 8), fill=colour)
    draw.rectangle((0, 0, size[0] // 4, size[1] // 4), fill=tuple(255 - c for c in colour))
    image.save(path, "JPEG", quality=92)
    return path


@pytest.fixture(scope="module")
def efficientnet() -> TorchImageEncoder:
    return load_efficientnet_lite0("cpu")


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "vocab_size": 64, "max_position_embeddings": 16, "bos_token_id": 0, "eos_token_id": 1,
                     "pad_token_id": 1},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=24,
    )
    folder = tmp_path_factory.mktemp("tiny-clip")
    CLIPModel(config).save_pretrained(folder)
    return folder


def test_preprocess_resizes_shortest_side_and_centre_crops() -> None:
    image = Image.new("RGB", (60, 20), (255, 0, 0))
    ImageDraw.Draw(image).rectangle((30, 0, 59, 19), fill=(0, 0, 255))
    pixels = Preprocess(10, IMAGENET_MEAN, IMAGENET_STD).to_pixels(image)
    assert pixels.shape == (10, 10, 3) and pixels.dtype == np.uint8
    assert pixels[5, 0].tolist() == [255, 0, 0] and pixels[5, 9].tolist() == [0, 0, 255]


def test_preprocess_puts_transparent_pixels_on_white() -> None:
    image = Image.new("RGBA", (8, 8), (10, 20, 30, 0))
    pixels = Preprocess(4, CLIP_MEAN, CLIP_STD).to_pixels(image)
    assert (pixels == 255).all()


def test_normalise_is_channelwise_mean_and_std() -> None:
    preprocess = Preprocess(2, IMAGENET_MEAN, IMAGENET_STD)
    pixels = torch.full((1, 2, 2, 3), 255, dtype=torch.uint8)
    x = preprocess.normalise(pixels)
    assert x.shape == (1, 3, 2, 2)
    expected = [(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]
    torch.testing.assert_close(x[0, :, 0, 0], torch.tensor(expected))


def test_efficientnet_gives_pooled_1280_d_vectors(tmp_path: Path, efficientnet: TorchImageEncoder) -> None:
    images = [Image.open(draw_jpeg(tmp_path / f"{i}.jpg", colour)) for i, colour in enumerate(COLOURS)]
    vectors = efficientnet.encode(images)
    assert vectors.shape == (4, 1280) and vectors.dtype == np.float32 and efficientnet.dim == 1280
    assert vectors.min() >= 0.0 and vectors.max() <= 6.0  # the mean of ReLU6 activations
    np.testing.assert_allclose(efficientnet.encode(images[1:2])[0], vectors[1], atol=1e-4)
    assert np.abs(vectors[0] - vectors[2]).max() > 0.1
    assert efficientnet.identity == "efficientnet-lite0:imagenet-57934424:224px:avgpool"


def test_missing_images_get_the_mean_vector_and_mask(tmp_path: Path, efficientnet: TorchImageEncoder) -> None:
    images = [str(draw_jpeg(tmp_path / f"{i}.jpg", c)) for i, c in enumerate(COLOURS[:3])]
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    references = [images[0], None, images[1], str(tmp_path / "gone.jpg"), "../broken.jpg", images[2]]
    folder = write_items(tmp_path / "ds", images=references)
    report = encode_images(folder, efficientnet, cache_dir=tmp_path / "cache", progress=False, decode_workers=0)
    matrix = np.load(folder / "image_feat.npy")
    mask = np.load(folder / "image_mask.npy")
    assert mask.dtype == bool and mask.tolist() == [True, False, True, False, False, True]
    real = efficientnet.encode([Image.open(p) for p in images])
    np.testing.assert_allclose(matrix[mask], real, atol=1e-4)
    for row in np.flatnonzero(~mask):
        np.testing.assert_allclose(matrix[row], real.mean(axis=0), atol=1e-4)
    assert report["n_missing"] == 3 and report["n_encoded"] == 3 and report["missing_share"] == 0.5
    assert report["missing_reasons"] == {"no image": 1, "file not found": 1, "undecodable": 1}
    entry = read_manifest(folder)["features"]["image"]
    assert (entry["dim"], entry["n_missing"], entry["mask_file"]) == (1280, 3, "image_mask.npy")


def test_worker_processes_decode_the_same_pixels(tmp_path: Path, efficientnet: TorchImageEncoder) -> None:
    images = [str(draw_jpeg(tmp_path / f"{i}.jpg", c, (80 + 10 * i, 64))) for i, c in enumerate(COLOURS)]
    folder = write_items(tmp_path / "ds", images=images)
    encode_images(folder, efficientnet, cache_dir=tmp_path / "inline", progress=False, decode_workers=0, batch_size=3)
    inline = np.load(folder / "image_feat.npy")
    encode_images(folder, efficientnet, cache_dir=tmp_path / "workers", progress=False, decode_workers=2, batch_size=3)
    np.testing.assert_allclose(np.load(folder / "image_feat.npy"), inline, atol=1e-5)


def test_tiny_clip_end_to_end(tmp_path: Path, tiny_clip_dir: Path) -> None:
    from transformers import CLIPModel

    images = [str(draw_jpeg(tmp_path / f"{i}.jpg", c)) for i, c in enumerate(COLOURS)]
    folder = write_items(tmp_path / "ds", images=images + [None])
    report = encode_images(folder, f"clip:{tiny_clip_dir}", device="cpu", cache_dir=tmp_path / "cache", progress=False)
    matrix = np.load(folder / "image_feat.npy")
    assert matrix.shape == (5, 24) and report["dim"] == 24 and report["n_missing"] == 1
    assert report["encoder"].startswith(f"clip:{tiny_clip_dir.name}#") and report["encoder"].endswith(":32px:proj-l2")
    np.testing.assert_allclose(np.linalg.norm(matrix[:4], axis=1), 1.0, atol=1e-5)
    model = CLIPModel.from_pretrained(tiny_clip_dir).eval()
    preprocess = Preprocess(32, CLIP_MEAN, CLIP_STD)
    pixels = torch.from_numpy(np.stack([preprocess.to_pixels(Image.open(p)) for p in images]))
    with torch.no_grad():
        embeds = model.get_image_features(pixel_values=preprocess.normalise(pixels)).pooler_output
    expected = torch.nn.functional.normalize(embeds, dim=-1)
    np.testing.assert_allclose(matrix[:4], expected.numpy(), atol=1e-5)


def test_unknown_encoder_name_is_a_config_error() -> None:
    with pytest.raises(EncoderConfigError, match=r"'resnet50' is unknown.*efficientnet-lite0.*clip:"):
        load_image_encoder("resnet50", "cpu")
    with pytest.raises(EncoderConfigError, match="is unknown"):
        load_image_encoder("clip:", "cpu")


def test_offline_clip_id_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache("openai/clip-vit-base-patch32", "config.json"), str):
        pytest.skip("the real CLIP weights are in the local Hugging Face cache")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    expected = r"clip:openai/clip-vit-base-patch32.*not in the local Hugging Face cache.*hf download"
    with pytest.raises(EncoderConfigError, match=expected):
        load_image_encoder("clip:openai/clip-vit-base-patch32", "cpu")


def test_clip_folder_that_does_not_exist_or_is_not_clip(tmp_path: Path) -> None:
    with pytest.raises(EncoderConfigError, match="does not exist"):
        load_image_encoder(f"clip:{tmp_path / 'nowhere'}", "cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EncoderConfigError, match="not a CLIP model folder"):
        load_image_encoder(f"clip:{tmp_path / 'empty'}", "cpu")


def test_no_usable_image_is_a_config_error(tmp_path: Path, efficientnet: TorchImageEncoder) -> None:
    folder = write_items(tmp_path / "ds", images=[None, str(tmp_path / "gone.jpg")])
    with pytest.raises(EncoderConfigError, match=r"none of the 2 items.*has a usable image.*'no image': 1"):
        encode_images(folder, efficientnet, cache_dir=tmp_path / "cache", progress=False)
    assert not (folder / "image_feat.npy").exists()


@pytest.mark.skipif(not GIFT_CARD_IMAGES.exists(), reason="shared Amazon 2018 Gift Cards images not present")
@pytest.mark.parametrize("encoder_name", ["efficientnet", "tiny_clip"])
def test_real_gift_card_images_through_both_encoders(
    tmp_path: Path, encoder_name: str, efficientnet: TorchImageEncoder, tiny_clip_dir: Path
) -> None:
    photos = sorted(GIFT_CARD_IMAGES.glob("*.jpg"))[:12]
    folder = write_items(tmp_path / "gift", images=[str(p) for p in photos])
    encoder = efficientnet if encoder_name == "efficientnet" else f"clip:{tiny_clip_dir}"
    report = encode_images(folder, encoder, device="cpu", cache_dir=tmp_path / "cache", progress=False)
    matrix = np.load(folder / "image_feat.npy")
    assert report["n_missing"] == 0 and np.load(folder / "image_mask.npy").all()
    assert matrix.shape == (len(photos), 1280 if encoder_name == "efficientnet" else 24)
    distinct_photos = len({p.read_bytes() for p in photos})  # some gift cards share a picture
    assert np.isfinite(matrix).all() and np.unique(matrix.round(5), axis=0).shape[0] == distinct_photos
