"""Acquisition-invariant training: the consistency term, paired views and the shifted validation block."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from pneumo.bundle import read_meta
from pneumo.config import AugmentConfig, DataConfig, RunConfig, TrainConfig
from pneumo.training import fit
from pneumo.training.losses import ClassificationLoss, ConsistencyLoss, jensen_shannon

from .test_fit import tiny_config


@pytest.mark.parametrize("width", [1, 3])
def test_the_divergence_is_zero_for_agreeing_views_symmetric_and_bounded(width):
    a = torch.randn(16, width, generator=torch.Generator().manual_seed(0)) * 3
    b = torch.randn(16, width, generator=torch.Generator().manual_seed(1)) * 3
    assert float(jensen_shannon(a, a.clone())) == pytest.approx(0.0, abs=1e-6)
    assert float(jensen_shannon(a, b)) == pytest.approx(float(jensen_shannon(b, a)), rel=1e-5)
    assert 0.0 < float(jensen_shannon(a, b)) <= math.log(2) + 1e-6
    opposite = torch.full((4, 1), 30.0)
    assert float(jensen_shannon(opposite, -opposite)) == pytest.approx(math.log(2), abs=1e-3)


def test_the_consistency_term_pulls_the_variant_towards_the_image():
    targets = torch.tensor([0, 1, 1, 0])
    loss = ConsistencyLoss(ClassificationLoss(2), weight=1.0)
    image = torch.tensor([[-2.0], [2.0], [1.0], [-1.0]])
    variant = torch.tensor([[2.0], [-2.0], [1.0], [-1.0]], requires_grad=True)
    loss(image, targets, variant).backward()
    # Both the labels and the consistency term push the first two variants back towards the image's side.
    assert variant.grad[0, 0] > 0 and variant.grad[1, 0] < 0


def test_a_paired_run_with_the_shifted_block_records_both_aucs(kermany_tree: Path, tmp_path: Path):
    cfg = tiny_config(kermany_tree, tmp_path / "cache", consistency_weight=2.0, select_on="shifted")
    cfg.data.shifted_val = True
    cfg.augment = AugmentConfig(aspect=0.3)
    best = fit(cfg, tmp_path / "run")
    with (tmp_path / "run" / "history.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and all(0.0 <= float(row["val_auc_shifted"]) <= 1.0 for row in rows)
    metrics = read_meta(best)[1].metrics
    assert metrics["n_shifted"] == metrics["n"] and 0.0 <= metrics["auc_shifted"] <= 1.0
    best_row = max(rows, key=lambda row: float(row["val_auc_shifted"]))
    assert metrics["epoch"] == int(best_row["epoch"])


def test_selecting_on_the_shifted_block_needs_it_and_consistency_needs_augmentation():
    with pytest.raises(ValueError, match="shifted_val"):
        RunConfig(train=TrainConfig(select_on="shifted")).check()
    with pytest.raises(ValueError, match="augment.enabled"):
        RunConfig(augment=AugmentConfig(enabled=False), train=TrainConfig(consistency_weight=1.0)).check()
    with pytest.raises(ValueError, match="cannot be combined"):
        TrainConfig(consistency_weight=1.0, distill_from="teacher")
    RunConfig(data=DataConfig(shifted_val=True), train=TrainConfig(select_on="mean")).check()
