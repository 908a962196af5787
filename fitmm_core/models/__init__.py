"""Model registry: the names the command line and the pipeline use, with default settings.

``build_model("fitmm", inputs, {"num_bands": "4"})`` validates the setting names against the
model's defaults and coerces command-line strings to the default's type. The learning rate is a
trainer setting; ``ModelSpec.learning_rate`` is its default for the model.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import torch

from fitmm_core.models.base import BprBatch, ModelInputs, Recommender
from fitmm_core.models.fitmm import FITMM
from fitmm_core.models.freedom import FREEDOM
from fitmm_core.models.lightgcn import LightGCN
from fitmm_core.models.mostpop import MostPop

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its class, default settings (constructor keywords) and learning rate."""

    name: str
    cls: type[Recommender]
    defaults: dict[str, Any] = field(default_factory=dict)
    learning_rate: float = 1e-3
    description: str = ""


def _constructor_defaults(cls: type[Recommender]) -> dict[str, Any]:
    parameters = list(inspect.signature(cls.__init__).parameters.values())[2:]
    return {p.name: p.default for p in parameters}


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("mostpop", MostPop, _constructor_defaults(MostPop), 0.0, "most popular training items"),
        ModelSpec("lightgcn", LightGCN, _constructor_defaults(LightGCN), 1e-3, "LightGCN on the user-item graph"),
        ModelSpec(
            "freedom", FREEDOM, _constructor_defaults(FREEDOM), 1e-3,
            "FREEDOM: frozen kNN item graph + degree-sensitive pruning of the user-item graph",
        ),
        ModelSpec(
            "fitmm", FITMM, _constructor_defaults(FITMM), 1e-3,
            "FITMM: spectral bands, within-band fusion, residual gate, frequency-domain IB",
        ),
    )
}


def coerce_setting(name: str, value: Any, default: Any) -> Any:
    """``value`` converted to the type of ``default`` (strings from ``--set key=value`` included)."""
    target = type(default)
    if isinstance(value, target) and not (target is int and isinstance(value, bool)):
        return value
    if target is bool:
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"setting {name}={value!r}: expected a boolean (true/false, 1/0, yes/no)")
    if target is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and target in (int, float):
        try:
            return target(value.strip())
        except ValueError:
            raise ValueError(f"setting {name}={value!r}: expected {target.__name__}") from None
    if target is str:
        return str(value)
    raise ValueError(f"setting {name}={value!r}: expected {target.__name__}, got {type(value).__name__}")


def resolve_settings(name: str, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The model's defaults overridden by ``settings`` (validated and coerced)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
    spec = MODELS[name]
    resolved = dict(spec.defaults)
    for key, value in (settings or {}).items():
        if key not in spec.defaults:
            valid = ", ".join(sorted(spec.defaults)) or "none"
            raise ValueError(f"unknown setting {key!r} for model {name!r}; valid settings: {valid}")
        resolved[key] = coerce_setting(key, value, spec.defaults[key])
    return resolved


def build_model(
    name: str, inputs: ModelInputs, settings: dict[str, Any] | None = None, seed: int | None = None
) -> Recommender:
    """Construct model ``name`` on ``inputs`` with its defaults overridden by ``settings``.

    With ``seed``, parameters are initialised from ``torch.manual_seed(seed)`` (the caller's global
    RNG state is left as it was), so the same command and seed give the same model.
    """
    settings = resolve_settings(name, settings)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return MODELS[name].cls(inputs, **settings)


__all__ = [
    "MODELS",
    "BprBatch",
    "FITMM",
    "FREEDOM",
    "LightGCN",
    "ModelInputs",
    "ModelSpec",
    "MostPop",
    "Recommender",
    "build_model",
    "coerce_setting",
    "resolve_settings",
]
