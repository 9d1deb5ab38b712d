"""Losses for one-logit binary and multi-class models, with class weights and optional focal term."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ClassificationLoss(nn.Module):
    """Binary (one logit) or categorical cross-entropy; ``weights`` per class; ``gamma`` > 0 makes it focal."""

    def __init__(self, classes: int, weights: torch.Tensor | None = None, gamma: float = 0.0,
                 label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.classes = classes
        self.gamma = gamma
        self.label_smoothing = label_smoothing
        self.register_buffer("weights", weights if weights is not None else torch.ones(classes))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        weights = self.weights.to(logits.device)[targets]
        if self.classes == 2:
            logit = logits.float().view(-1)
            soft = targets.float() * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
            per_sample = F.binary_cross_entropy_with_logits(logit, soft, reduction="none")
            if self.gamma > 0:
                p = torch.sigmoid(logit)
                p_true = torch.where(targets == 1, p, 1 - p)
                per_sample = per_sample * (1 - p_true).pow(self.gamma)
        else:
            logits = logits.float()
            per_sample = F.cross_entropy(logits, targets, reduction="none", label_smoothing=self.label_smoothing)
            if self.gamma > 0:
                p_true = torch.softmax(logits, dim=1).gather(1, targets[:, None]).squeeze(1)
                per_sample = per_sample * (1 - p_true).pow(self.gamma)
        return (per_sample * weights).sum() / weights.sum()


class DistillationLoss(nn.Module):
    """``(1 - weight)`` times the label loss plus ``weight`` times the divergence of the student's softened
    outputs from the teacher's, scaled by T^2 so that its gradients keep their size whatever T is (Hinton et
    al., 2015, "Distilling the Knowledge in a Neural Network"). One logit: the binary cross-entropy against
    the teacher's softened probability, minus its entropy (a KL divergence, 0 when the two agree)."""

    def __init__(self, labels: ClassificationLoss, weight: float, temperature: float) -> None:
        super().__init__()
        self.labels = labels
        self.weight = weight
        self.temperature = temperature

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        student, teacher = logits.float() / t, teacher_logits.float() / t
        if logits.shape[1] == 1:
            soft = torch.sigmoid(teacher.view(-1))
            divergence = (F.binary_cross_entropy_with_logits(student.view(-1), soft, reduction="none")
                          - F.binary_cross_entropy_with_logits(teacher.view(-1), soft, reduction="none")).mean()
        else:
            divergence = F.kl_div(F.log_softmax(student, dim=1), F.log_softmax(teacher, dim=1), log_target=True,
                                  reduction="batchmean")
        return (1.0 - self.weight) * self.labels(logits, targets) + self.weight * t * t * divergence


def pneumonia_probability(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """P(pneumonia) from either head: sigmoid of the one logit, or 1 - P(normal) for 3 classes."""
    if logits.shape[1] == 1:
        return torch.sigmoid(logits.float().view(-1) / temperature)
    return 1.0 - torch.softmax(logits.float() / temperature, dim=1)[:, 0]


def _distribution(logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities (N, C) from one logit (as P(normal), P(pneumonia)) or C logits."""
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits.float())
        return torch.cat([1 - p, p], dim=1)
    return torch.softmax(logits.float(), dim=1)


def jensen_shannon(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Mean Jensen-Shannon divergence between the predictions of two views of the same images (AugMix's
    consistency term, Hendrycks et al. 2020): 0 when the two views are predicted alike, at most log 2."""
    # Clamped: a saturated sigmoid gives exact zeros, and 0 * log 0 has no gradient (NaN weights follow).
    p, q = _distribution(first).clamp(1e-7, 1.0), _distribution(second).clamp(1e-7, 1.0)
    log_mixture = ((p + q) / 2).log()
    kl = (p * (p.log() - log_mixture)).sum(dim=1) + (q * (q.log() - log_mixture)).sum(dim=1)
    return kl.mean() / 2


class ConsistencyLoss(nn.Module):
    """The label loss on both views plus ``weight`` times their Jensen-Shannon divergence."""

    def __init__(self, labels: ClassificationLoss, weight: float) -> None:
        super().__init__()
        self.labels = labels
        self.weight = weight

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, variant_logits: torch.Tensor) -> torch.Tensor:
        both = self.labels(torch.cat([logits, variant_logits]), torch.cat([targets, targets]))
        return both + self.weight * jensen_shannon(logits, variant_logits)
