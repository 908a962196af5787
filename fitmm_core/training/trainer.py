"""Training loop with MMRec's protocol: BPR mini-batches, Adam, early stopping on validation.

Per epoch: ``model.pre_epoch()``, one pass over :class:`BprSampler` batches (``calculate_loss`` ->
backward on the ``loss`` term -> optional gradient clipping -> Adam step), then, every
``eval_every`` epochs, full-ranking validation. The weights of the best validation epoch (by
``stopping_metric``, strictly greater wins, so the earliest of equal scores is kept) are copied to
CPU memory; training stops after ``patience`` evaluations in a row without improvement (MMRec's
``stopping_step`` stops one evaluation later) or at ``max_epochs``. The best weights are restored
and the test split is evaluated once, at the end; test scores never choose anything.

Mixed precision (``amp=True``, CUDA only): the forward pass of the loss runs under
``torch.autocast(dtype=bfloat16)``; backward, optimiser and evaluation run in float32.
Non-finite losses are checked once per epoch (one device sync) and raise
:class:`NonFiniteLossError` naming the first bad epoch, batch and loss term.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fitmm_core.data.mmrec_format import MMRecData
from fitmm_core.evaluation.evaluator import RankingEvaluator
from fitmm_core.evaluation.metrics import METRIC_NAMES
from fitmm_core.models.base import Recommender
from fitmm_core.training.checkpoint import (
    Checkpoint,
    CheckpointError,
    capture_rng_state,
    cpu_copy,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from fitmm_core.device import resolve_device, synchronize
from fitmm_core.training.sampler import BprSampler

logger = logging.getLogger(__name__)

RESUMABLE_SETTINGS = frozenset({"max_epochs", "checkpoint_dir", "device"})
"""Settings that may change between an interrupted run and its resumption."""


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite; the message names the epoch, batch and term."""


@dataclass
class TrainConfig:
    """Settings of :func:`fit`. ``learning_rate=None`` must be resolved by the caller (model registry)."""

    max_epochs: int = 1000
    batch_size: int = 2048
    learning_rate: float | None = None
    weight_decay: float = 0.0
    patience: int = 20
    eval_every: int = 1
    ks: tuple[int, ...] = (10, 20, 50)
    stopping_metric: str = "recall@20"
    seed: int = 999
    device: str = "auto"
    amp: bool = False
    checkpoint_dir: Path | None = None
    mmrec_compat: bool = False
    max_grad_norm: float | None = None
    eval_batch_users: int = 4096

    def __post_init__(self) -> None:
        self.ks = tuple(int(k) for k in self.ks)
        if self.checkpoint_dir is not None:
            self.checkpoint_dir = Path(self.checkpoint_dir)
        positive = ("max_epochs", "batch_size", "patience", "eval_every", "eval_batch_users")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer; got {value!r}")
        if self.eval_every > self.max_epochs:
            raise ValueError(
                f"TrainConfig.eval_every ({self.eval_every}) exceeds max_epochs ({self.max_epochs}): nothing would be validated"
            )
        if self.learning_rate is not None and not self.learning_rate >= 0:
            raise ValueError(f"TrainConfig.learning_rate must be >= 0; got {self.learning_rate!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"TrainConfig.weight_decay must be >= 0; got {self.weight_decay!r}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"TrainConfig.max_grad_norm must be positive or None; got {self.max_grad_norm!r}")
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"TrainConfig.ks must be positive integers; got {self.ks}")
        metric, _, k = self.stopping_metric.partition("@")
        if metric not in METRIC_NAMES or not k.isdigit() or int(k) not in self.ks:
            raise ValueError(
                f"TrainConfig.stopping_metric {self.stopping_metric!r} must be '<metric>@<k>' with metric in "
                f"{list(METRIC_NAMES)} and k in ks {list(self.ks)}"
            )

    def to_json(self) -> dict[str, Any]:
        """The settings as JSON-ready values."""
        values = asdict(self)
        values["ks"] = list(self.ks)
        values["checkpoint_dir"] = None if self.checkpoint_dir is None else str(self.checkpoint_dir)
        return values


@dataclass
class EpochLog:
    """One epoch: mean loss per term, validation metrics (empty when not evaluated) and timings."""

    epoch: int
    losses: dict[str, float]
    valid: dict[str, float]
    train_seconds: float
    eval_seconds: float


@dataclass
class TrainResult:
    """The outcome of :func:`fit`; ``model`` holds the best validation weights."""

    best_epoch: int
    valid: dict[str, float]
    test: dict[str, float]
    history: list[EpochLog]
    train_seconds_per_epoch: float
    eval_seconds_per_epoch: float
    device: str
    model: Recommender = field(repr=False)

    @property
    def epochs(self) -> int:
        """Training epochs run (0 for a model without parameters)."""
        return max((log.epoch for log in self.history), default=0)

    def summary(self, model_name: str) -> dict[str, Any]:
        """The JSON line printed by ``fitmm train``."""
        return {
            "model": model_name,
            "best_epoch": self.best_epoch,
            "valid": self.valid,
            "test": self.test,
            "train_seconds_per_epoch": self.train_seconds_per_epoch,
            "eval_seconds_per_epoch": self.eval_seconds_per_epoch,
            "device": self.device,
            "epochs": self.epochs,
        }


@dataclass
class _Progress:
    """Early-stopping bookkeeping; with the weights, optimiser and RNGs it is the resumable state."""

    epoch: int = 0
    best_epoch: int = 0
    best_score: float | None = None
    best_valid: dict[str, float] = field(default_factory=dict)
    bad_evaluations: int = 0
    stopped: bool = False
    history: list[EpochLog] = field(default_factory=list)

    def record(self, log: EpochLog, config: TrainConfig) -> bool:
        """Add ``log``; returns whether it is a new best. Sets ``stopped`` when patience runs out."""
        self.history.append(log)
        self.epoch = log.epoch
        if not log.valid:
            return False
        score = log.valid[config.stopping_metric]
        if self.best_score is None or score > self.best_score:
            self.best_epoch, self.best_score, self.best_valid = log.epoch, score, log.valid
            self.bad_evaluations = 0
            return True
        self.bad_evaluations += 1
        self.stopped = self.bad_evaluations >= config.patience
        return False

    def to_json(self) -> dict[str, Any]:
        values = asdict(self)
        values["history"] = [asdict(log) for log in self.history]
        return values

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> "_Progress":
        history = [EpochLog(**log) for log in values["history"]]
        return cls(**{**{k: values[k] for k in (f.name for f in fields(cls))}, "history": history})


def _fingerprint(model: Recommender, data: MMRecData, config: TrainConfig) -> dict[str, Any]:
    """What must not change between an interrupted run and its resumption."""
    settings = {k: v for k, v in config.to_json().items() if k not in RESUMABLE_SETTINGS}
    return json.loads(json.dumps({
        "config": settings,
        "data": {
            "name": data.name, "n_users": data.n_users, "n_items": data.n_items,
            "n_train": len(data.train), "n_valid": len(data.valid), "n_test": len(data.test),
        },
        "model": {
            "class": f"{type(model).__module__}.{type(model).__qualname__}",
            "state": {name: list(t.shape) for name, t in model.state_dict().items()},
        },
    }))


def _check_fingerprint(saved: dict[str, Any], current: dict[str, Any], directory: Path) -> None:
    differences = [
        f"{section}.{key}: saved {saved[section].get(key)!r}, now {current[section].get(key)!r}"
        for section in current
        for key in sorted(set(saved.get(section, {})) | set(current[section]))
        if saved.get(section, {}).get(key) != current[section].get(key)
    ]
    if differences:
        raise CheckpointError(
            f"{directory}: the checkpoint belongs to a different run ({'; '.join(differences[:5])}); "
            "use another checkpoint_dir or the same settings"
        )


def _validated_terms(terms: dict[str, torch.Tensor], model: Recommender) -> tuple[str, ...]:
    """The loss term names, after checking the ``calculate_loss`` contract on the first batch."""
    if not isinstance(terms, dict) or "loss" not in terms:
        raise ValueError(f"{type(model).__name__}.calculate_loss must return a dict with key 'loss'")
    for name, value in terms.items():
        if not torch.is_tensor(value) or value.ndim != 0:
            raise ValueError(f"{type(model).__name__}.calculate_loss term {name!r} must be a scalar tensor")
    return tuple(terms)


def _train_epoch(
    model: Recommender,
    sampler: BprSampler,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    config: TrainConfig,
    device: torch.device,
    use_amp: bool,
) -> dict[str, float]:
    """One pass over the training pairs; returns the mean of each loss term over the batches."""
    model.train()
    model.pre_epoch()
    names: tuple[str, ...] = ()
    per_batch: list[torch.Tensor] = []
    for batch in sampler:
        batch = batch.to(device)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            terms = model.calculate_loss(batch)
        if not names:
            names = _validated_terms(terms, model)
        elif tuple(terms) != names:
            raise ValueError(f"{type(model).__name__}.calculate_loss returned terms {tuple(terms)}; earlier {names}")
        terms["loss"].backward()
        if config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        per_batch.append(torch.stack([terms[name].detach().float() for name in names]))
    table = torch.stack(per_batch).cpu()
    finite = torch.isfinite(table)
    if not bool(finite.all()):
        batch_index, term_index = (int(i) for i in torch.nonzero(~finite)[0])
        raise NonFiniteLossError(
            f"non-finite loss at epoch {epoch}, batch {batch_index + 1}/{len(per_batch)}: term "
            f"{names[term_index]!r} = {float(table[batch_index, term_index])} "
            f"(all terms: {dict(zip(names, table[batch_index].tolist()))}); lower the learning rate "
            "or set max_grad_norm"
        )
    return {name: float(table[:, i].mean()) for i, name in enumerate(names)}


def _timed(function: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """``function()`` and its wall-clock seconds, with queued GPU work included."""
    synchronize(device)
    start = time.perf_counter()
    value = function()
    synchronize(device)
    return value, time.perf_counter() - start


def _log_epoch(log: EpochLog, config: TrainConfig, is_best: bool) -> None:
    losses = " ".join(f"{name}={value:.4f}" for name, value in log.losses.items())
    message = f"epoch {log.epoch}/{config.max_epochs} {losses} train {log.train_seconds:.2f}s"
    if log.valid:
        shown = dict.fromkeys(("recall@20", "ndcg@20", config.stopping_metric))
        scores = " ".join(f"{key}={log.valid[key]:.4f}" for key in shown if key in log.valid)
        message += f" | valid {scores} eval {log.eval_seconds:.2f}s{' *best*' if is_best else ''}"
    logger.info(message)


def _result(
    model: Recommender, progress: _Progress, test: dict[str, float], device: torch.device
) -> TrainResult:
    trained = [log.train_seconds for log in progress.history if log.epoch > 0]
    evaluated = [log.eval_seconds for log in progress.history if log.valid]
    return TrainResult(
        best_epoch=progress.best_epoch,
        valid=progress.best_valid,
        test=test,
        history=progress.history,
        train_seconds_per_epoch=float(np.mean(trained)) if trained else 0.0,
        eval_seconds_per_epoch=float(np.mean(evaluated)) if evaluated else 0.0,
        device=str(device),
        model=model,
    )


def fit(
    model: Recommender,
    data: MMRecData,
    config: TrainConfig,
    callback: Callable[[EpochLog], None] | None = None,
) -> TrainResult:
    """Train ``model`` on ``data.train``, early-stop on ``data.valid``, evaluate the best weights on ``data.test``.

    With ``config.checkpoint_dir`` set, the state after every epoch is saved there and a later call
    with the same settings resumes from the last finished epoch, ending with exactly the result of
    an uninterrupted run. A model without trainable parameters (most-popular) is evaluated once.
    ``callback`` receives each :class:`EpochLog` after its checkpoint is written.
    """
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    model.to(device)

    def evaluator(split: str) -> RankingEvaluator:
        return RankingEvaluator(data, split, config.ks, config.eval_batch_users, config.mmrec_compat, device)

    valid_evaluator = evaluator("valid")
    progress = _Progress()
    if not model.trainable:
        valid, seconds = _timed(lambda: valid_evaluator(model), device)
        progress.record(EpochLog(0, {}, valid, 0.0, seconds), config)
        logger.info("%s has no trainable parameters: evaluated once", type(model).__name__)
        return _result(model, progress, evaluator("test")(model), device)

    if config.learning_rate is None:
        raise ValueError(
            "TrainConfig.learning_rate is None: pass the model's default (fitmm_core.models.MODELS[name].learning_rate)"
        )
    if config.learning_rate == 0:
        raise ValueError(f"TrainConfig.learning_rate is 0 but {type(model).__name__} has parameters to train")
    use_amp = config.amp and device.type == "cuda"
    if config.amp and not use_amp:
        logger.info("amp=True ignored: mixed precision is used on CUDA only (device %s)", device)
    sampler = BprSampler(data.train, data.n_items, config.batch_size, config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    fingerprint = _fingerprint(model, data, config)
    best_state: dict[str, torch.Tensor] | None = None

    if config.checkpoint_dir is not None and (saved := load_checkpoint(config.checkpoint_dir)) is not None:
        _check_fingerprint(saved.progress["fingerprint"], fingerprint, config.checkpoint_dir)
        model.load_state_dict(saved.model_state)
        optimizer.load_state_dict(saved.optimizer_state)
        sampler.load_state_dict(saved.progress["sampler"])
        restore_rng_state(saved.rng_state)
        progress = _Progress.from_json(saved.progress["state"])
        best_state = saved.best_state
        logger.info("resumed from %s after epoch %d", config.checkpoint_dir, progress.epoch)

    while not progress.stopped and progress.epoch < config.max_epochs:
        epoch = progress.epoch + 1
        losses, train_seconds = _timed(
            lambda: _train_epoch(model, sampler, optimizer, epoch, config, device, use_amp), device
        )
        valid, eval_seconds = {}, 0.0
        if epoch % config.eval_every == 0:
            valid, eval_seconds = _timed(lambda: valid_evaluator(model), device)
        log = EpochLog(epoch, losses, valid, train_seconds, eval_seconds)
        is_best = progress.record(log, config)
        if is_best:
            best_state = cpu_copy(model.state_dict())
        _log_epoch(log, config, is_best)
        if config.checkpoint_dir is not None:
            save_checkpoint(config.checkpoint_dir, Checkpoint(
                epoch=epoch,
                model_state=model.state_dict(),
                best_state=best_state,
                optimizer_state=optimizer.state_dict(),
                rng_state=capture_rng_state(),
                progress={"state": progress.to_json(), "sampler": sampler.state_dict(), "fingerprint": fingerprint},
            ))
        if callback is not None:
            callback(log)

    if best_state is None:
        raise RuntimeError("training ended without a validation evaluation; check eval_every and max_epochs")
    if progress.stopped:
        logger.info("early stop after epoch %d: no %s gain in %d evaluations", progress.epoch,
                    config.stopping_metric, config.patience)
    model.load_state_dict(best_state)
    test = evaluator("test")(model)
    logger.info("best epoch %d: valid %s=%.4f, test %s=%.4f", progress.best_epoch, config.stopping_metric,
                progress.best_score, config.stopping_metric, test[config.stopping_metric])
    return _result(model, progress, test, device)
