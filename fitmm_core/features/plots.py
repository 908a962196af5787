"""A 2-D PCA picture of item features, coloured by category, as PNG bytes."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

MAX_LEGEND_LABELS = 10
OTHER_LABEL = "other"
UNLABELLED = "(none)"


def pca_2d(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(coords, explained)``: the rows of ``features`` on their first two principal axes.

    With :math:`\\bar X = X - \\mathbf{1}\\mu^\\top = U \\Sigma V^\\top`, ``coords`` :math:`= \\bar X V_{:, :2}`
    and ``explained`` :math:`= \\sigma_{1,2}^2 / \\sum_j \\sigma_j^2` (zeros where the data has no spread).
    Each axis's sign is fixed so that its largest-magnitude loading is positive.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"features must be a 2-D array with at least 2 rows; got shape {x.shape}")
    centred = x - x.mean(axis=0, keepdims=True)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    axes = np.zeros((x.shape[1], 2))
    k = min(2, vt.shape[0])
    axes[:, :k] = vt[:k].T
    for j in range(k):
        if axes[np.argmax(np.abs(axes[:, j])), j] < 0:
            axes[:, j] = -axes[:, j]
    total = float((singular**2).sum())
    explained = np.zeros(2)
    if total > 0:
        explained[:k] = singular[:k] ** 2 / total
    return centred @ axes, explained


def _legend_labels(labels: Sequence[str | None]) -> list[str]:
    """Labels as drawn: None -> "(none)", labels beyond the ten most frequent -> "other"."""
    counts = Counter(str(label) for label in labels if label is not None)
    kept = {label for label, _ in counts.most_common(MAX_LEGEND_LABELS)}
    return [UNLABELLED if label is None else (str(label) if str(label) in kept else OTHER_LABEL) for label in labels]


def projection_png(features: np.ndarray, labels: Sequence[str | None], title: str) -> bytes:
    """PNG bytes of the 2-D PCA projection of ``features``, one colour per label (the ten most
    frequent labels; the rest drawn as "other", missing labels as "(none)")."""
    if len(labels) != len(features):
        raise ValueError(f"{len(labels)} labels for {len(features)} feature rows")
    coords, explained = pca_2d(features)
    drawn = np.array(_legend_labels(labels), dtype=object)
    figure = Figure(figsize=(6.4, 5.2), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    greys = {OTHER_LABEL: "0.55", UNLABELLED: "0.8"}
    coloured = 0
    for label, count in Counter(drawn.tolist()).most_common():
        rows = drawn == label
        colour = greys.get(label, f"C{coloured % 10}")
        coloured += label not in greys
        axes.scatter(coords[rows, 0], coords[rows, 1], s=10, alpha=0.7, color=colour, label=f"{label} ({count})")
    axes.set_xlabel(f"PC1 ({explained[0]:.1%} of variance)")
    axes.set_ylabel(f"PC2 ({explained[1]:.1%} of variance)")
    axes.set_title(title)
    axes.legend(loc="best", fontsize="small", markerscale=1.5, frameon=False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
