"""A synthetic Amazon-2018-format dataset with planted structure that content features can find.

Every item belongs to one latent category. The category shows in the item's text (the category
name and category words among noise words) and in its image (background hue, shape and texture,
each jittered per item), and it drives behaviour: each user prefers one to three categories and
draws most reviews from them, with long-tailed popularity inside a category, so a personalised
model beats most-popular and tail items (just above the k-core threshold) profit from content.
A few duplicate reviews and users/items below five interactions give dedup and k-core work.

The output is byte-identical for a seed: numpy's PCG64 drives every draw, gzip headers carry no
time or name, and JPEGs are encoded with fixed settings.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

logger = logging.getLogger(__name__)

STORE = "Demo Store"
CATEGORY_WORDS: dict[str, tuple[str, ...]] = {
    "Kitchen": ("skillet", "spatula", "kettle", "cookware", "whisk"),
    "Garden": ("hose", "planter", "trowel", "seeds", "sprinkler"),
    "Toys": ("puzzle", "doll", "blocks", "robot", "plush"),
    "Books": ("novel", "paperback", "hardcover", "anthology", "memoir"),
    "Sports": ("racket", "dumbbell", "jersey", "helmet", "yoga"),
    "Beauty": ("lipstick", "serum", "mascara", "lotion", "perfume"),
    "Music": ("guitar", "ukulele", "drumsticks", "strings", "keyboard"),
    "Office": ("stapler", "notebook", "binder", "pens", "organizer"),
    "Pets": ("leash", "kibble", "litter", "collar", "aquarium"),
    "Automotive": ("wiper", "tire", "dashcam", "coolant", "jumper"),
    "Baby": ("stroller", "pacifier", "onesie", "diaper", "bottle"),
    "Outdoors": ("tent", "lantern", "backpack", "compass", "hammock"),
}
NOISE_WORDS = (
    "premium", "classic", "deluxe", "compact", "portable", "durable", "lightweight", "original",
    "modern", "essential", "value", "pro", "ultra", "everyday", "signature", "select", "gift",
    "set", "pack", "edition", "series", "bundle", "kit", "plus", "max", "mini", "smart", "eco",
)
FILLER_SENTENCES = (
    "Ships in recyclable packaging.",
    "Backed by a one year limited warranty.",
    "Designed for everyday use and easy care.",
    "Customers love the value and the finish.",
    "Makes a thoughtful gift for friends and family.",
    "Imported.",
    "Satisfaction guaranteed or your money back.",
    "Available in several sizes and colours.",
)
REVIEW_WORDS = (
    "great", "good", "works", "as", "described", "fast", "shipping", "love", "it", "quality",
    "would", "buy", "again", "ok", "not", "bad", "price", "nice", "recommend", "perfect",
)
BRANDS = tuple(
    f"{a}{b}" for a in ("Acme", "Nova", "Zen", "Blue", "Terra", "Peak") for b in ("Works", "Labs", "Co", "Line")
)
SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross", "ring", "hexagon")
TEXTURES = ("hstripes", "vstripes", "dots", "checker", "diagonal", "grid", "waves", "plain")
ALNUM = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))
IMAGE_SIZE = 96
FIRST_DAY = int(datetime(2014, 1, 1, tzinfo=timezone.utc).timestamp())
LAST_DAY = int(datetime(2018, 9, 30, tzinfo=timezone.utc).timestamp())
DAY = 86_400


@dataclass(frozen=True)
class _Item:
    asin: str
    category: int


def _random_ids(rng: np.random.Generator, count: int, prefix: str, length: int) -> list[str]:
    """``count`` distinct ids of ``prefix`` plus ``length`` upper-case alphanumerics, sorted."""
    ids: set[str] = set()
    while len(ids) < count:
        draws = rng.choice(ALNUM, size=(count - len(ids), length))
        ids.update(prefix + "".join(row) for row in draws)
    return sorted(ids)


def _hsv_to_rgb(hue: float, saturation: float, value: float) -> tuple[int, int, int]:
    sector = int(hue * 6) % 6
    fraction = hue * 6 - math.floor(hue * 6)
    p, q, t = value * (1 - saturation), value * (1 - fraction * saturation), value * (1 - (1 - fraction) * saturation)
    rgb = [(value, t, p), (q, value, p), (p, value, t), (p, q, value), (t, p, value), (value, p, q)][sector]
    return tuple(int(round(255 * channel)) for channel in rgb)  # type: ignore[return-value]


def _shape_points(shape: str, cx: float, cy: float, radius: float, angle: float) -> list[tuple[float, float]]:
    corners = {"triangle": 3, "square": 4, "diamond": 4, "hexagon": 6, "star": 10, "cross": 12}[shape]
    start = angle + (math.pi / 4 if shape == "diamond" else 0.0)
    points = []
    for k in range(corners):
        theta = start + 2 * math.pi * k / corners
        r = radius
        if shape == "star" and k % 2:
            r = radius * 0.45
        if shape == "cross":
            theta = start + math.pi / 2 * (k // 3) + (-0.35, 0.0, 0.35)[k % 3]
            r = radius if k % 3 == 1 else radius * 0.5
        points.append((cx + r * math.cos(theta), cy + r * math.sin(theta)))
    return points


def _draw_texture(draw: ImageDraw.ImageDraw, texture: str, colour: tuple[int, int, int], step: int, phase: int) -> None:
    size = IMAGE_SIZE
    if texture == "hstripes":
        for y in range(phase % step, size, step):
            draw.rectangle([0, y, size, y + step // 3], fill=colour)
    elif texture == "vstripes":
        for x in range(phase % step, size, step):
            draw.rectangle([x, 0, x + step // 3, size], fill=colour)
    elif texture == "dots":
        for y in range(phase % step, size, step):
            for x in range(phase % step, size, step):
                draw.ellipse([x, y, x + step // 3, y + step // 3], fill=colour)
    elif texture == "checker":
        for y in range(0, size, step):
            for x in range((y // step % 2) * step, size, 2 * step):
                draw.rectangle([x, y, x + step - 1, y + step - 1], fill=colour)
    elif texture == "diagonal":
        for offset in range(-size + phase % step, size, step):
            draw.line([(offset, 0), (offset + size, size)], fill=colour, width=max(1, step // 4))
    elif texture == "grid":
        for v in range(phase % step, size, step):
            draw.line([(v, 0), (v, size)], fill=colour, width=1)
            draw.line([(0, v), (size, v)], fill=colour, width=1)
    elif texture == "waves":
        for y0 in range(phase % step, size, step):
            points = [(x, y0 + step / 4 * math.sin(x / 6.0)) for x in range(0, size + 1, 3)]
            draw.line(points, fill=colour, width=2)


def _item_image(rng: np.random.Generator, category: int, n_categories: int) -> bytes:
    """A JPEG whose hue, shape and texture encode ``category``, with per-item jitter and noise."""
    hue = (category / n_categories + rng.normal(0, 0.025)) % 1.0
    background = _hsv_to_rgb(hue, float(rng.uniform(0.25, 0.45)), float(rng.uniform(0.85, 1.0)))
    texture_colour = _hsv_to_rgb(hue, float(rng.uniform(0.5, 0.7)), float(rng.uniform(0.65, 0.8)))
    shape_hue = (hue + rng.normal(0, 0.03)) % 1.0
    shape_colour = _hsv_to_rgb(shape_hue, float(rng.uniform(0.75, 1.0)), float(rng.uniform(0.35, 0.6)))
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), background)
    draw = ImageDraw.Draw(image)
    step, phase = int(rng.integers(9, 15)), int(rng.integers(0, 16))
    _draw_texture(draw, TEXTURES[category % len(TEXTURES)], texture_colour, step, phase)
    shape = SHAPES[category % len(SHAPES)]
    cx, cy = (IMAGE_SIZE / 2 + rng.normal(0, 7, size=2)).tolist()
    radius = float(rng.uniform(20, 32))
    angle = float(rng.normal(0, 0.25))
    if shape == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=shape_colour)
    elif shape == "ring":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], outline=shape_colour, width=int(radius / 3))
    else:
        draw.polygon(_shape_points(shape, cx, cy, radius, angle), fill=shape_colour)
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, 10, size=(IMAGE_SIZE, IMAGE_SIZE, 3))
    noisy = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    noisy.save(buffer, format="JPEG", quality=85, optimize=False, progressive=False)
    return buffer.getvalue()


def _words(rng: np.random.Generator, pool: tuple[str, ...], count: int) -> list[str]:
    return [pool[i] for i in rng.integers(0, len(pool), size=count)]


def _item_metadata(rng: np.random.Generator, asin: str, category: int, names: list[str]) -> dict:
    """Amazon-2018 metadata whose text names the category among noise words (not always)."""
    name = names[category]
    own_words = CATEGORY_WORDS[name]
    brand = BRANDS[(category * 4 + int(rng.integers(0, 8))) % len(BRANDS)]
    title_parts = _words(rng, NOISE_WORDS, 2) + [own_words[int(rng.integers(0, len(own_words)))]]
    if rng.random() < 0.8:
        title_parts.insert(int(rng.integers(0, len(title_parts) + 1)), name.lower())
    if rng.random() < 0.15:
        other = names[int(rng.integers(0, len(names)))]
        title_parts.append(CATEGORY_WORDS[other][int(rng.integers(0, 5))])
    code = "".join(rng.choice(ALNUM, size=2)) + "-" + str(int(rng.integers(100, 999)))
    title = " ".join([brand] + [w.capitalize() for w in title_parts] + [code])
    description = [
        f"This {' '.join(_words(rng, NOISE_WORDS, 1))} {own_words[int(rng.integers(0, 5))]} "
        f"is {' '.join(_words(rng, NOISE_WORDS, 2))}."
    ]
    fillers = rng.choice(len(FILLER_SENTENCES), size=int(rng.integers(1, 3)), replace=False)
    description += [FILLER_SENTENCES[i] for i in fillers]
    if rng.random() < 0.6:
        description.append(f"A favourite in our {name.lower()} range.")
    features = [f"{w.capitalize()} design" for w in _words(rng, NOISE_WORDS, int(rng.integers(1, 4)))]
    subcategory = f"{name} {own_words[int(rng.integers(0, 2))].capitalize()}"
    return {
        "asin": asin,
        "title": title,
        "brand": brand,
        "category": [STORE, name, subcategory],
        "description": description,
        "feature": features,
        "imageURL": [f"https://example.com/images/{asin}.jpg"],
        "imageURLHighRes": [f"https://example.com/images/hi/{asin}.jpg"],
        "price": f"${rng.uniform(3, 120):.2f}",
    }


def _review(
    rng: np.random.Generator, user: str, user_name: str, item: _Item, names: list[str], preferred: bool, when: int
) -> dict:
    mean = 4.4 if preferred else 3.3
    rating = float(np.clip(np.round(rng.normal(mean, 0.8)), 1, 5))
    date = datetime.fromtimestamp(when, tz=timezone.utc)
    words = _words(rng, REVIEW_WORDS, int(rng.integers(4, 14)))
    if rng.random() < 0.5:
        words.insert(int(rng.integers(0, len(words))), CATEGORY_WORDS[names[item.category]][int(rng.integers(0, 5))])
    return {
        "overall": rating,
        "verified": bool(rng.random() < 0.85),
        "reviewTime": f"{date.month:02d} {date.day}, {date.year}",
        "reviewerID": user,
        "asin": item.asin,
        "reviewerName": user_name,
        "reviewText": " ".join(words).capitalize() + ".",
        "summary": " ".join(_words(rng, REVIEW_WORDS, int(rng.integers(1, 4)))).capitalize(),
        "unixReviewTime": when,
    }


def _write_json_lines_gz(path: Path, records: list[dict]) -> None:
    """Gzip JSON lines with a zero mtime and no file name in the header (byte-reproducible)."""
    payload = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records).encode()
    with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as handle:
        handle.write(payload)


def _user_items(
    rng: np.random.Generator,
    count: int,
    preferred: np.ndarray,
    weights: np.ndarray,
    by_category: list[np.ndarray],
    category_popularity: list[np.ndarray],
    global_popularity: np.ndarray,
    off_preference: float,
) -> list[tuple[int, bool]]:
    """Distinct item indices for one user, each flagged whether it came from a preferred category."""
    n_off = int(rng.binomial(count, off_preference))
    per_category = rng.multinomial(count - n_off, weights)
    chosen: dict[int, bool] = {}
    for category, n in zip(preferred.tolist(), per_category.tolist()):
        pool = by_category[category]
        n = min(n, len(pool))
        for index in rng.choice(pool, size=n, replace=False, p=category_popularity[category]).tolist():
            chosen[index] = True
    for index in rng.choice(len(global_popularity), size=n_off, replace=False, p=global_popularity).tolist():
        chosen.setdefault(index, False)
    return list(chosen.items())


def generate_demo_data(
    out: Path, seed: int = 0, n_users: int = 1200, n_items: int = 600, n_categories: int = 8
) -> dict:
    """Write ``reviews.json.gz``, ``meta.json.gz`` and ``images/<asin>.jpg`` under ``out``.

    Returns a summary: counts of users, items, reviews and planted duplicates, the category names,
    the seed and the written paths.
    """
    names = list(CATEGORY_WORDS)
    if not 2 <= n_categories <= len(names):
        raise ValueError(f"n_categories={n_categories}: choose between 2 and {len(names)}")
    if n_items < 5 * n_categories or n_users < 10:
        raise ValueError(f"n_users={n_users}, n_items={n_items}: need n_users >= 10 and n_items >= 5 * n_categories")
    names = names[:n_categories]
    rng = np.random.default_rng(seed)
    out = Path(out)
    image_dir = out / "images"
    image_dir.mkdir(parents=True, exist_ok=True)

    asins = _random_ids(rng, n_items, "B0", 8)
    categories = rng.permutation(np.arange(n_items) % n_categories)
    by_category = [np.flatnonzero(categories == c) for c in range(n_categories)]
    category_popularity = []
    popularity = np.zeros(n_items)
    for pool in by_category:
        ranks = rng.permutation(len(pool))
        weights = 1.0 / (ranks + 1.0) ** 0.9
        weights /= weights.sum()
        category_popularity.append(weights)
        popularity[pool] = weights / n_categories
    items = [_Item(asin, int(c)) for asin, c in zip(asins, categories)]

    metadata = [_item_metadata(rng, item.asin, item.category, names) for item in items]
    for item in items:
        (image_dir / f"{item.asin}.jpg").write_bytes(_item_image(rng, item.category, n_categories))

    users = _random_ids(rng, n_users, "A", 13)
    reviews: list[dict] = []
    for user in users:
        n_preferred = int(rng.choice([1, 2, 3], p=[0.35, 0.4, 0.25]))
        preferred = rng.choice(n_categories, size=n_preferred, replace=False)
        weights = rng.dirichlet(np.full(n_preferred, 2.0))
        if rng.random() < 0.06:
            count = int(rng.integers(1, 5))
        else:
            count = int(np.clip(np.round(rng.lognormal(math.log(12), 0.6)), 5, 80))
        start = int(rng.integers(FIRST_DAY, LAST_DAY - 200 * DAY))
        span = int(rng.integers(30, 700)) * DAY
        first_name = rng.choice(["Alex", "Sam", "Kim", "Jo", "Lee", "Ana", "Max", "Eve"])
        user_name = f"{first_name} {rng.choice(ALNUM[:26])}."
        picks = _user_items(rng, count, preferred, weights, by_category, category_popularity, popularity, 0.12)
        times = np.sort(start + rng.integers(0, span, size=len(picks)))
        for (index, is_preferred), when in zip(picks, times.tolist()):
            reviews.append(_review(rng, user, user_name, items[index], names, is_preferred, min(when, LAST_DAY)))

    n_duplicates = max(1, len(reviews) // 150)
    for position in rng.choice(len(reviews), size=n_duplicates, replace=False).tolist():
        original = reviews[position]
        again = dict(original)
        again["unixReviewTime"] = original["unixReviewTime"] + int(rng.integers(1, 60)) * DAY
        date = datetime.fromtimestamp(again["unixReviewTime"], tz=timezone.utc)
        again["reviewTime"] = f"{date.month:02d} {date.day}, {date.year}"
        again["overall"] = float(rng.integers(1, 6))
        reviews.append(again)

    reviews.sort(key=lambda r: (r["asin"], r["unixReviewTime"], r["reviewerID"]))
    _write_json_lines_gz(out / "reviews.json.gz", reviews)
    _write_json_lines_gz(out / "meta.json.gz", metadata)
    logger.info("demo data: %d users, %d items, %d reviews -> %s", n_users, n_items, len(reviews), out)
    return {
        "users": n_users,
        "items": n_items,
        "reviews": len(reviews),
        "duplicates": n_duplicates,
        "categories": names,
        "seed": seed,
        "reviews_path": str(out / "reviews.json.gz"),
        "meta_path": str(out / "meta.json.gz"),
        "images_dir": str(image_dir),
    }
