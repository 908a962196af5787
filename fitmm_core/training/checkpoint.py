"""Per-epoch training checkpoints in safetensors + JSON, written so a reader never sees half of one.

Layout of a checkpoint directory::

    latest.json                 {"format": 1, "epoch": 7, "epoch_dir": "epoch-0007"}; replaced last
    epoch-0007/
        model.safetensors       the weights after epoch 7
        best_model.safetensors  the weights of the best validation epoch so far (absent before one)
        optimizer.safetensors   the optimiser's tensors (Adam moments, steps)
        optimizer.json          its param groups and any non-tensor state
        rng.safetensors         torch's CPU (and CUDA) generator states
        progress.json           the caller's JSON state (best-so-far, patience, history, ...)

An epoch is written into a temporary folder that is renamed into place, then ``latest.json`` is
replaced; older epoch folders are removed afterwards. A crash at any point leaves ``latest.json``
naming a complete folder. Nothing is unpickled: tensors come from safetensors, the rest from JSON.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from fitmm_core.data.mmrec_format import atomic_write_bytes

CHECKPOINT_FORMAT = 1
LATEST_FILE = "latest.json"
EPOCH_DIR_PREFIX = "epoch-"


class CheckpointError(RuntimeError):
    """A checkpoint directory that cannot be read back; the message names the file."""


@dataclass(frozen=True)
class Checkpoint:
    """Everything needed to continue training exactly where epoch ``epoch`` ended."""

    epoch: int
    model_state: dict[str, torch.Tensor]
    best_state: dict[str, torch.Tensor] | None
    optimizer_state: dict[str, Any] | None
    rng_state: dict[str, torch.Tensor]
    progress: dict[str, Any]


def cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies (no shared storage, as safetensors requires)."""
    return {name: tensor.detach().to("cpu", copy=True).contiguous() for name, tensor in state.items()}


def capture_rng_state() -> dict[str, torch.Tensor]:
    """torch's global generator states: ``torch_cpu`` and ``torch_cuda.<i>`` per initialised GPU."""
    state = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            state[f"torch_cuda.{index}"] = cuda_state
    return state


def restore_rng_state(state: dict[str, torch.Tensor]) -> None:
    """Inverse of :func:`capture_rng_state`; CUDA states are restored only where those GPUs exist."""
    torch.set_rng_state(state["torch_cpu"])
    cuda_states = [state[k] for k in sorted(state) if k.startswith("torch_cuda.")]
    if cuda_states and torch.cuda.is_available() and len(cuda_states) <= torch.cuda.device_count():
        for index, cuda_state in enumerate(cuda_states):
            torch.cuda.set_rng_state(cuda_state, index)


def _split_optimizer_state(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors of ``optimizer.state_dict()`` keyed ``"<param index>/<name>"``, and the JSON rest."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for index, slot in state_dict["state"].items():
        for name, value in slot.items():
            if torch.is_tensor(value):
                tensors[f"{index}/{name}"] = value
            else:
                scalars[f"{index}/{name}"] = value
    return cpu_copy(tensors), {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`_split_optimizer_state`."""
    state: dict[int, dict[str, Any]] = defaultdict(dict)
    for key, value in (*tensors.items(), *meta["scalars"].items()):
        index, name = key.split("/", 1)
        state[int(index)][name] = value
    return {"state": dict(state), "param_groups": meta["param_groups"]}


def save_checkpoint(directory: Path, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` under ``directory`` and point ``latest.json`` at it; returns its folder."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{EPOCH_DIR_PREFIX}{checkpoint.epoch:04d}"
    final = directory / name
    staging = directory / f".{name}.tmp-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    (staging / "model.safetensors").write_bytes(save_tensors(cpu_copy(checkpoint.model_state)))
    if checkpoint.best_state is not None:
        (staging / "best_model.safetensors").write_bytes(save_tensors(cpu_copy(checkpoint.best_state)))
    if checkpoint.optimizer_state is not None:
        tensors, meta = _split_optimizer_state(checkpoint.optimizer_state)
        (staging / "optimizer.safetensors").write_bytes(save_tensors(tensors))
        (staging / "optimizer.json").write_text(json.dumps(meta))
    (staging / "rng.safetensors").write_bytes(save_tensors(cpu_copy(checkpoint.rng_state)))
    (staging / "progress.json").write_text(json.dumps(checkpoint.progress, indent=1))
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    atomic_write_bytes(
        directory / LATEST_FILE, json.dumps({"format": CHECKPOINT_FORMAT, "epoch": checkpoint.epoch, "epoch_dir": name}).encode()
    )
    for stale in directory.iterdir():
        if stale != final and stale.is_dir() and stale.name.lstrip(".").startswith(EPOCH_DIR_PREFIX):
            shutil.rmtree(stale, ignore_errors=True)
    return final


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_tensors(path.read_bytes())
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: cannot read tensors ({exc})") from exc


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read JSON ({exc})") from exc


def load_checkpoint(directory: Path) -> Checkpoint | None:
    """The checkpoint ``latest.json`` points at, or ``None`` when ``directory`` holds none yet."""
    directory = Path(directory)
    latest = directory / LATEST_FILE
    if not latest.exists():
        return None
    pointer = _read_json(latest)
    if pointer.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{latest}: checkpoint format {pointer.get('format')!r}; expected {CHECKPOINT_FORMAT}")
    folder = directory / pointer["epoch_dir"]
    best_path = folder / "best_model.safetensors"
    optimizer_path = folder / "optimizer.safetensors"
    optimizer_state = None
    if optimizer_path.exists():
        optimizer_state = _join_optimizer_state(_read_tensors(optimizer_path), _read_json(folder / "optimizer.json"))
    return Checkpoint(
        epoch=int(pointer["epoch"]),
        model_state=_read_tensors(folder / "model.safetensors"),
        best_state=_read_tensors(best_path) if best_path.exists() else None,
        optimizer_state=optimizer_state,
        rng_state=_read_tensors(folder / "rng.safetensors"),
        progress=_read_json(folder / "progress.json"),
    )
