"""The PCA projection picture."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from fitmm_core.features.plots import _legend_labels, pca_2d, projection_png


def test_points_on_a_line_project_onto_the_first_axis() -> None:
    features = np.array([[1.0, 1.0, 3.0], [-1.0, -1.0, 3.0], [2.0, 2.0, 3.0], [-2.0, -2.0, 3.0]])
    coords, explained = pca_2d(features)
    np.testing.assert_allclose(coords[:, 0], np.sqrt(2) * np.array([1.0, -1.0, 2.0, -2.0]), atol=1e-12)
    np.testing.assert_allclose(coords[:, 1], 0.0, atol=1e-12)
    np.testing.assert_allclose(explained, [1.0, 0.0], atol=1e-12)


def test_two_axes_split_the_variance() -> None:
    features = np.array([[3.0, 0.0], [-3.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    coords, explained = pca_2d(features)
    np.testing.assert_allclose(explained, [0.9, 0.1], atol=1e-12)
    np.testing.assert_allclose(np.abs(coords), [[3, 0], [3, 0], [0, 1], [0, 1]], atol=1e-12)


def test_one_feature_column_and_constant_rows() -> None:
    coords, explained = pca_2d(np.array([[1.0], [3.0]]))
    np.testing.assert_allclose(coords, [[-1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(explained, [1.0, 0.0])
    coords, explained = pca_2d(np.ones((3, 4)))
    np.testing.assert_allclose(coords, 0.0)
    np.testing.assert_allclose(explained, 0.0)


def test_legend_keeps_ten_labels_and_names_the_rest() -> None:
    labels = [f"c{i}" for i in range(12) for _ in range(12 - i)] + [None]
    drawn = _legend_labels(labels)
    assert sorted(set(drawn)) == sorted({f"c{i}" for i in range(10)} | {"other", "(none)"})
    assert drawn.count("other") == 2 + 1


def test_png_bytes_of_the_expected_size() -> None:
    rng = np.random.default_rng(0)
    features = np.vstack([rng.normal(0, 1, (30, 8)), rng.normal(4, 1, (30, 8))])
    png = projection_png(features, ["Toys"] * 30 + ["Baby"] * 29 + [None], "image features")
    image = Image.open(io.BytesIO(png))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and image.format == "PNG" and image.size == (640, 520)


def test_bad_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="2 labels for 3 feature rows"):
        projection_png(np.zeros((3, 2)), ["a", "b"], "t")
    with pytest.raises(ValueError, match="at least 2 rows"):
        pca_2d(np.zeros((1, 3)))
