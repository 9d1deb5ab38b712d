"""Class imbalance: inverse-frequency weights and the (distributed) weighted samplers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pneumo.data.balance import DistributedWeightedSampler, balanced_sampler, class_weights

TARGETS = [0] * 20 + [1] * 60 + [2] * 20  # 1 : 3 : 1


def test_class_weights_equalise_class_contributions() -> None:
    weights = class_weights(TARGETS, 3)
    counts = np.bincount(TARGETS)
    contribution = weights.numpy() * counts
    np.testing.assert_allclose(contribution, contribution[0])  # every class weighs the same in total
    np.testing.assert_allclose((weights[torch.tensor(TARGETS)]).mean().item(), 1.0, rtol=1e-6)
    assert weights[1] < weights[0] == weights[2]


def test_class_weights_refuse_an_empty_class() -> None:
    with pytest.raises(ValueError, match=r"classes \[2\] have no training images"):
        class_weights([0, 1, 1], 3)


def test_balanced_sampler_draws_classes_equally() -> None:
    targets = [0] * 10 + [1] * 90
    drawn = np.array([targets[i] for _ in range(20) for i in balanced_sampler(targets, 2, seed=0)])
    assert len(drawn) == 2000
    assert 0.45 < drawn.mean() < 0.55  # 90 % of the data is class 1, half of the draws are
    assert list(balanced_sampler(targets, 2, seed=1)) == list(balanced_sampler(targets, 2, seed=1))


def test_distributed_weighted_sampler() -> None:
    targets = [0] * 10 + [1] * 91
    ranks = [DistributedWeightedSampler(targets, 2, num_replicas=2, rank=r, seed=4) for r in range(2)]
    assert [len(s) for s in ranks] == [51, 51]
    draws = [list(s) for s in ranks]
    assert all(len(d) == 51 for d in draws)
    assert draws[0] != draws[1]
    assert draws[0] == list(ranks[0])  # the same epoch draws the same sequence
    ranks[0].set_epoch(1)
    assert list(ranks[0]) != draws[0]  # a new epoch, a new draw
    many = [targets[i] for epoch in range(10) for s in ranks for i in (s.set_epoch(epoch) or s)]
    assert 0.42 < np.mean(many) < 0.58
    with pytest.raises(ValueError, match="rank 2"):
        DistributedWeightedSampler(targets, 2, num_replicas=2, rank=2, seed=0)
