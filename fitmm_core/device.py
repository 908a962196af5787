"""The torch device of every stage: ``auto`` picks CUDA when present; an explicit request that cannot be met
fails. Also the inference precision of the encoders there."""

from __future__ import annotations

import contextlib
import itertools

import torch
from torch import nn


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> ``cuda`` if available else ``cpu``; ``"cpu"``, ``"cuda"``, ``"cuda:N"`` as given.

    A CUDA device always carries its index (``cuda`` -> ``cuda:<current>``) so devices compare equal
    to those of tensors placed on them. Raises ``ValueError`` for an unknown spec and ``RuntimeError``
    when CUDA (or device ``N``) is asked for but absent, rather than silently running on the CPU.
    """
    if isinstance(spec, str) and spec.strip().lower() == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(spec.strip().lower() if isinstance(spec, str) else spec)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device {spec!r} is not valid; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from exc
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ValueError(f"device {spec!r} is not supported; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if not torch.cuda.is_available():
        raise RuntimeError(f"device {spec!r} was requested but CUDA is not available on this machine")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise RuntimeError(f"device {spec!r} was requested but only {count} CUDA device(s) exist")
    return device if device.index is not None else torch.device("cuda", torch.cuda.current_device())


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer; ``cpu`` for a model with neither."""
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work on ``device`` so wall-clock timings are true; no-op elsewhere."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def inference_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (fp16 where the card has no bf16), plain fp32 elsewhere."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)
