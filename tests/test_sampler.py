"""BPR sampler: every positive once per epoch, negatives never positives, seeded and resumable."""

import numpy as np
import pytest
import torch

from fitmm_core.training.sampler import BprSampler

N_ITEMS = 10
# user 0 likes 0..7 (two negatives possible), user 1 likes 0..8 (only item 9 is negative), user 2 likes 3
TRAIN = np.array([(0, i) for i in range(8)] + [(1, i) for i in range(9)] + [(2, 3)], dtype=np.int64)


def epoch_arrays(sampler: BprSampler) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    batches = list(sampler)
    return tuple(torch.cat([getattr(b, f) for b in batches]).numpy() for f in ("users", "pos_items", "neg_items"))


def test_each_epoch_visits_every_positive_once_in_batches():
    sampler = BprSampler(TRAIN, N_ITEMS, batch_size=4, seed=1)
    batches = list(sampler)
    assert len(sampler) == len(batches) == 5
    assert [len(b.users) for b in batches] == [4, 4, 4, 4, 2]
    users, positives, _ = epoch_arrays(sampler)
    assert sorted(zip(users.tolist(), positives.tolist())) == sorted(map(tuple, TRAIN.tolist()))


def test_negatives_are_never_training_positives():
    sampler = BprSampler(TRAIN, N_ITEMS, batch_size=5, seed=2)
    positives = {tuple(p) for p in TRAIN.tolist()}
    for _ in range(30):
        users, _, negatives = epoch_arrays(sampler)
        assert not any((u, j) in positives for u, j in zip(users.tolist(), negatives.tolist()))
        assert set(negatives[users == 1].tolist()) == {9}
        assert set(negatives[users == 0].tolist()) <= {8, 9}


def test_negatives_cover_all_candidate_items():
    sampler = BprSampler(np.array([[0, 0]] * 400), n_items=5, seed=3)
    _, _, negatives = epoch_arrays(sampler)
    assert set(negatives.tolist()) == {1, 2, 3, 4}


def test_same_seed_same_epochs_other_seed_differs():
    first = [epoch_arrays(BprSampler(TRAIN, N_ITEMS, seed=7)) for _ in range(2)]
    for a, b in zip(*first):
        np.testing.assert_array_equal(a, b)
    other = epoch_arrays(BprSampler(TRAIN, N_ITEMS, seed=8))
    assert not all(np.array_equal(a, b) for a, b in zip(first[0], other))


def test_state_dict_resumes_the_sequence_of_epochs():
    sampler = BprSampler(TRAIN, N_ITEMS, seed=11)
    epoch_arrays(sampler)
    state = sampler.state_dict()
    expected = epoch_arrays(sampler)
    resumed = BprSampler(TRAIN, N_ITEMS, seed=0)
    resumed.load_state_dict(state)
    for a, b in zip(expected, epoch_arrays(resumed)):
        np.testing.assert_array_equal(a, b)


def test_is_positive_matches_membership():
    sampler = BprSampler(TRAIN, N_ITEMS, seed=0)
    users = np.array([0, 0, 1, 2, 2])
    items = np.array([7, 8, 9, 3, 9])
    assert sampler.is_positive(users, items).tolist() == [True, False, False, True, False]


@pytest.mark.parametrize(
    ("pairs", "n_items", "message"),
    [
        (np.array([(0, i) for i in range(4)]), 4, "all 4 items"),
        (np.array([[0, 4]]), 4, "outside"),
        (np.zeros((0, 2), dtype=np.int64), 4, "non-empty"),
        (np.array([[0.0, 1.0]]), 4, "integer"),
    ],
)
def test_invalid_inputs_raise(pairs, n_items, message):
    with pytest.raises(ValueError, match=message):
        BprSampler(pairs, n_items)
