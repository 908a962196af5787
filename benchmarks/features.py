"""Throughput of the feature encoders on this machine: texts/s and images/s.

For each image encoder four figures show where the time goes: the whole path (hashing the files for
the cache, decoding, encoder, cache writes), hashing alone, decoding alone, and the encoder alone on
pixels already on the device; the last one is the whole path's share of the encoder-only rate.
Decoding is PIL in worker processes or nvJPEG on the GPU (``--image-decode``; ``auto`` takes nvJPEG
on CUDA when torchvision is installed). On CUDA a ViT-B/32-shaped CLIP with random weights is
measured too (the default encoder for real datasets, without needing its weights).

    python benchmarks/features.py --n-images 64 --device cpu --batch-size 32
    python benchmarks/features.py --n-images 16384 --device cuda --batch-size 512
"""

from __future__ import annotations

import argparse
import os
import json
import random
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from fitmm_core.features.cache import FeatureCache
from fitmm_core.device import resolve_device
from fitmm_core.features.encode import embed_image_sources, embed_texts
from fitmm_core.features.image import TorchImageEncoder, clip_encoder_from_model, load_efficientnet_lite0
from fitmm_core.features.image_decode import (
    IMAGE_DECODERS,
    choose_image_decoder,
    default_decode_workers,
    iter_decoded_batches,
    iter_image_batches,
)
from fitmm_core.features.image_sources import ImageSource, hash_files
from fitmm_core.features.text import SentenceTransformerEncoder, bundled_minilm_folder

WORDS = ("soft cotton shirt blue red wireless charger kitchen knife steel garden hose baby stroller "
         "lightweight waterproof jacket running shoes leather wallet ceramic mug gift card").split()


def draw_image(path: Path, px: int, seed: str) -> Path:
    """A ``px``×``px`` JPEG with random shapes, about the size of a product photo."""
    rng = random.Random(seed)
    image = Image.new("RGB", (px, px), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        box = sorted(rng.sample(range(px), 2)), sorted(rng.sample(range(px), 2))
        colour = tuple(rng.randrange(256) for _ in range(3))
        draw.ellipse((box[0][0], box[1][0], box[0][1], box[1][1]), fill=colour)
    image.save(path, "JPEG", quality=90)
    return path


def draw_images(folder: Path, n: int, px: int, seed: int = 0) -> list[Path]:
    """``n`` distinct JPEGs (distinct, so that the cache cannot fold them; image ``i`` of ``seed``
    is seeded by ``"seed:i"``), drawn in parallel when there are many."""
    paths = [folder / f"{i:06d}.jpg" for i in range(n)]
    seeds = [f"{seed}:{i}" for i in range(n)]
    if n < 64:
        return [draw_image(path, px, s) for path, s in zip(paths, seeds)]
    with ProcessPoolExecutor(max(1, min(16, os.cpu_count() or 1))) as pool:
        return list(pool.map(draw_image, paths, [px] * n, seeds, chunksize=64))


def product_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60))) + f" #{i}" for i in range(n)]


def timed(fn) -> tuple[object, float]:
    started = time.perf_counter()
    result = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return result, time.perf_counter() - started


def bench_text(n: int, device: torch.device, batch_size: int, scratch: Path) -> dict:
    encoder = SentenceTransformerEncoder(device=device)
    texts = product_texts(n)
    encoder.encode(texts, batch_size)  # warm-up over every sequence length that will be timed
    _, encoder_only = timed(lambda: encoder.encode(texts, batch_size))
    with FeatureCache(scratch / "text-cache") as cache:
        _, whole = timed(lambda: embed_texts(texts, encoder, cache, batch_size, progress=False))
    return {"encoder": encoder.identity, "n": n, "texts_per_s": round(n / whole, 1),
            "encoder_only_texts_per_s": round(n / encoder_only, 1)}


def bench_images(
    encoder: TorchImageEncoder, paths: list[Path], batch_size: int, workers: int, decoder: str, scratch: Path
) -> dict:
    n = len(paths)
    sources = [ImageSource(p) for p in paths]
    warm = next(iter(iter_decoded_batches(paths[:batch_size], encoder.preprocess, batch_size, 0)))
    encoder.encode_pixels(warm.pixels)
    with FeatureCache(scratch / "warm-up-cache") as cache:  # one-off costs: nvJPEG state, CUDA streams
        embed_image_sources(sources[:batch_size], encoder, cache, batch_size, workers, False, decoder)

    def decode_only() -> int:
        batches = iter_image_batches(paths, encoder.preprocess, batch_size, encoder.device, decoder, workers)
        return sum(len(b.positions) for b in batches)

    pixels = warm.pixels.repeat((n + len(warm.positions) - 1) // len(warm.positions), 1, 1, 1)[:n]
    pixels = pixels.to(encoder.device)  # the compute bound: no decoding, no host-to-device copy

    def encoder_only() -> None:
        for start in range(0, n, batch_size):
            encoder.encode_pixels(pixels[start : start + batch_size])

    _, hash_seconds = timed(lambda: hash_files(paths))
    _, decode_seconds = timed(decode_only)
    _, encoder_seconds = timed(encoder_only)
    cache_dir = scratch / f"cache-{encoder.identity.replace('/', '_').replace(':', '_')}"
    with FeatureCache(cache_dir) as cache:
        _, whole = timed(lambda: embed_image_sources(sources, encoder, cache, batch_size, workers, False, decoder))
    return {"encoder": encoder.identity, "n": n, "decoder": decoder, "decode_workers": workers,
            "images_per_s": round(n / whole, 1), "hash_only_images_per_s": round(n / hash_seconds, 1),
            "decode_only_images_per_s": round(n / decode_seconds, 1),
            "encoder_only_images_per_s": round(n / encoder_seconds, 1),
            "share_of_encoder_only": round(encoder_seconds / whole, 3)}


def random_vit_b32_clip(device: torch.device) -> TorchImageEncoder:
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(
        vision_config={"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                       "num_attention_heads": 12, "patch_size": 32, "image_size": 224},
        text_config={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "vocab_size": 1000, "max_position_embeddings": 77, "bos_token_id": 0, "eos_token_id": 1,
                     "pad_token_id": 1},
        projection_dim=512,
    )
    return clip_encoder_from_model(CLIPModel(config).eval(), "clip:random-vit-b32", device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-images", type=int, default=256)
    parser.add_argument("--n-texts", type=int, default=None, help="default: 4 x --n-images")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--decode-workers", type=int, default=default_decode_workers())
    parser.add_argument("--image-px", type=int, default=500, help="side of the drawn JPEGs")
    parser.add_argument("--image-decode", default="auto", choices=IMAGE_DECODERS)
    parser.add_argument("--clip", action="store_true", help="also measure the random ViT-B/32 CLIP off CUDA")
    args = parser.parse_args()
    device = resolve_device(args.device)
    decoder = choose_image_decoder(args.image_decode, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"batch {args.batch_size}, decoder {decoder}, decode workers {args.decode_workers}, {args.image_px} px JPEGs")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        if bundled_minilm_folder() is not None:
            row = bench_text(args.n_texts or 4 * args.n_images, device, args.batch_size, scratch)
            results.append(row)
            print(f"text  {row['encoder']:<52} {row['texts_per_s']:>9.1f} texts/s   "
                  f"(encoder only {row['encoder_only_texts_per_s']:.1f})")
        (scratch / "images").mkdir()
        paths = draw_images(scratch / "images", args.n_images, args.image_px)
        encoders = [load_efficientnet_lite0(device)]
        if device.type == "cuda" or args.clip:
            encoders.append(random_vit_b32_clip(device))
        for encoder in encoders:
            row = bench_images(encoder, paths, args.batch_size, args.decode_workers, decoder, scratch)
            results.append(row)
            print(f"image {row['encoder']:<52} {row['images_per_s']:>9.1f} images/s  "
                  f"(hash only {row['hash_only_images_per_s']:.1f}, decode only {row['decode_only_images_per_s']:.1f}, "
                  f"encoder only {row['encoder_only_images_per_s']:.1f}; "
                  f"{100 * row['share_of_encoder_only']:.0f}% of encoder only)")
            del encoder
    print(json.dumps({"device": name, "batch_size": args.batch_size, "results": results}))


if __name__ == "__main__":
    main()
