"""Knowledge distillation: the loss pulls a student towards its teacher, and a run distils from a bundle."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pneumo.bundle import read_meta
from pneumo.config import PreprocessConfig
from pneumo.training import fit
from pneumo.training.losses import ClassificationLoss, DistillationLoss

from .test_fit import tiny_config


@pytest.mark.parametrize("classes", [2, 3])
def test_the_teacher_term_is_zero_when_student_and_teacher_agree_and_pulls_towards_the_teacher(classes):
    width = 1 if classes == 2 else classes
    targets = torch.tensor([0, 1, 1, 0, 1, 0])
    teacher = torch.randn(6, width, generator=torch.Generator().manual_seed(0)) * 3
    only_teacher = DistillationLoss(ClassificationLoss(classes), weight=1.0, temperature=2.0)
    assert float(only_teacher(teacher.clone(), targets, teacher)) == pytest.approx(0.0, abs=1e-6)
    student = torch.zeros(6, width, requires_grad=True)
    optimizer = torch.optim.Adam([student], lr=0.1)
    for _ in range(500):
        optimizer.zero_grad()
        only_teacher(student, targets, teacher).backward()
        optimizer.step()

    def softened(logits):
        return torch.sigmoid(logits / 2.0) if width == 1 else torch.softmax(logits / 2.0, dim=1)

    torch.testing.assert_close(softened(student.detach()), softened(teacher), atol=0.01, rtol=0.0)


def test_weight_zero_is_the_label_loss_alone():
    labels = ClassificationLoss(2, label_smoothing=0.05)
    logits, targets, teacher = torch.randn(8, 1), torch.randint(0, 2, (8,)), torch.randn(8, 1)
    mixed = DistillationLoss(labels, weight=0.0, temperature=4.0)
    assert float(mixed(logits, targets, teacher)) == pytest.approx(float(labels(logits, targets)))


def test_a_run_distils_from_a_bundle_and_records_it(kermany_tree: Path, tmp_path: Path):
    teacher = fit(tiny_config(kermany_tree, tmp_path / "cache", epochs=1), tmp_path / "teacher")
    student = fit(tiny_config(kermany_tree, tmp_path / "cache", distill_from=str(teacher), distill_weight=0.7),
                  tmp_path / "student")
    train = read_meta(student)[1].training["config"]["train"]
    assert train["distill_from"] == str(teacher) and train["distill_weight"] == 0.7


def test_a_teacher_that_sees_other_inputs_is_refused(kermany_tree: Path, tmp_path: Path):
    teacher = fit(tiny_config(kermany_tree, tmp_path / "cache", epochs=1), tmp_path / "teacher")
    cfg = tiny_config(kermany_tree, tmp_path / "cache", distill_from=str(teacher))
    cfg.preprocess = PreprocessConfig(image_size=40)
    with pytest.raises(ValueError, match="preprocessing"):
        fit(cfg, tmp_path / "student")


def test_distillation_settings_are_checked():
    from pneumo.config import TrainConfig

    with pytest.raises(ValueError, match="distill_weight"):
        TrainConfig(distill_weight=1.5)
    with pytest.raises(ValueError, match="distill_temperature"):
        TrainConfig(distill_temperature=0.0)
