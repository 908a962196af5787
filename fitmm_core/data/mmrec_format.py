"""The MMRec-format dataset folder: the contract between preparation, encoding and training.

A folder holds
- ``<name>.inter``: tab-separated, header ``userID itemID rating timestamp x_label`` where
  ``x_label`` is 0 for train, 1 for validation and 2 for test; ids are contiguous from 0;
- ``u_id_mapping.csv`` (``user_id userID``) and ``i_id_mapping.csv`` (``asin itemID``), tab-separated;
- ``image_feat.npy`` / ``text_feat.npy``: float32, one row per item id (optional);
- the project's extras: ``items.parquet`` (``itemID asin text image``) and ``manifest.json``.

Training needs only numpy here, so this module imports nothing heavier.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

INTER_COLUMNS = ("userID", "itemID", "rating", "timestamp", "x_label")
SPLIT_LABELS = {"train": 0, "valid": 1, "test": 2}
USER_MAP_FILE = "u_id_mapping.csv"
ITEM_MAP_FILE = "i_id_mapping.csv"
ITEMS_FILE = "items.parquet"
MANIFEST_FILE = "manifest.json"
FEATURE_FILES = {"image": "image_feat.npy", "text": "text_feat.npy"}


class DatasetFormatError(ValueError):
    """A dataset folder or file that does not follow the MMRec format; the message names the file."""


@dataclass(frozen=True)
class MMRecData:
    """Interactions split into train/valid/test as ``(n, 2)`` int64 arrays of ``(user, item)``."""

    name: str
    n_users: int
    n_items: int
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    features: dict[str, np.ndarray] = field(default_factory=dict)

    def split(self, name: str) -> np.ndarray:
        """The ``(n, 2)`` pairs of split ``name`` (``train``, ``valid`` or ``test``)."""
        if name not in SPLIT_LABELS:
            raise ValueError(f"unknown split {name!r}; expected one of {sorted(SPLIT_LABELS)}")
        return getattr(self, name)

    @property
    def n_interactions(self) -> int:
        return len(self.train) + len(self.valid) + len(self.test)


def find_inter_file(folder: Path, name: str | None = None) -> Path:
    """The ``<name>.inter`` file of ``folder``; ``name`` defaults to the only one there."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetFormatError(f"{folder}: not a directory")
    if name is not None:
        path = folder / f"{name}.inter"
        if not path.is_file():
            raise DatasetFormatError(f"{path}: missing (expected the interactions of dataset {name!r})")
        return path
    candidates = sorted(folder.glob("*.inter"))
    if len(candidates) != 1:
        found = ", ".join(p.name for p in candidates) or "none"
        raise DatasetFormatError(
            f"{folder}: expected exactly one *.inter file, found {found}; pass the dataset name"
        )
    return candidates[0]


def read_inter(path: Path) -> np.ndarray:
    """Read an ``.inter`` file into an ``(n, 3)`` int64 array of ``(userID, itemID, x_label)``."""
    path = Path(path)
    with path.open(newline="") as handle:
        header = handle.readline().rstrip("\n").split("\t")
    missing = [c for c in ("userID", "itemID", "x_label") if c not in header]
    if missing:
        raise DatasetFormatError(f"{path}: header lacks column(s) {missing}; found {header}")
    columns = [header.index(c) for c in ("userID", "itemID", "x_label")]
    try:
        table = np.loadtxt(path, delimiter="\t", skiprows=1, usecols=columns, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise DatasetFormatError(f"{path}: {exc}") from exc
    if table.size == 0:
        raise DatasetFormatError(f"{path}: no interactions")
    if not np.all(table == np.floor(table)) or table.min() < 0:
        raise DatasetFormatError(f"{path}: ids and x_label must be non-negative integers")
    labels = set(np.unique(table[:, 2]).astype(int).tolist())
    if not labels <= set(SPLIT_LABELS.values()):
        raise DatasetFormatError(f"{path}: x_label values {sorted(labels)}; expected 0, 1, 2")
    return table.astype(np.int64)


def load_mmrec(folder: Path, name: str | None = None, features: tuple[str, ...] = ("image", "text")) -> MMRecData:
    """Load an MMRec-format folder; feature files that exist among ``features`` are loaded too."""
    folder = Path(folder)
    inter_path = find_inter_file(folder, name)
    table = read_inter(inter_path)
    n_users = int(table[:, 0].max()) + 1
    n_items = int(table[:, 1].max()) + 1
    loaded: dict[str, np.ndarray] = {}
    for modality in features:
        path = folder / FEATURE_FILES[modality]
        if not path.exists():
            continue
        matrix = np.load(path).astype(np.float32, copy=False)
        if matrix.ndim != 2 or matrix.shape[0] < n_items:
            raise DatasetFormatError(
                f"{path}: shape {matrix.shape}; expected ({n_items} or more items, dim) for {inter_path.name}"
            )
        n_items = max(n_items, matrix.shape[0])
        loaded[modality] = matrix
    for modality, matrix in loaded.items():
        if matrix.shape[0] != n_items:
            raise DatasetFormatError(
                f"{folder / FEATURE_FILES[modality]}: {matrix.shape[0]} rows but the folder has {n_items} items"
            )
    pairs = {split: table[table[:, 2] == label, :2].copy() for split, label in SPLIT_LABELS.items()}
    if len(pairs["train"]) == 0:
        raise DatasetFormatError(f"{inter_path}: no training interactions (x_label 0)")
    return MMRecData(
        name=inter_path.stem, n_users=n_users, n_items=n_items, features=loaded, **pairs
    )


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` via a temporary file and rename, so readers never see half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(payload)
    os.replace(tmp, path)


def save_features(folder: Path, modality: str, matrix: np.ndarray) -> Path:
    """Write ``<modality>_feat.npy`` (float32) atomically."""
    path = Path(folder) / FEATURE_FILES[modality]
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npy")
    np.save(tmp, np.ascontiguousarray(matrix, dtype=np.float32))
    os.replace(tmp, path)
    return path


def read_id_map(path: Path) -> dict[str, int]:
    """Read ``u_id_mapping.csv`` / ``i_id_mapping.csv`` into ``{raw id: contiguous id}``."""
    with Path(path).open(newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        next(reader, None)
        return {row[0]: int(row[1]) for row in reader if row}


def read_item_ids(folder: Path, n_items: int) -> list[str]:
    """Raw item ids (asins) by contiguous id from ``i_id_mapping.csv``; the ids as text without one."""
    path = Path(folder) / ITEM_MAP_FILE
    if not path.exists():
        return [str(i) for i in range(n_items)]
    by_id = {item: raw for raw, item in read_id_map(path).items()}
    return [by_id.get(i, str(i)) for i in range(n_items)]


def read_manifest(folder: Path) -> dict:
    """The folder's ``manifest.json``, or an empty dict for a plain MMRec folder."""
    path = Path(folder) / MANIFEST_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def write_manifest(folder: Path, manifest: dict) -> Path:
    """Write ``manifest.json`` atomically (sorted keys, indented, so diffs read well)."""
    path = Path(folder) / MANIFEST_FILE
    atomic_write_bytes(path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return path


def update_manifest(folder: Path, **sections: object) -> dict:
    """Merge top-level ``sections`` into the manifest and write it back."""
    manifest = read_manifest(folder)
    manifest.update(sections)
    write_manifest(folder, manifest)
    return manifest
