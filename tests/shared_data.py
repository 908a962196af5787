"""Where the real data beside the checkout lives (``../shared/data``); tests that read it skip without it."""

from __future__ import annotations

from pathlib import Path

GIFT_CARDS = Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon2018_gift_cards"
GIFT_CARD_META = GIFT_CARDS / "meta_Gift_Cards.json"
GIFT_CARD_IMAGES = GIFT_CARDS / "images"
