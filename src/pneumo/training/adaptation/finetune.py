"""Fine-tuning a parent bundle on local X-rays with the one training loop: its head kept, its top blocks
trained at a low constant learning rate, its own training images replayed in every batch.

:func:`fold_curves` gives out-of-fold logits after every epoch (each fold scored by a model trained on the
other folds), from which the number of epochs is chosen; :func:`train_final` trains on every local label.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Subset

from pneumo.bundle import BundleMeta
from pneumo.config import AugmentConfig
from pneumo.data.augment import BatchPreprocess, geometric_transform
from pneumo.data.balance import class_weights
from pneumo.data.dataset import XrayDataset
from pneumo.data.site_augment import SiteAugment
from pneumo.inference.loading import load_bundle
from pneumo.models import set_trainable_blocks
from pneumo.training.adaptation.config import FinetuneConfig
from pneumo.training.adaptation.local import LocalData
from pneumo.training.adaptation.replay import ReplayBatches
from pneumo.training.loop import evaluate, train_one_epoch
from pneumo.training.losses import ClassificationLoss

log = logging.getLogger("pneumo.adapt")


@dataclass
class FinetuneSetup:
    """Everything a fine-tuning run needs besides which local images it trains on."""

    parent: str  # the parent bundle's directory
    meta: BundleMeta
    augment: AugmentConfig  # the parent's own augmentation
    label_smoothing: float
    local: LocalData
    replay: XrayDataset | None  # the parent's training images, augmented like the local ones
    settings: FinetuneConfig
    device: torch.device
    seed: int

    def fresh_model(self) -> nn.Module:
        """The parent network, head included, with only its top ``finetune_last`` blocks trainable."""
        model, _, _ = load_bundle(self.parent, device=str(self.device))
        set_trainable_blocks(model, self.meta.arch, freeze_backbone=self.settings.finetune_last == 0,
                             finetune_last=self.settings.finetune_last)
        return model

    def local_dataset(self, augment: bool) -> XrayDataset:
        """Every local image, augmented (for training) or not (for scoring); folds take subsets of it."""
        if not augment:
            return XrayDataset(self.local.records, self.local.cache, None, self.meta.classes)
        sites = SiteAugment(self.augment.site_variant) if self.augment.site_variant > 0 else None
        return XrayDataset(self.local.records, self.local.cache, geometric_transform(self.augment),
                           self.meta.classes, sites)

    def train_loader(self, indices: np.ndarray, seed: int) -> DataLoader:
        local = Subset(self.local_dataset(augment=True), indices.tolist())
        parts = [local] + ([self.replay] if self.replay is not None else [])
        batches = ReplayBatches(len(local), len(self.replay) if self.replay is not None else 0,
                                self.settings.batch_size, self.settings.replay_share, seed)
        return DataLoader(ConcatDataset(parts), batch_sampler=batches, num_workers=self.settings.workers)

    def eval_loader(self, indices: np.ndarray) -> DataLoader:
        return DataLoader(Subset(self.local_dataset(augment=False), indices.tolist()), batch_size=32)

    def loss(self, indices: np.ndarray) -> ClassificationLoss:
        targets = [self.local.records[i].target(self.meta.classes) for i in indices]
        weights = class_weights(targets, self.meta.classes)
        return ClassificationLoss(self.meta.classes, weights, 0.0, self.label_smoothing).to(self.device)


def _epochs(setup: FinetuneSetup, train_idx: np.ndarray, epochs: int, seed: int,
            score_idx: np.ndarray | None = None) -> tuple[nn.Module, list[np.ndarray]]:
    """Train a fresh copy of the parent on ``train_idx`` for ``epochs``; logits on ``score_idx`` after each."""
    model = setup.fresh_model()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=setup.settings.lr, weight_decay=setup.settings.weight_decay)
    loader = setup.train_loader(train_idx, seed)
    train_prep = BatchPreprocess(setup.meta.preprocess, setup.augment).to(setup.device)
    eval_prep = BatchPreprocess(setup.meta.preprocess).to(setup.device)
    loss_fn = setup.loss(train_idx)
    scored: list[np.ndarray] = []
    for epoch in range(1, epochs + 1):
        loss = train_one_epoch(model, loader, train_prep, loss_fn, optimizer, setup.device, grad_clip=1.0,
                               desc=f"fine-tune epoch {epoch}")
        log.info("fine-tune seed %d epoch %d/%d: training loss %.4f", seed, epoch, epochs, loss)
        if score_idx is not None:
            scored.append(evaluate(model, setup.eval_loader(score_idx), eval_prep, setup.device)[0])
    return model.eval(), scored


def fold_curves(setup: FinetuneSetup) -> np.ndarray:
    """(max_epochs, N, width) out-of-fold logits: fold k scored after each epoch by a model trained on the
    other folds only."""
    folds = setup.local.folds
    curves: np.ndarray | None = None
    for fold in range(int(folds.max()) + 1):
        held_out = np.flatnonzero(folds == fold)
        _, scored = _epochs(setup, np.flatnonzero(folds != fold), setup.settings.max_epochs,
                            setup.seed + 1 + fold, held_out)
        if curves is None:
            curves = np.zeros((len(scored), len(folds), scored[0].shape[1]))
        curves[:, held_out] = np.stack(scored)
    return curves


def train_final(setup: FinetuneSetup, epochs: int) -> nn.Module:
    """The site's network: the parent fine-tuned on every local label for the chosen number of epochs."""
    model, _ = _epochs(setup, np.arange(len(setup.local.records)), epochs, setup.seed)
    return model


def changed_gate_layers(model: nn.Module, meta: BundleMeta) -> list[str]:
    """The gate's feature layers that fine-tuning trains (their features then differ from the ones the copied
    gate was fitted on)."""
    layers = (meta.gate or {}).get("feature_layers") or []
    return [name for name in layers if any(p.requires_grad for p in model.get_submodule(name).parameters())]
