"""The ``fitmm`` command line, run as a user runs it (a subprocess), stage by stage on tiny demo data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def fitmm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "fitmm_core", *args], capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"fitmm {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    raw, data = root / "raw", root / "tiny"
    fitmm("demo-data", "--out", str(raw), "--users", "150", "--items", "60", "--seed", "3")
    fitmm(
        "prepare", "--format", "amazon2018", "--reviews", str(raw / "reviews.json.gz"),
        "--meta", str(raw / "meta.json.gz"), "--images", str(raw / "images"), "--out", str(data),
    )
    fitmm("encode", "--data", str(data), "--modalities", "text")
    return data


def test_prepare_writes_an_mmrec_folder(prepared: Path):
    assert (prepared / "tiny.inter").read_text().splitlines()[0].split("\t") == [
        "userID", "itemID", "rating", "timestamp", "x_label",
    ]
    assert (prepared / "text_feat.npy").exists()
    assert (prepared / "u_id_mapping.csv").exists() and (prepared / "i_id_mapping.csv").exists()


@pytest.mark.parametrize("model", ["fitmm", "mostpop"])
def test_train_ends_with_the_json_summary(prepared: Path, tmp_path: Path, model: str):
    out = tmp_path / "bundle"
    result = fitmm("train", "--data", str(prepared), "--model", model, "--max-epochs", "3", "--device", "cpu",
                   "--out", str(out))
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["model"] == model
    for key in ("best_epoch", "train_seconds_per_epoch", "eval_seconds_per_epoch"):
        assert key in summary
    for split in ("valid", "test"):
        assert {"recall@10", "recall@20", "ndcg@10", "ndcg@20"} <= set(summary[split])
    answer = fitmm("recommend", "--model-dir", str(out), "--users", "0,1", "--k", "4")
    rows = [json.loads(line) for line in answer.stdout.splitlines()]
    assert [r["user_id"] for r in rows] == [0, 1] and all(len(r["items"]) == 4 for r in rows)


def test_bad_settings_are_reported_clearly(prepared: Path):
    result = fitmm("train", "--data", str(prepared), "--model", "fitmm", "--set", "num_bandz=4", check=False)
    assert result.returncode == 2
    assert "num_bandz" in result.stderr and "num_bands" in result.stderr
    result = fitmm("train", "--data", str(prepared / "nowhere"), "--model", "fitmm", check=False)
    assert result.returncode == 2 and "nowhere" in result.stderr


def test_encode_with_nvjpeg_off_cuda_says_why(prepared: Path):
    result = fitmm("encode", "--data", str(prepared), "--modalities", "image", "--device", "cpu",
                   "--image-encoder", "efficientnet-lite0", "--image-decode", "nvjpeg", check=False)
    assert result.returncode == 2
    assert "image_decode 'nvjpeg': nvJPEG needs a CUDA device" in result.stderr


def test_decoder_choices_match_the_library():
    from fitmm_core.cli import IMAGE_DECODERS
    from fitmm_core.features.image_decode import IMAGE_DECODERS as LIBRARY_DECODERS

    assert IMAGE_DECODERS == LIBRARY_DECODERS


def test_prepare_renders_item_texts_with_the_template(prepared: Path, tmp_path: Path):
    import polars as pl

    raw = prepared.parent / "raw"
    fitmm(
        "prepare", "--format", "amazon2018", "--reviews", str(raw / "reviews.json.gz"),
        "--meta", str(raw / "meta.json.gz"), "--out", str(tmp_path / "titles"), "--text-template", "[{title}]",
    )
    texts = pl.read_parquet(tmp_path / "titles" / "items.parquet")["text"].to_list()
    assert texts and all(text.startswith("[") and text.endswith("]") for text in texts)
    result = fitmm("prepare", "--format", "amazon2018", "--reviews", str(raw / "reviews.json.gz"),
                   "--meta", str(raw / "meta.json.gz"), "--out", str(tmp_path / "bad"), "--text-template", "{colour}",
                   check=False)
    assert result.returncode == 2 and "unknown field(s) ['colour']" in result.stderr
