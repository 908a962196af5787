"""Trainer: learning, early stopping, one test evaluation, exact resumption, loss and device errors."""

import collections
import json
import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fitmm_core.training.trainer as trainer_module
from fitmm_core.data.mmrec_format import MMRecData
from fitmm_core.evaluation.evaluator import RankingEvaluator, evaluate
from fitmm_core.models.base import BprBatch, Recommender
from fitmm_core.training.checkpoint import CheckpointError
from fitmm_core.device import resolve_device
from fitmm_core.training.trainer import NonFiniteLossError, TrainConfig, fit


class MatrixFactorization(Recommender):
    """BPR-MF: ``x_ui = p_u . q_i``; loss ``-log sigmoid(x_ui - x_uj) + reg/2 (|p_u|^2 + |q_i|^2 + |q_j|^2)``."""

    def __init__(self, n_users: int, n_items: int, dim: int = 8, reg: float = 1e-4) -> None:
        super().__init__()
        self.users = nn.Embedding(n_users, dim)
        self.items = nn.Embedding(n_items, dim)
        nn.init.normal_(self.users.weight, std=0.1)
        nn.init.normal_(self.items.weight, std=0.1)
        self.reg = reg

    def calculate_loss(self, batch: BprBatch) -> dict[str, torch.Tensor]:
        u, i, j = self.users(batch.users), self.items(batch.pos_items), self.items(batch.neg_items)
        bpr = -F.logsigmoid((u * i).sum(-1) - (u * j).sum(-1)).mean()
        reg = self.reg * (u.pow(2).sum() + i.pow(2).sum() + j.pow(2).sum()) / (2 * len(u))
        return {"loss": bpr + reg, "bpr": bpr, "reg": reg}

    def full_sort_predict(self, users: torch.Tensor) -> torch.Tensor:
        return self.users(users) @ self.items.weight.T


class Popularity(Recommender):
    """Scores every item by its number of training interactions; nothing to train."""

    def __init__(self, train: np.ndarray, n_items: int) -> None:
        super().__init__()
        self.register_buffer("counts", torch.bincount(torch.from_numpy(train[:, 1]), minlength=n_items).float())

    def full_sort_predict(self, users: torch.Tensor) -> torch.Tensor:
        return self.counts.expand(len(users), -1)


def planted_data(seed: int = 0, n_users: int = 60, n_items: int = 40, n_groups: int = 4, per_user: int = 8) -> MMRecData:
    """Users of group ``u % n_groups`` interact with items ``i % n_groups == g``; last two per user are valid, test."""
    rng = np.random.default_rng(seed)
    group_items = [np.arange(g, n_items, n_groups) for g in range(n_groups)]
    train, valid, test = [], [], []
    for user in range(n_users):
        items = rng.choice(group_items[user % n_groups], size=per_user, replace=False)
        train += [(user, i) for i in items[:-2]]
        valid.append((user, items[-2]))
        test.append((user, items[-1]))
    train, valid, test = (np.array(rows, dtype=np.int64) for rows in (train, valid, test))
    return MMRecData("planted", n_users, n_items, train, valid, test)


DATA = planted_data()


def new_model(seed: int = 0) -> MatrixFactorization:
    torch.manual_seed(seed)
    return MatrixFactorization(DATA.n_users, DATA.n_items)


def config(**overrides) -> TrainConfig:
    settings = dict(max_epochs=40, batch_size=64, learning_rate=0.05, patience=3, ks=(5, 10, 20), seed=5, device="cpu")
    return TrainConfig(**{**settings, **overrides})


def trace(result) -> list:
    return [(log.epoch, log.losses, log.valid) for log in result.history]


def test_learns_planted_structure_and_reports_summary():
    result = fit(new_model(), DATA, config())
    assert result.test["recall@10"] > 0.9  # random ranking gives about 0.3
    summary = result.summary("mf")
    assert set(summary) == {"model", "best_epoch", "valid", "test", "train_seconds_per_epoch",
                            "eval_seconds_per_epoch", "device", "epochs"}
    assert summary["device"] == "cpu" and summary["epochs"] == len(result.history)
    json.dumps(summary)


@pytest.mark.parametrize("eval_every", [1, 2])
def test_early_stopping_after_patience_restores_best_weights(eval_every):
    cfg = config(max_epochs=200, eval_every=eval_every)
    result = fit(new_model(), DATA, cfg)
    assert result.epochs == result.best_epoch + cfg.patience * eval_every < cfg.max_epochs
    assert [bool(log.valid) for log in result.history] == [
        (log.epoch % eval_every == 0) for log in result.history
    ]
    best = result.valid["recall@20"]
    assert result.history[result.best_epoch - 1].valid == result.valid
    assert all(log.valid["recall@20"] <= best for log in result.history if log.valid)
    assert all(log.valid["recall@20"] < best for log in result.history[: result.best_epoch - 1] if log.valid)
    assert evaluate(result.model, DATA, "valid", ks=cfg.ks) == result.valid


def test_test_split_is_evaluated_once(monkeypatch):
    calls = collections.Counter()

    class CountingEvaluator(RankingEvaluator):
        def __call__(self, model):
            calls[self.split] += 1
            return super().__call__(model)

    monkeypatch.setattr(trainer_module, "RankingEvaluator", CountingEvaluator)
    result = fit(new_model(), DATA, config(max_epochs=6, eval_every=2, patience=10))
    assert calls == {"valid": 3, "test": 1}
    assert result.epochs == 6


def test_same_seed_gives_identical_history():
    first = fit(new_model(), DATA, config(max_epochs=4, patience=10))
    second = fit(new_model(), DATA, config(max_epochs=4, patience=10))
    assert trace(first) == trace(second)
    assert first.test == second.test


class Crash(Exception):
    pass


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    cfg = config(max_epochs=6, patience=10)
    uninterrupted = fit(new_model(), DATA, cfg)

    def crash_after_third(log):
        if log.epoch == 3:
            raise Crash

    resumable = config(max_epochs=6, patience=10, checkpoint_dir=tmp_path / "ckpt")
    with pytest.raises(Crash):
        fit(new_model(), DATA, resumable, callback=crash_after_third)
    seen = []
    resumed = fit(new_model(seed=123), DATA, resumable, callback=seen.append)

    assert [log.epoch for log in seen] == [4, 5, 6]
    assert trace(resumed) == trace(uninterrupted)
    assert (resumed.best_epoch, resumed.valid, resumed.test) == (
        uninterrupted.best_epoch, uninterrupted.valid, uninterrupted.test)
    for name, tensor in uninterrupted.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], tensor, rtol=0, atol=0)
    folder = tmp_path / "ckpt"
    assert sorted(p.name for p in folder.iterdir()) == ["epoch-0006", "latest.json"]
    assert sorted(p.suffix for p in (folder / "epoch-0006").iterdir()) == [
        ".json", ".json", ".safetensors", ".safetensors", ".safetensors", ".safetensors"]


def test_finished_checkpoint_is_not_trained_again(tmp_path):
    cfg = config(max_epochs=3, patience=10, checkpoint_dir=tmp_path)
    first = fit(new_model(), DATA, cfg)
    seen = []
    again = fit(new_model(seed=9), DATA, cfg, callback=seen.append)
    assert seen == []
    assert trace(again) == trace(first) and again.test == first.test


def test_resuming_with_other_settings_is_refused(tmp_path):
    fit(new_model(), DATA, config(max_epochs=1, checkpoint_dir=tmp_path))
    with pytest.raises(CheckpointError, match=r"config.learning_rate: saved 0.05, now 0.01"):
        fit(new_model(), DATA, config(max_epochs=2, learning_rate=0.01, checkpoint_dir=tmp_path))


class NanAtBatch(MatrixFactorization):
    """MF whose ``bpr`` term turns NaN on one chosen call of ``calculate_loss`` (1-based)."""

    def __init__(self, n_users: int, n_items: int, nan_call: int) -> None:
        super().__init__(n_users, n_items)
        self.nan_call, self.calls = nan_call, 0

    def calculate_loss(self, batch: BprBatch) -> dict[str, torch.Tensor]:
        terms = super().calculate_loss(batch)
        self.calls += 1
        if self.calls == self.nan_call:
            terms["bpr"] = terms["bpr"] * float("nan")
        return terms


def test_non_finite_loss_names_epoch_batch_and_term():
    batches = -(-len(DATA.train) // 64)
    model = NanAtBatch(DATA.n_users, DATA.n_items, nan_call=batches + 3)
    with pytest.raises(NonFiniteLossError, match=rf"epoch 2, batch 3/{batches}: term 'bpr' = nan"):
        fit(model, DATA, config())


def test_model_without_parameters_is_evaluated_once():
    result = fit(Popularity(DATA.train, DATA.n_items), DATA, config(learning_rate=0.0))
    assert result.best_epoch == 0 and result.epochs == 0
    assert [log.losses for log in result.history] == [{}]
    assert result.train_seconds_per_epoch == 0.0
    assert set(result.test) == set(result.valid) and "recall@20" in result.test


@pytest.mark.parametrize(("learning_rate", "message"), [(None, "learning_rate is None"), (0.0, "learning_rate is 0")])
def test_missing_learning_rate_is_an_error(learning_rate, message):
    with pytest.raises(ValueError, match=message):
        fit(new_model(), DATA, config(learning_rate=learning_rate))


def test_amp_is_ignored_on_cpu_with_a_note(caplog):
    with caplog.at_level(logging.INFO, logger="fitmm_core.training.trainer"):
        fit(new_model(), DATA, config(max_epochs=1, amp=True))
    assert "amp=True ignored" in caplog.text
    assert "epoch 1/1 loss=" in caplog.text


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"stopping_metric": "recall@50"}, "stopping_metric"),
        ({"stopping_metric": "auc@20"}, "stopping_metric"),
        ({"eval_every": 50}, "eval_every"),
        ({"patience": 0}, "patience"),
        ({"learning_rate": -1.0}, "learning_rate"),
    ],
)
def test_invalid_config_is_rejected(overrides, message):
    with pytest.raises(ValueError, match=message):
        config(**overrides)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="not"):
        resolve_device("quantum")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda:1")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_with_bf16_autocast_learns():
    result = fit(new_model(), DATA, config(device="cuda", amp=True))
    assert result.device.startswith("cuda:")
    assert result.test["recall@10"] > 0.9
