"""What a training run measures after each epoch: loss and AUC on the validation block (and the shifted block)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader

from pneumo.data.augment import BatchPreprocess
from pneumo.training.loop import evaluate
from pneumo.training.losses import ClassificationLoss, pneumonia_probability


@dataclass
class Validation:
    loss: float
    auc: float
    auc_shifted: float = float("nan")

    def score(self, select_on: str) -> float:
        """What picks the best epoch; the loss stands in when the block holds one class only."""
        auc = {"val": self.auc, "shifted": self.auc_shifted, "mean": (self.auc + self.auc_shifted) / 2}[select_on]
        return auc if np.isfinite(auc) else -self.loss


def validate(model: torch.nn.Module, loaders: list[DataLoader], prep: BatchPreprocess, device: torch.device,
             loss_fn: ClassificationLoss, amp: bool, show: bool) -> Validation:
    """Loss and AUC on the validation block, and AUC on the shifted block when there is one."""
    logits, targets = evaluate(model, loaders[0], prep, device, amp=amp, progress=show, desc="validate")
    result = Validation(*validation_metrics(logits, targets, loss_fn))
    if len(loaders) > 1:
        logits, targets = evaluate(model, loaders[1], prep, device, amp=amp, progress=show, desc="shifted")
        result.auc_shifted = validation_metrics(logits, targets, loss_fn)[1]
    return result


def validation_metrics(logits: np.ndarray, targets: np.ndarray, loss_fn: ClassificationLoss) -> tuple[float, float]:
    """(loss, AUC of pneumonia against normal); the AUC is NaN when the targets hold one side only."""
    t_logits, t_targets = torch.from_numpy(logits), torch.from_numpy(targets).long()
    loss = float(loss_fn(t_logits, t_targets))
    prob = pneumonia_probability(t_logits).numpy()
    is_pneumonia = (targets > 0).astype(int)
    auc = float(roc_auc_score(is_pneumonia, prob)) if len(set(is_pneumonia)) == 2 else float("nan")
    return loss, auc
