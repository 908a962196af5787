"""Which torch device the encoders run on, and the mixed precision they use there."""

from __future__ import annotations

import contextlib

import torch

from fitmm_core.features.errors import EncoderConfigError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; an explicit device must be available."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise EncoderConfigError(f"device={device!r} is not a torch device ({exc}); use auto, cpu or cuda") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise EncoderConfigError(
            f"device={device!r} but this torch build sees no CUDA device; use device='auto' or 'cpu'"
        )
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise EncoderConfigError(f"device={device!r} but MPS is not available; use device='auto' or 'cpu'")
    return resolved


def inference_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (fp16 where the card has no bf16), plain fp32 elsewhere."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)
