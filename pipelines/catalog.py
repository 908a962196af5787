"""The dataset catalog: ``catalog.yaml`` (or the file ``FITMM_CATALOG`` names), one entry a partition.

Each entry says where the raw data comes from and how every stage treats it. Unknown keys and
wrong types are errors that name the file, the dataset and the key, so a typo never silently
falls back to a default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

from fitmm_core.data.prepare import DEFAULT_TEXT_TEMPLATE, text_template_problem
from fitmm_core.features.image_decode import IMAGE_DECODERS
from fitmm_core.features.image_sources import FetchSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CATALOG = REPO_ROOT / "catalog.yaml"
FORMATS = ("amazon2014", "amazon2018", "amazon2023", "mmrec", "demo")
KNOWN_MODELS = ("fitmm", "lightgcn", "freedom", "mostpop")


Section = TypeVar("Section")


class CatalogError(ValueError):
    """The catalog file is unreadable or one of its entries is invalid."""


@dataclass(frozen=True)
class TrainingSettings:
    """Trainer settings shared by every model of a dataset (MMRec's protocol by default)."""

    max_epochs: int = 1000
    patience: int = 20
    batch_size: int = 2048
    seed: int = 999
    device: str = "auto"


@dataclass(frozen=True)
class DatasetEntry:
    """One catalog entry: sources, preprocessing, encoders and the models to train."""

    name: str
    format: str
    reviews: str | None = None
    meta: str | None = None
    images: str | None = None
    demo_seed: int = 0
    demo_users: int = 1200
    demo_items: int = 600
    k_core: int = 5
    split: str = "random"
    split_seed: int = 999
    require_metadata: bool = True
    on_bad_lines: str = "error"
    text_template: str = DEFAULT_TEXT_TEMPLATE
    text_encoder: str = "sentence-transformers/all-MiniLM-L6-v2"
    image_encoder: str = "clip:openai/clip-vit-base-patch32"
    image_decode: str = "auto"
    image_fetch: FetchSettings = field(default_factory=FetchSettings)
    models: tuple[str, ...] = ("fitmm", "lightgcn", "mostpop")
    model_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    description: str = ""


def catalog_path() -> Path:
    """The catalog in force: ``$FITMM_CATALOG`` if set, else ``catalog.yaml`` in the checkout."""
    return Path(os.environ.get("FITMM_CATALOG", DEFAULT_CATALOG))


def _typed(value: Any, expected: Any, where: str) -> Any:
    """Check ``value`` against a dataclass field's default type; ints are accepted for floats."""
    if expected is None or value is None:
        return value
    if isinstance(expected, bool):
        ok = isinstance(value, bool)
    elif isinstance(expected, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(expected, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(expected, str):
        ok = isinstance(value, str)
    else:
        ok = True
    if not ok:
        raise CatalogError(f"{where}: expected {type(expected).__name__}, got {value!r}")
    return value


def _parse_section(raw: Any, cls: type[Section], where: str) -> Section:
    """A nested mapping of settings (``training``, ``image_fetch``) as the dataclass ``cls``."""
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: expected a mapping")
    defaults = cls()
    valid = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - valid)
    if unknown:
        raise CatalogError(f"{where}: unknown key(s) {unknown}; valid: {sorted(valid)}")
    try:
        return cls(**{k: _typed(v, getattr(defaults, k), f"{where}.{k}") for k, v in raw.items()})
    except ValueError as exc:
        raise CatalogError(f"{where}: {exc}") from None


def _parse_entry(name: str, raw: Any, path: Path) -> DatasetEntry:
    where = f"{path}: datasets.{name}"
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: expected a mapping of settings")
    valid = {f.name for f in fields(DatasetEntry)} - {"name"}
    unknown = sorted(set(raw) - valid)
    if unknown:
        raise CatalogError(f"{where}: unknown key(s) {unknown}; valid: {sorted(valid)}")
    if raw.get("format") not in FORMATS:
        raise CatalogError(f"{where}.format: {raw.get('format')!r}; expected one of {list(FORMATS)}")
    if raw["format"] != "demo" and not raw.get("reviews"):
        raise CatalogError(f"{where}.reviews: required for format {raw['format']!r} (a path or URL)")
    if raw["format"] not in ("demo", "mmrec") and not raw.get("meta") and raw.get("require_metadata", True):
        raise CatalogError(f"{where}.meta: required unless require_metadata is false")
    defaults = DatasetEntry(name=name, format=raw["format"])
    settings: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "training":
            settings[key] = _parse_section(value, TrainingSettings, f"{where}.training")
        elif key == "image_fetch":
            settings[key] = _parse_section(value, FetchSettings, f"{where}.image_fetch")
        elif key == "models":
            if not isinstance(value, list) or not value:
                raise CatalogError(f"{where}.models: expected a non-empty list, e.g. [fitmm, mostpop]")
            bad = [m for m in value if m not in KNOWN_MODELS]
            if bad:
                raise CatalogError(f"{where}.models: unknown model(s) {bad}; known: {list(KNOWN_MODELS)}")
            settings[key] = tuple(value)
        elif key == "text_template":
            problem = text_template_problem(_typed(value, defaults.text_template, f"{where}.{key}"))
            if problem:
                raise CatalogError(f"{where}.text_template: {value!r}: {problem}")
            settings[key] = value
        elif key == "image_decode":
            if value not in IMAGE_DECODERS:
                raise CatalogError(f"{where}.image_decode: {value!r}; expected one of {list(IMAGE_DECODERS)}")
            settings[key] = value
        elif key == "model_settings":
            if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
                raise CatalogError(f"{where}.model_settings: expected {{model: {{setting: value}}}}")
            settings[key] = value
        else:
            settings[key] = _typed(value, getattr(defaults, key), f"{where}.{key}")
    return DatasetEntry(name=name, **settings)


def load_catalog(path: Path | None = None) -> dict[str, DatasetEntry]:
    """Parse and validate the catalog; returns ``{dataset name: entry}`` in file order."""
    path = Path(path) if path is not None else catalog_path()
    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise CatalogError(f"{path}: catalog not found (set FITMM_CATALOG or create catalog.yaml)") from exc
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: not valid YAML: {exc}") from exc
    datasets = (document or {}).get("datasets") if isinstance(document, dict) else None
    if not isinstance(datasets, dict) or not datasets:
        raise CatalogError(f"{path}: expected a top-level 'datasets:' mapping with at least one entry")
    return {str(name): _parse_entry(str(name), raw, path) for name, raw in datasets.items()}
