"""Checks and summaries of a prepared MMRec-format folder (used by tests and Dagster asset checks).

Each check reads only the folder, so it works on folders this project did not write (an imported
MMRec dataset) as well as on its own.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from fitmm_core.data.mmrec_format import (
    ITEM_MAP_FILE,
    SPLIT_LABELS,
    USER_MAP_FILE,
    find_inter_file,
    read_id_map,
    read_inter,
)

QUANTILES = (0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)
MAX_EXAMPLES = 5


@dataclass
class CheckOutcome:
    """One named check: whether it passed, what it checks, and figures that explain the result."""

    name: str
    passed: bool
    description: str
    metadata: dict = field(default_factory=dict)


def _degrees(ids: np.ndarray, size: int) -> np.ndarray:
    return np.bincount(ids, minlength=size)


def _check_k_core(table: np.ndarray, k_core: int) -> CheckOutcome:
    users = _degrees(table[:, 0], table[:, 0].max() + 1)
    items = _degrees(table[:, 1], table[:, 1].max() + 1)
    low_users = np.flatnonzero(users < k_core)
    low_items = np.flatnonzero(items < k_core)
    return CheckOutcome(
        name="k_core",
        passed=len(low_users) == 0 and len(low_items) == 0,
        description=f"every user and item id from 0 to the maximum has at least {k_core} interactions "
        "(an id with none is a gap in the numbering)",
        metadata={
            "k": k_core,
            "min_user_degree": int(users.min()),
            "min_item_degree": int(items.min()),
            "users_below_k": len(low_users),
            "items_below_k": len(low_items),
            "example_users": low_users[:MAX_EXAMPLES].tolist(),
            "example_items": low_items[:MAX_EXAMPLES].tolist(),
        },
    )


def _check_disjoint(table: np.ndarray) -> CheckOutcome:
    pairs = table[:, 0] * (table[:, 1].max() + 1) + table[:, 1]
    unique, counts = np.unique(pairs, return_counts=True)
    repeated = np.flatnonzero(counts > 1)
    examples = []
    for index in repeated[:MAX_EXAMPLES]:
        rows = table[pairs == unique[index]]
        examples.append({"userID": int(rows[0, 0]), "itemID": int(rows[0, 1]), "x_labels": rows[:, 2].tolist()})
    splits = {name: int((table[:, 2] == label).sum()) for name, label in SPLIT_LABELS.items()}
    return CheckOutcome(
        name="splits_disjoint",
        passed=len(repeated) == 0,
        description="each (user, item) pair occurs once, so no pair is in two splits (or twice in one)",
        metadata={"repeated_pairs": len(repeated), "examples": examples, "splits": splits},
    )


def _check_user_splits(table: np.ndarray) -> CheckOutcome:
    n_users = int(table[:, 0].max()) + 1
    total = _degrees(table[:, 0], n_users)
    per_split = {name: _degrees(table[table[:, 2] == label, 0], n_users) for name, label in SPLIT_LABELS.items()}
    no_train = np.flatnonzero((per_split["train"] == 0) & (total > 0))
    no_valid = np.flatnonzero((per_split["valid"] == 0) & (total >= 3))
    no_test = np.flatnonzero((per_split["test"] == 0) & (total >= 2))
    return CheckOutcome(
        name="users_have_splits",
        passed=len(no_train) == len(no_valid) == len(no_test) == 0,
        description="every user has a train interaction; users with 3 or more have valid and test too, "
        "users with 2 have test (the documented small-user rule)",
        metadata={
            "users_without_train": len(no_train),
            "users_without_valid": len(no_valid),
            "users_without_test": len(no_test),
            "example_users": np.concatenate([no_train, no_valid, no_test])[:MAX_EXAMPLES].tolist(),
            "items_not_in_train": int((_degrees(table[table[:, 2] == 0, 1], int(table[:, 1].max()) + 1) == 0).sum()),
        },
    )


def _check_map(folder: Path, name: str, file_name: str, ids: np.ndarray) -> CheckOutcome:
    path = folder / file_name
    if not path.is_file():
        return CheckOutcome(name, False, f"{file_name} exists and maps raw ids one-to-one onto the .inter ids",
                            {"missing": str(path)})
    with path.open() as handle:
        raw_rows = sum(1 for line in handle if line.strip()) - 1
    mapping = read_id_map(path)
    mapped = np.array(sorted(mapping.values()), dtype=np.int64)
    used = np.unique(ids)
    expected = np.arange(int(ids.max()) + 1)
    passed = (
        raw_rows == len(mapping)
        and len(np.unique(mapped)) == len(mapped)
        and np.array_equal(mapped, expected)
        and np.array_equal(used, expected)
    )
    return CheckOutcome(
        name=name,
        passed=bool(passed),
        description=f"{file_name} maps distinct raw ids one-to-one onto 0..n-1, exactly the ids of the .inter file",
        metadata={
            "rows": raw_rows,
            "distinct_raw_ids": len(mapping),
            "distinct_ids": int(len(np.unique(mapped))),
            "ids_in_inter": int(len(used)),
            "max_id_in_inter": int(ids.max()),
        },
    )


def check_prepared(folder: Path, k_core: int) -> list[CheckOutcome]:
    """All checks of a prepared folder: k-core, disjoint splits, per-user splits, both id maps."""
    folder = Path(folder)
    table = read_inter(find_inter_file(folder))
    return [
        _check_k_core(table, k_core),
        _check_disjoint(table),
        _check_user_splits(table),
        _check_map(folder, "user_id_map", USER_MAP_FILE, table[:, 0]),
        _check_map(folder, "item_id_map", ITEM_MAP_FILE, table[:, 1]),
    ]


def _quantiles(degrees: np.ndarray) -> dict:
    values = np.quantile(degrees, QUANTILES)
    summary = {f"p{int(q * 100)}": float(v) for q, v in zip(QUANTILES, values)}
    summary["mean"] = float(degrees.mean())
    return summary


def dataset_summary(folder: Path) -> dict:
    """Users, items, interactions, density, per-split counts and degree quantiles of a folder."""
    table = read_inter(find_inter_file(Path(folder)))
    n_users = int(table[:, 0].max()) + 1
    n_items = int(table[:, 1].max()) + 1
    return {
        "users": n_users,
        "items": n_items,
        "interactions": len(table),
        "density": len(table) / (n_users * n_items),
        "splits": {name: int((table[:, 2] == label).sum()) for name, label in SPLIT_LABELS.items()},
        "user_degree": _quantiles(_degrees(table[:, 0], n_users)),
        "item_degree": _quantiles(_degrees(table[:, 1], n_items)),
    }


def degree_plot_png(folder: Path) -> bytes:
    """PNG of the user and item degree distributions (number of nodes per degree, log-log axes)."""
    folder = Path(folder)
    inter_path = find_inter_file(folder)
    table = read_inter(inter_path)
    figure = Figure(figsize=(8, 3.4), dpi=100)
    FigureCanvasAgg(figure)
    for axis, column, label in zip(figure.subplots(1, 2), (0, 1), ("users", "items")):
        degree_of = np.bincount(table[:, column])
        degree_of = degree_of[degree_of > 0]
        degrees, counts = np.unique(degree_of, return_counts=True)
        axis.loglog(degrees, counts, marker="o", markersize=3, linestyle="none")
        axis.set_xlabel("degree (interactions)")
        axis.set_ylabel(f"number of {label}")
        axis.set_title(f"{label}: {len(degree_of)} (median degree {int(np.median(degree_of))})")
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.grid(True, which="both", alpha=0.3)
    figure.suptitle(inter_path.stem)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
