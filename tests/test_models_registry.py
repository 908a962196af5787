"""The model registry: names, defaults, setting validation and command-line coercion."""

import numpy as np
import pytest
import torch

from fitmm_core.models import FITMM, MODELS, LightGCN, ModelInputs, build_model, coerce_setting, resolve_settings


def tiny_inputs() -> ModelInputs:
    rng = np.random.default_rng(0)
    pairs = np.array([(u, i) for u in range(30) for i in range(20) if i % 4 == u % 4])
    return ModelInputs(30, 20, pairs, {"image": rng.normal(size=(20, 8)).astype(np.float32)})


def test_registered_names_and_learning_rates():
    assert set(MODELS) == {"mostpop", "lightgcn", "freedom", "fitmm"}
    assert MODELS["lightgcn"].learning_rate == 1e-3 and MODELS["freedom"].learning_rate == 1e-3
    assert MODELS["fitmm"].defaults["num_bands"] == 3 and MODELS["fitmm"].cls is FITMM
    assert all(spec.description for spec in MODELS.values())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_builds_with_its_defaults(name):
    settings = {"knn_k": 3} if "knn_k" in MODELS[name].defaults else None
    model = build_model(name, tiny_inputs(), settings)
    assert isinstance(model, MODELS[name].cls)


def test_command_line_strings_are_coerced_to_the_default_type():
    settings = resolve_settings(
        "fitmm", {"num_bands": "4", "lambda_ib": "0.5", "use_gate": "false", "spectral_basis": "dct", "ib_beta": 3}
    )
    assert settings["num_bands"] == 4 and settings["lambda_ib"] == 0.5 and settings["use_gate"] is False
    assert settings["spectral_basis"] == "dct" and settings["ib_beta"] == 3.0 and isinstance(settings["ib_beta"], float)
    model = build_model("lightgcn", tiny_inputs(), {"num_layers": "3", "embedding_dim": "8"})
    assert isinstance(model, LightGCN) and model.num_layers == 3 and model.user_embedding.embedding_dim == 8


def test_unknown_setting_names_the_key_and_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown setting 'num_band' for model 'fitmm'; valid settings: .*num_bands"):
        build_model("fitmm", tiny_inputs(), {"num_band": 4})


def test_unknown_model_lists_available_ones():
    with pytest.raises(ValueError, match="unknown model 'bm3'; available: fitmm, freedom, lightgcn, mostpop"):
        build_model("bm3", tiny_inputs())


@pytest.mark.parametrize(
    "value, default, message",
    [
        ("abc", 3, "expected int"),
        ("maybe", True, "expected a boolean"),
        ("1e", 0.5, "expected float"),
        (2.5, 3, "expected int"),
    ],
)
def test_bad_values_are_rejected(value, default, message):
    with pytest.raises(ValueError, match=f"setting x={value!r}: {message}"):
        coerce_setting("x", value, default)


def test_seeded_build_is_reproducible_and_leaves_the_global_rng_alone():
    pairs = np.array([[0, 0], [0, 1], [1, 1], [2, 2], [2, 0], [1, 2]])
    inputs = ModelInputs(n_users=3, n_items=3, train_pairs=pairs, features={})
    torch.manual_seed(5)
    before = torch.rand(1)
    torch.manual_seed(5)
    first = build_model("lightgcn", inputs, seed=11).state_dict()
    after = torch.rand(1)
    second = build_model("lightgcn", inputs, seed=11).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert torch.equal(before, after)
