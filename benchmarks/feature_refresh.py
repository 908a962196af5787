"""Cost of refreshing a dataset's features against a full encode (the feature cache at work).

Writes a folder of ``--n-items`` items (product-like texts and drawn JPEGs), encodes it with a fresh
cache (bundled MiniLM for text, EfficientNet-Lite0 for images), then changes ``--changed-share`` of
the items (new text for half of them, new image bytes for the other half) and encodes it again on
the same cache. For each modality it prints the full and refresh seconds, their ratio with and
without model loading, and how many items were encoded vs taken from the cache. The target is a
refresh of 1% of the items costing at most 5% of a full encode.

    python benchmarks/feature_refresh.py --n-items 2000 --device cpu
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import polars as pl
import torch

from features import draw_images, product_texts  # the sibling benchmark's data generators
from fitmm_core.device import resolve_device
from fitmm_core.features.encode import encode_images, encode_text

TARGET_RATIO = 0.05


def write_items(folder: Path, texts: list[str], images: list[str]) -> None:
    pl.DataFrame(
        {"itemID": list(range(len(texts))), "text": texts, "image": images},
        schema={"itemID": pl.Int64, "text": pl.String, "image": pl.String},
    ).write_parquet(folder / "items.parquet")


def change_items(folder: Path, texts: list[str], images: list[str], n_changed: int, px: int, seed: int) -> list[str]:
    """Give ``n_changed`` random items new content: the first half new texts, the rest new image
    files (redrawn with another seed, same path); rewrites ``items.parquet``; returns the texts."""
    picked = random.Random(seed).sample(range(len(texts)), n_changed)
    new_texts = list(texts)
    for i in picked[: n_changed // 2]:
        new_texts[i] = f"refreshed listing: {texts[i]}"
    scratch = folder / "redrawn"
    scratch.mkdir()
    for j, i in enumerate(picked[n_changed // 2 :]):
        redrawn = draw_images(scratch, 1, px, seed=seed + 1 + j)[0]
        redrawn.replace(folder / images[i])
    scratch.rmdir()
    write_items(folder, new_texts, images)
    return new_texts


def timed_encode(encode, folder: Path, device: str, batch_size: int, cache_dir: Path) -> dict:
    started = time.perf_counter()
    report = encode(folder, device=device, batch_size=batch_size, cache_dir=cache_dir, progress=False)
    report["wall_seconds"] = round(time.perf_counter() - started, 3)
    return report


def compare(modality: str, full: dict, refresh: dict) -> dict:
    with_load = (refresh["seconds"] + refresh["load_seconds"]) / (full["seconds"] + full["load_seconds"])
    work_only = refresh["seconds"] / full["seconds"]
    return {
        "modality": modality,
        "full_seconds": full["seconds"], "full_load_seconds": full["load_seconds"],
        "refresh_seconds": refresh["seconds"], "refresh_load_seconds": refresh["load_seconds"],
        "ratio_work": round(work_only, 4), "ratio_with_load": round(with_load, 4),
        "full_encoded": full["n_encoded"], "refresh_encoded": refresh["n_encoded"],
        "refresh_cached": refresh["n_cached"], "meets_target_work": work_only <= TARGET_RATIO,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-items", type=int, default=2000)
    parser.add_argument("--changed-share", type=float, default=0.01)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-px", type=int, default=500, help="side of the drawn JPEGs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not 0 < args.changed_share <= 1:
        parser.error(f"--changed-share={args.changed_share}; must be in (0, 1]")
    n_changed = max(2, round(args.n_items * args.changed_share))
    device = resolve_device(args.device)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, {args.n_items} items, "
          f"{n_changed} changed ({n_changed // 2} texts, {n_changed - n_changed // 2} images), {args.image_px} px JPEGs")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder, cache_dir = Path(tmp) / "dataset", Path(tmp) / "cache"
        (folder / "images").mkdir(parents=True)
        paths = draw_images(folder / "images", args.n_items, args.image_px, args.seed)
        images = [p.relative_to(folder).as_posix() for p in paths]
        texts = product_texts(args.n_items, args.seed)
        write_items(folder, texts, images)
        full = {m: timed_encode(fn, folder, args.device, args.batch_size, cache_dir)
                for m, fn in (("text", encode_text), ("image", encode_images))}
        change_items(folder, texts, images, n_changed, args.image_px, args.seed + 1000)
        refresh = {m: timed_encode(fn, folder, args.device, args.batch_size, cache_dir)
                   for m, fn in (("text", encode_text), ("image", encode_images))}
    for modality in ("text", "image"):
        row = compare(modality, full[modality], refresh[modality])
        rows.append(row)
        print(f"{modality:<5} full {row['full_seconds']:8.2f} s (+{row['full_load_seconds']:.2f} s load)   "
              f"refresh {row['refresh_seconds']:6.2f} s (+{row['refresh_load_seconds']:.2f} s load)   "
              f"ratio {row['ratio_work']:.2%} work, {row['ratio_with_load']:.2%} with load   "
              f"refresh encoded {row['refresh_encoded']}, cached {row['refresh_cached']}")
    print(json.dumps({"device": str(device), "n_items": args.n_items, "n_changed": n_changed, "results": rows,
                      "full": full, "refresh": refresh}))


if __name__ == "__main__":
    main()
