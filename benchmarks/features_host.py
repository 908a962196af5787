"""The host's share of the nvJPEG image path, with the GPU simulated: how many images/s the CPU side
(reading and hashing files, cache lookups, batching, cache writes) can feed to a GPU.

The GPU's two jobs are replaced by waits that release the GIL, as waiting on a device does: nvJPEG
decoding takes ``1 / --decode-rate`` s per image and the encoder ``1 / --encoder-rate`` s (default:
the ViT-B/32 CLIP tower's encoder-only rate on an H200 in ANCHORS.md). Everything else is the real
code of ``embed_image_sources(decoder="nvjpeg")`` on real JPEG files and a real cache. Runs on any
machine; on a GPU host it tells whether the host can keep up before the GPU is involved.

    python benchmarks/features_host.py --n-images 8192
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from features import draw_images  # the sibling benchmark's data generator
from fitmm_core.features import nvjpeg_decode
from fitmm_core.features.cache import FeatureCache
from fitmm_core.features.encode import embed_image_sources
from fitmm_core.features.image import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from fitmm_core.features.image_sources import ImageSource, hash_files

H200_CLIP_ENCODER_ONLY = 29_215.0  # images/s, ANCHORS.md


class SimulatedEncoder:
    """An image encoder that takes ``1 / rate`` s per image and returns zero vectors."""

    identity = "simulated-encoder"
    dim = 512
    device = torch.device("cpu")
    preprocess = Preprocess(224, IMAGENET_MEAN, IMAGENET_STD)

    def __init__(self, rate: float) -> None:
        self.seconds_per_image = 1.0 / rate

    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        time.sleep(self.seconds_per_image * len(pixels))
        return np.zeros((len(pixels), self.dim), dtype=np.float32)


def simulate_nvjpeg(rate: float) -> None:
    """Make the nvJPEG path run on the CPU with a decoder that takes ``1 / rate`` s per image."""
    image = torch.zeros((3, 1, 1), dtype=torch.uint8)

    def decode(encoded: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
        time.sleep(len(encoded) / rate)
        return [image] * len(encoded)

    nvjpeg_decode.decode_jpegs = decode
    nvjpeg_decode.resize_and_crop = lambda images, preprocess: torch.zeros((len(images), 1, 1, 3), dtype=torch.uint8)
    nvjpeg_decode.nvjpeg_unavailable = lambda device: None


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_path(paths: list[Path], encoder_rate: float, batch_size: int, scratch: Path) -> dict:
    """One encode of ``paths`` into an empty cache; images/s and the host's CPU per image."""
    sources = [ImageSource(path) for path in paths]
    with FeatureCache(scratch) as cache:
        started, cpu = time.perf_counter(), cpu_seconds()
        result = embed_image_sources(sources, SimulatedEncoder(encoder_rate), cache, batch_size, progress=False,
                                     decoder="nvjpeg")
        seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    assert result.mask.all(), "every drawn JPEG decodes"
    return {"images_per_s": round(len(paths) / seconds, 1), "host_cpu_us_per_image": round(1e6 * cpu / len(paths), 1),
            "host_cores_busy": round(cpu / seconds, 2)}


def per_item_costs(paths: list[Path], scratch: Path, batch_size: int) -> dict:
    """Single-threaded costs: reading and hashing one file, and storing one 512-d vector."""
    started = time.perf_counter()
    files = nvjpeg_decode.read_encoded_files(list(enumerate(paths)))
    read = time.perf_counter() - started
    started = time.perf_counter()
    hash_files(paths, threads=1)
    hashed = time.perf_counter() - started
    vectors = np.random.default_rng(0).random((len(files), 512), dtype=np.float32)
    with FeatureCache(scratch) as cache:
        started = time.perf_counter()
        for start in range(0, len(files), batch_size):
            part = files[start : start + batch_size]
            cache.put_many("bench", {file.sha256: vector for file, vector in zip(part, vectors[start:])})
        written = time.perf_counter() - started
    n = len(paths)
    return {"read_and_hash_us": round(1e6 * read / n, 1), "hash_only_us": round(1e6 * hashed / n, 1),
            "cache_write_us_per_vector": round(1e6 * written / n, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-images", type=int, default=8192)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--image-px", type=int, default=500, help="side of the drawn JPEGs")
    parser.add_argument("--decode-rate", type=float, default=4 * H200_CLIP_ENCODER_ONLY,
                        help="simulated nvJPEG images/s (default: 4x the encoder)")
    parser.add_argument("--encoder-rate", type=float, default=H200_CLIP_ENCODER_ONLY, help="simulated encoder images/s")
    args = parser.parse_args()
    simulate_nvjpeg(args.decode_rate)
    print(f"{os.cpu_count()} CPU cores, {args.n_images} JPEGs of {args.image_px} px, batch {args.batch_size}")
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        (scratch / "images").mkdir()
        paths = draw_images(scratch / "images", args.n_images, args.image_px)
        costs = per_item_costs(paths, scratch / "cost-cache", args.batch_size)
        print(f"one thread: read + hash + header {costs['read_and_hash_us']} us/file (hash alone "
              f"{costs['hash_only_us']}), cache write {costs['cache_write_us_per_vector']} us per 512-d vector")
        rows = {}
        for name, rate in (("host ceiling (instant GPU)", 1e12), ("with the simulated GPU", args.encoder_rate)):
            run_path(paths[: args.batch_size], rate, args.batch_size, scratch / f"warm-{name}")  # threads, imports
            row = run_path(paths, rate, args.batch_size, scratch / f"cache-{name}")
            rows[name] = row
            share = f", {row['images_per_s'] / args.encoder_rate:.0%} of the encoder's {args.encoder_rate:,.0f}" \
                if rate == args.encoder_rate else ""
            print(f"{name:<28} {row['images_per_s']:>10,.0f} images/s{share}; host CPU "
                  f"{row['host_cpu_us_per_image']} us/image, {row['host_cores_busy']} cores busy")
    print(json.dumps({"cores": os.cpu_count(), "per_item": costs, "runs": rows,
                      "encoder_rate": args.encoder_rate, "decode_rate": args.decode_rate}))


if __name__ == "__main__":
    main()
