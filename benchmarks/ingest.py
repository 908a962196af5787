"""Ingest throughput: ``prepare_dataset`` (polars) against a straightforward pandas version.

Generates ``--n`` raw Amazon-2018 reviews (with review text, as in the real dumps) and their
metadata, then runs each implementation in its own process and prints rows/s, wall seconds and
peak RSS, plus the speed and memory ratios. Both must agree on the users, items and interactions
left after dedup and the 5-core, which the script checks. Peak RSS counts the pages of the input
file that polars maps into memory while scanning it (for ``.gz``, the compressed size).

    python benchmarks/ingest.py --n 1000000        # default 200000
    python benchmarks/ingest.py --n 10000000 --only-polars --workdir /tmp/ingest10m --reuse
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

K_CORE = 5
SEED = 999
STAMP = "generated.json"
TEXT_SNIPPETS = [
    json.dumps(" ".join(f"word{(k * 7 + j) % 97}" for j in range(20 + k % 60)))[1:-1] for k in range(64)
]


def generate(out: Path, n: int, seed: int = 0) -> None:
    """``reviews.json.gz`` with ``n`` reviews over ~n/12 users and ~n/40 items, and ``meta.json.gz``.

    ``generated.json`` (removed first, written last) records ``n`` and ``seed``, so ``--reuse`` can
    trust the files.
    """
    (out / STAMP).unlink(missing_ok=True)
    rng = np.random.default_rng(seed)
    n_users, n_items = max(50, n // 12), max(50, n // 40)
    activity = rng.lognormal(0.0, 1.0, n_users)
    users = rng.choice(n_users, size=n, p=activity / activity.sum())
    popularity = 1.0 / (rng.permutation(n_items) + 1.0) ** 0.8
    items = rng.choice(n_items, size=n, p=popularity / popularity.sum())
    times = rng.integers(1_300_000_000, 1_540_000_000, size=n)
    ratings = rng.integers(1, 6, size=n)
    texts = rng.integers(0, len(TEXT_SNIPPETS), size=n)
    out.mkdir(parents=True, exist_ok=True)
    with gzip.open(out / "reviews.json.gz", "wt", compresslevel=1) as handle:
        for u, i, t, r, x in zip(users.tolist(), items.tolist(), times.tolist(), ratings.tolist(), texts.tolist()):
            handle.write(
                f'{{"overall": {r}.0, "verified": true, "reviewTime": "01 1, 2015", "reviewerID": "A{u:013X}", '
                f'"asin": "B0{i:08X}", "reviewerName": "Reviewer {u}", "reviewText": "{TEXT_SNIPPETS[x]}", '
                f'"summary": "Five stars", "unixReviewTime": {t}}}\n'
            )
    with gzip.open(out / "meta.json.gz", "wt", compresslevel=1) as handle:
        for i in range(n_items):
            record = {"asin": f"B0{i:08X}", "title": f"Product {i}", "brand": f"Brand {i % 50}",
                      "category": ["Bench", f"Cat {i % 20}"], "description": [TEXT_SNIPPETS[i % 64]],
                      "feature": [], "imageURL": [], "imageURLHighRes": [], "price": "$1.00"}
            handle.write(json.dumps(record) + "\n")
    (out / STAMP).write_text(json.dumps({"n": n, "seed": seed}))


def generated_for(out: Path, n: int, seed: int = 0) -> bool:
    """Whether ``out`` holds complete data from ``generate(out, n, seed)``."""
    stamp = out / STAMP
    return stamp.is_file() and json.loads(stamp.read_text()) == {"n": n, "seed": seed}


def run_polars(data: Path, out: Path) -> dict:
    from fitmm_core.data.prepare import PrepareSettings, prepare_dataset

    manifest = prepare_dataset(PrepareSettings(
        format="amazon2018", reviews=str(data / "reviews.json.gz"), meta=str(data / "meta.json.gz"),
        out=out / "polars", name="bench", k_core=K_CORE, seed=SEED))
    counts = manifest["counts"]
    return {"users": counts["users"], "items": counts["items"], "interactions": counts["interactions"]}


def run_pandas(data: Path, out: Path) -> dict:
    """The straightforward version: read_json lines, Python-loop k-core, groupby split."""
    import pandas as pd

    reviews = pd.read_json(
        data / "reviews.json.gz", lines=True, compression="gzip", dtype={"reviewerID": str, "asin": str}
    )
    meta = pd.read_json(data / "meta.json.gz", lines=True, compression="gzip", dtype={"asin": str})
    reviews = reviews[reviews["asin"].isin(set(meta["asin"]))]
    reviews = reviews.sort_values("unixReviewTime", kind="stable").drop_duplicates(["reviewerID", "asin"], keep="last")
    while True:
        user_count, item_count = Counter(reviews["reviewerID"]), Counter(reviews["asin"])
        keep = [
            user_count[u] >= K_CORE and item_count[i] >= K_CORE
            for u, i in zip(reviews["reviewerID"], reviews["asin"])
        ]
        if all(keep):
            break
        reviews = reviews[keep]
    users = {u: k for k, u in enumerate(sorted(reviews["reviewerID"].unique()))}
    items = {i: k for k, i in enumerate(sorted(reviews["asin"].unique()))}
    reviews = reviews.assign(userID=reviews["reviewerID"].map(users), itemID=reviews["asin"].map(items))
    parts = []
    for _, group in reviews.groupby("userID"):
        group = group.sample(frac=1.0, random_state=SEED)
        n = len(group)
        held = 2 if n < 10 else int(n * 0.2)
        parts.append(group.assign(x_label=[0] * (n - held) + [1] * (held // 2) + [2] * (held - held // 2)))
    table = pd.concat(parts)
    folder = out / "pandas"
    folder.mkdir(parents=True, exist_ok=True)
    table[["userID", "itemID", "overall", "unixReviewTime", "x_label"]].rename(
        columns={"overall": "rating", "unixReviewTime": "timestamp"}
    ).to_csv(folder / "bench.inter", sep="\t", index=False)
    return {"users": len(users), "items": len(items), "interactions": len(table)}


def _child(kind: str, data: Path, out: Path) -> None:
    if kind == "polars":
        import fitmm_core.data.prepare  # noqa: F401 (imported before timing)
    else:
        import pandas  # noqa: F401 (imported before timing)
    start = time.perf_counter()
    counts = (run_polars if kind == "polars" else run_pandas)(data, out)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"kind": kind, "seconds": seconds, "peak_rss_mb": peak_mb, **counts}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="number of raw reviews")
    parser.add_argument("--workdir", type=Path, default=None, help="where to write data (default: a temp folder)")
    parser.add_argument("--only-polars", action="store_true",
                        help="skip the pandas baseline (at 10M reviews it needs tens of GiB and half an hour)")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the data already in --workdir if it was generated for the same --n")
    parser.add_argument("--child", choices=["polars", "pandas"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reuse and args.workdir is None:
        parser.error("--reuse needs --workdir")
    if args.child:
        _child(args.child, args.workdir / "raw", args.workdir / "out")
        return
    with tempfile.TemporaryDirectory(prefix="fitmm-ingest-") as scratch:
        workdir = args.workdir or Path(scratch)
        start = time.perf_counter()
        reused = args.reuse and generated_for(workdir / "raw", args.n)
        if not reused:
            generate(workdir / "raw", args.n)
        size_mb = (workdir / "raw" / "reviews.json.gz").stat().st_size / 2**20
        done = "reused" if reused else f"generated in {time.perf_counter() - start:.1f} s"
        print(f"{args.n} reviews ({size_mb:.1f} MiB gzip), {done}")
        results = {}
        for kind in ("polars",) if args.only_polars else ("polars", "pandas"):
            completed = subprocess.run(
                [sys.executable, __file__, "--child", kind, "--workdir", str(workdir)],
                check=True, capture_output=True, text=True,
            )
            results[kind] = json.loads(completed.stdout.strip().splitlines()[-1])
        counts = {k: {c: r[c] for c in ("users", "items", "interactions")} for k, r in results.items()}
        if counts["polars"] != counts.get("pandas", counts["polars"]):
            raise SystemExit(f"implementations disagree: {counts}")
        print(f"after dedup + {K_CORE}-core: {counts['polars']}")
        print(f"{'':8} {'seconds':>8} {'rows/s':>12} {'peak RSS MiB':>13}")
        for kind, r in results.items():
            print(f"{kind:8} {r['seconds']:8.2f} {args.n / r['seconds']:12,.0f} {r['peak_rss_mb']:13,.0f}")
        if args.only_polars:
            return
        speed = results["pandas"]["seconds"] / results["polars"]["seconds"]
        memory = results["pandas"]["peak_rss_mb"] / results["polars"]["peak_rss_mb"]
        print(f"polars is {speed:.1f}x faster and uses {memory:.1f}x less peak memory")


if __name__ == "__main__":
    main()
