"""Training and evaluation speed of registry models on random MMRec-shaped data.

Generates a dataset in memory shaped like Amazon Baby (19,445 users, 7,050 items, 160,792
interactions, 4096-d image and 384-d text features, per-user 8:1:1 split; ``--scale`` multiplies
every one of these numbers), trains each model for ``--epochs`` epochs with the project's trainer and
reports the last epoch's train and validation seconds and the peak memory: CUDA
``max_memory_allocated`` on a GPU, the process's peak RSS on the CPU (each model runs in a fresh
process, so the figure is its own; it includes the interpreter and the generated data). A model
without parameters (mostpop) is evaluated once, so its eval figure includes the first call's warm-up.

    python benchmarks/train_speed.py --models fitmm,lightgcn --epochs 2 --device auto --scale 0.1

Prints a markdown table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fitmm_core.data.mmrec_format import MMRecData  # noqa: E402
from fitmm_core.models.base import ModelInputs  # noqa: E402
from fitmm_core.device import resolve_device  # noqa: E402
from fitmm_core.training.trainer import TrainConfig, fit  # noqa: E402

BABY_SHAPE = {"n_users": 19_445, "n_items": 7_050, "n_interactions": 160_792, "image_dim": 4096, "text_dim": 384}
MIN_PER_USER = 5


def scaled_shape(scale: float) -> dict[str, int]:
    """Amazon Baby's sizes times ``scale`` (at least 5 items per user and 16 feature dimensions)."""
    if not 0 < scale <= 10:
        raise ValueError(f"--scale must be in (0, 10]; got {scale}")
    shape = {key: max(1, round(value * scale)) for key, value in BABY_SHAPE.items()}
    shape["image_dim"], shape["text_dim"] = max(16, shape["image_dim"]), max(16, shape["text_dim"])
    shape["n_items"] = max(shape["n_items"], 4 * MIN_PER_USER)
    shape["n_interactions"] = max(shape["n_interactions"], MIN_PER_USER * shape["n_users"])
    return shape


def synthetic_mmrec(n_users: int, n_items: int, n_interactions: int, image_dim: int, text_dim: int,
                    seed: int = 0) -> MMRecData:
    """Random interactions with long-tailed user activity and item popularity, split 8:1:1 per user."""
    rng = np.random.default_rng(seed)
    activity = rng.pareto(1.5, n_users) + 1.0
    per_user = MIN_PER_USER + rng.multinomial(n_interactions - MIN_PER_USER * n_users, activity / activity.sum())
    per_user = np.minimum(per_user, n_items // 2)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    popularity = rng.permutation(popularity / popularity.sum())
    keys = np.zeros(0, dtype=np.int64)
    missing = per_user
    while missing.any():
        users = np.repeat(np.arange(n_users), missing)
        keys = np.unique(np.concatenate([keys, users * n_items + rng.choice(n_items, size=len(users), p=popularity)]))
        have = np.bincount(keys // n_items, minlength=n_users)
        missing = per_user - have  # duplicates collapsed by np.unique are drawn again
    order = rng.permutation(len(keys))
    shuffled = keys[order][np.argsort(keys[order] // n_items, kind="stable")]
    users, items = shuffled // n_items, shuffled % n_items
    rank = np.arange(len(users)) - np.searchsorted(users, users)
    held_out = np.maximum(1, np.round(0.1 * per_user[users])).astype(np.int64)
    label = np.where(rank < held_out, 2, np.where(rank < 2 * held_out, 1, 0))
    pairs = np.stack([users, items], axis=1)
    features = {
        "image": rng.standard_normal((n_items, image_dim), dtype=np.float32),
        "text": rng.standard_normal((n_items, text_dim), dtype=np.float32),
    }
    return MMRecData("synthetic", n_users, n_items, pairs[label == 0], pairs[label == 1], pairs[label == 2], features)


def measure_model(name: str, shape: dict[str, int], epochs: int, device_spec: str, batch_size: int,
                  seed: int, amp: bool) -> dict[str, Any]:
    """Train ``name`` for ``epochs`` epochs in this process; timings of the last epoch and peak memory."""
    from fitmm_core.models import MODELS, build_model

    device = resolve_device(device_spec)
    data = synthetic_mmrec(**shape, seed=seed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(seed)
    inputs = ModelInputs(data.n_users, data.n_items, data.train, data.features)
    model = build_model(name, inputs, {})
    config = TrainConfig(max_epochs=epochs, batch_size=batch_size, learning_rate=MODELS[name].learning_rate,
                         patience=epochs, device=str(device), seed=seed, amp=amp)
    result = fit(model, data, config)
    last = result.history[-1]
    if device.type == "cuda":
        peak, kind = torch.cuda.max_memory_allocated(device), "cuda_max_memory_allocated"
        device_name = f"{device} ({torch.cuda.get_device_name(device)})"
    else:
        peak, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "peak_rss"
        device_name = f"cpu ({torch.get_num_threads()} threads)"
    return {
        "model": name,
        "device": device_name,
        "amp": amp and device.type == "cuda",
        "epoch": last.epoch,
        "train_seconds_per_epoch": last.train_seconds,
        "eval_seconds_per_epoch": last.eval_seconds,
        "peak_memory_mib": peak / 2**20,
        "memory_kind": kind,
        "valid_recall_20": last.valid.get("recall@20"),
    }


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | device | bf16 amp | epoch | train s/epoch | eval s/epoch | peak memory (MiB) |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        memory = f"{row['peak_memory_mib']:.0f} ({'GPU' if row['memory_kind'].startswith('cuda') else 'RSS'})"
        lines.append(
            f"| {row['model']} | {row['device']} | {'yes' if row['amp'] else 'no'} | {row['epoch']} "
            f"| {row['train_seconds_per_epoch']:.3f} "
            f"| {row['eval_seconds_per_epoch']:.3f} | {memory} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="fitmm,lightgcn", help="comma-separated registry names")
    parser.add_argument("--epochs", type=int, default=2, help="epochs to train; the last one is reported")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies users, items, interactions, dims")
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--amp", action="store_true", help="bf16 autocast for the loss forward (CUDA only)")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    shape = scaled_shape(args.scale)
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    context = multiprocessing.get_context("spawn")
    rows = []
    with context.Pool(processes=1, maxtasksperchild=1) as pool:
        for name in names:
            rows.append(pool.apply(measure_model, (name, shape, args.epochs, args.device, args.batch_size, args.seed, args.amp)))
            print(f"measured {name}", file=sys.stderr, flush=True)
    print(f"data: {shape} (scale {args.scale}), {args.epochs} epochs, batch {args.batch_size}\n")
    print(markdown_table(rows))
    print(json.dumps({"benchmark": "train_speed", "scale": args.scale, "shape": shape, "epochs": args.epochs,
                      "batch_size": args.batch_size, "amp": args.amp, "results": rows}))


if __name__ == "__main__":
    main()
