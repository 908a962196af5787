"""Full-ranking evaluation: masking, skipped users, batching, and agreement with a per-user reference."""

import numpy as np
import pytest
import torch

from fitmm_core.data.mmrec_format import MMRecData
from fitmm_core.evaluation.evaluator import RankingEvaluator, evaluate
from fitmm_core.models.base import Recommender


class ScoreTable(Recommender):
    """A recommender that ranks by a fixed ``(n_users, n_items)`` table of scores."""

    def __init__(self, scores: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("scores", torch.as_tensor(scores, dtype=torch.float32))

    def full_sort_predict(self, users: torch.Tensor) -> torch.Tensor:
        return self.scores[users]


def pairs(*rows: tuple[int, int]) -> np.ndarray:
    return np.array(rows, dtype=np.int64).reshape(-1, 2)


# user 2 has no validation item and must be skipped on the valid split
DATA = MMRecData(
    name="tiny", n_users=3, n_items=6,
    train=pairs((0, 0), (0, 1), (1, 2), (1, 3), (2, 4)),
    valid=pairs((0, 2), (1, 4)),
    test=pairs((0, 3), (1, 5), (2, 0)),
)
# each user scores a training item highest, then the validation item, then the test item
SCORES = np.array([
    [10, 1, 9, 8, 0, 0],
    [0, 0, 10, 9.5, 9, 8],
    [8, 0, 0, 0, 10, 0],
])


def test_training_items_are_never_recommended():
    result = evaluate(ScoreTable(SCORES), DATA, "valid", ks=(1, 2))
    assert result["hit@1"] == 1.0
    assert result["precision@1"] == 1.0
    assert result["recall@1"] == 1.0


def test_test_split_masks_validation_items():
    result = evaluate(ScoreTable(SCORES), DATA, "test", ks=(1, 2))
    assert result["hit@1"] == 1.0
    assert result["ndcg@2"] == pytest.approx(1.0)


def test_mmrec_compat_leaves_validation_items_in_the_ranking():
    result = evaluate(ScoreTable(SCORES), DATA, "test", ks=(1, 2), mmrec_compat=True)
    # users 0 and 1 see their validation item at rank 1 and the test item at rank 2; user 2 has no valid item
    assert result["hit@1"] == pytest.approx(1 / 3)
    assert result["recall@2"] == 1.0
    assert result["ndcg@2"] == pytest.approx((1 / np.log2(3) + 1 / np.log2(3) + 1) / 3)


def test_users_without_relevant_items_are_skipped():
    evaluator = RankingEvaluator(DATA, "valid", ks=(1,))
    assert evaluator.users.tolist() == [0, 1]
    assert evaluator.n_relevant.tolist() == [1, 1]


def random_data(seed: int, n_users: int = 30, n_items: int = 25) -> MMRecData:
    rng = np.random.default_rng(seed)
    keys = rng.choice(n_users * n_items, size=n_users * 8, replace=False)
    all_pairs = np.stack([keys // n_items, keys % n_items], axis=1)
    label = rng.choice(3, size=len(all_pairs), p=[0.7, 0.15, 0.15])
    return MMRecData("random", n_users, n_items, all_pairs[label == 0], all_pairs[label == 1], all_pairs[label == 2])


def reference_metrics(scores: np.ndarray, data: MMRecData, split: str, k: int, mask_valid: bool) -> dict[str, float]:
    """Per-user loop straight from the definitions."""
    seen = [data.train, data.valid] if mask_valid else [data.train]
    per_user = {"recall": [], "ndcg": [], "precision": [], "map": [], "hit": []}
    for user in np.unique(data.split(split)[:, 0]):
        relevant = set(data.split(split)[data.split(split)[:, 0] == user, 1].tolist())
        masked = {int(i) for part in seen for u, i in part if u == user}
        ranked = [int(i) for i in np.argsort(-scores[user], kind="stable") if int(i) not in masked][:k]
        rel = [item in relevant for item in ranked]
        per_user["recall"].append(sum(rel) / len(relevant))
        per_user["precision"].append(sum(rel) / k)
        per_user["hit"].append(float(any(rel)))
        dcg = sum(1 / np.log2(r + 2) for r, hit in enumerate(rel) if hit)
        idcg = sum(1 / np.log2(r + 2) for r in range(min(len(relevant), k)))
        per_user["ndcg"].append(dcg / idcg)
        ap = sum(sum(rel[: r + 1]) / (r + 1) for r, hit in enumerate(rel) if hit)
        per_user["map"].append(ap / min(len(relevant), k))
    return {f"{name}@{k}": float(np.mean(values)) for name, values in per_user.items()}


@pytest.mark.parametrize("split", ["valid", "test"])
@pytest.mark.parametrize("mmrec_compat", [False, True])
def test_agrees_with_per_user_reference(split, mmrec_compat):
    data = random_data(seed=3)
    scores = np.random.default_rng(4).standard_normal((data.n_users, data.n_items))
    result = evaluate(ScoreTable(scores), data, split, ks=(5, 10), batch_users=7, mmrec_compat=mmrec_compat)
    for k in (5, 10):
        expected = reference_metrics(scores, data, split, k, mask_valid=split == "test" and not mmrec_compat)
        for key, value in expected.items():
            assert result[key] == pytest.approx(value, abs=1e-12), key


def test_result_does_not_depend_on_batch_size():
    data = random_data(seed=5)
    model = ScoreTable(np.random.default_rng(6).standard_normal((data.n_users, data.n_items)))
    results = [evaluate(model, data, "test", ks=(3, 10), batch_users=b) for b in (1, 4, 4096)]
    assert results[0] == results[1] == results[2]


def test_oracle_model_scores_one():
    data = random_data(seed=7)
    oracle = np.zeros((data.n_users, data.n_items))
    oracle[data.test[:, 0], data.test[:, 1]] = 1.0
    result = evaluate(ScoreTable(oracle), data, "test", ks=(10,))
    assert result["recall@10"] == 1.0
    assert result["ndcg@10"] == pytest.approx(1.0)
    assert result["map@10"] == pytest.approx(1.0)


def test_evaluation_restores_training_mode():
    model = ScoreTable(SCORES)
    model.train()
    evaluate(model, DATA, "valid", ks=(1,))
    assert model.training


def test_nan_scores_raise():
    scores = SCORES.copy()
    scores[1, 0] = np.nan
    with pytest.raises(FloatingPointError, match="NaN scores on the valid split"):
        evaluate(ScoreTable(scores), DATA, "valid", ks=(1,))


def test_wrong_score_shape_raises():
    with pytest.raises(ValueError, match=r"returned shape \(2, 5\); expected \(2, 6\)"):
        evaluate(ScoreTable(SCORES[:, :5]), DATA, "valid", ks=(1,))


@pytest.mark.parametrize(("split", "ks", "message"), [("train", (1,), "split must be"), ("test", (7,), "exceeds")])
def test_invalid_arguments_raise(split, ks, message):
    with pytest.raises(ValueError, match=message):
        RankingEvaluator(DATA, split, ks=ks)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_evaluation_matches_cpu():
    data = random_data(seed=8)
    model = ScoreTable(np.random.default_rng(9).standard_normal((data.n_users, data.n_items)))
    on_cpu = evaluate(model, data, "test", ks=(5, 10), batch_users=8)
    on_gpu = evaluate(model, data, "test", ks=(5, 10), batch_users=8, device="cuda")
    assert on_gpu == pytest.approx(on_cpu, abs=1e-12)
