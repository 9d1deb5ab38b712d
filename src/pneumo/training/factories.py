"""What a training run is built from: the network, the distillation teacher, the losses, the optimizer with its
learning-rate schedule and weight average (EMA). Each is made here from the run's configuration."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from pneumo.bundle import load_state as load_weights, read_meta
from pneumo.config import RunConfig, TrainConfig
from pneumo.data.balance import class_weights
from pneumo.inference.loading import load_bundle
from pneumo.models import create_model, init_backbone_from_bundle, set_trainable_blocks
from pneumo.training.losses import ClassificationLoss, ConsistencyLoss, DistillationLoss

log = logging.getLogger("pneumo.train")


def make_network(cfg: RunConfig, run_dir: Path, resume: bool, device: torch.device) -> nn.Module:
    """The network to train: new (optionally started from a bundle's backbone), or the run's last weights."""
    model = create_model(cfg.model.arch, classes=cfg.data.classes, pretrained=cfg.model.pretrained,
                         weights_file=cfg.model.pretrained_weights, dropout=cfg.model.dropout)
    if cfg.model.init_from and not resume:
        init_backbone_from_bundle(model, cfg.model.arch, cfg.model.init_from)
    if resume:
        read_meta(run_dir / "last")  # checks the weights' checksum before trusting them
        model.load_state_dict(load_weights(run_dir / "last"))
    set_trainable_blocks(model, cfg.model.arch, freeze_backbone=cfg.model.freeze_backbone,
                         finetune_last=cfg.model.finetune_last)
    return model.to(device)


def load_teacher(cfg: RunConfig, device: torch.device) -> nn.Module | None:
    """The distillation teacher (``train.distill_from``) in eval mode, or None. Refuses a teacher that would see
    other inputs than the student (preprocessing) or answer other classes."""
    if not cfg.train.distill_from:
        return None
    teacher, meta, directory = load_bundle(cfg.train.distill_from, device=str(device))
    if meta.preprocess != cfg.preprocess:
        raise ValueError(f"distill_from {directory}: its preprocessing {meta.preprocess} differs from this run's "
                         f"{cfg.preprocess}; a teacher must see the inputs the student sees")
    if meta.classes != cfg.data.classes:
        raise ValueError(f"distill_from {directory}: it has {meta.classes} classes, this run {cfg.data.classes}")
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    log.info("distilling from %s (%s, version %s), weight %.2f, temperature %.1f", directory, meta.arch,
             meta.version, cfg.train.distill_weight, cfg.train.distill_temperature)
    return teacher.eval()


@dataclass
class Losses:
    train: nn.Module  # what training minimises: the classification loss, distilled and/or paired as configured
    eval: ClassificationLoss  # what validation reports: class-weighted cross-entropy, the same for every variant


def make_losses(cfg: RunConfig, targets: np.ndarray, distilled: bool, device: torch.device) -> Losses:
    tc = cfg.train
    num_classes = cfg.data.classes
    weights = class_weights(targets, num_classes)
    loss_fn: nn.Module = ClassificationLoss(num_classes, weights if cfg.data.balance == "class_weights" else None,
                                            tc.focal_gamma if tc.loss == "focal" else 0.0,
                                            tc.label_smoothing).to(device)
    if distilled:
        loss_fn = DistillationLoss(loss_fn, tc.distill_weight, tc.distill_temperature)
    if tc.consistency_weight > 0:
        loss_fn = ConsistencyLoss(loss_fn, tc.consistency_weight)
    return Losses(loss_fn, ClassificationLoss(num_classes, weights))


@dataclass
class Optimization:
    """What moves the weights: the optimizer, its learning-rate schedule (stepped per batch for one-cycle, per
    epoch otherwise) and the weight average that is validated and saved instead of the raw weights, if any."""

    optimizer: torch.optim.Optimizer
    scheduler: Any
    schedule: str  # TrainConfig.scheduler
    ema: AveragedModel | None = None

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def after_step(self, model: nn.Module) -> None:
        if self.schedule == "onecycle":
            self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(model)

    def after_epoch(self, score: float) -> None:
        if self.schedule == "cosine":
            self.scheduler.step()
        elif self.schedule == "plateau":
            self.scheduler.step(score)


def make_optimization(model: nn.Module, tc: TrainConfig, steps_per_epoch: int) -> Optimization:
    optimizer = make_optimizer(model, tc)
    return Optimization(optimizer, make_scheduler(optimizer, tc, steps_per_epoch), tc.scheduler, make_ema(model, tc))


def make_optimizer(model: nn.Module, tc: TrainConfig) -> torch.optim.Optimizer:
    """Adam/AdamW over the trainable parameters; norm weights and biases (1-D tensors) undecayed on request."""
    params = [p for p in model.parameters() if p.requires_grad]
    if tc.decay_norm_and_bias:
        groups = [{"params": params, "weight_decay": tc.weight_decay}]
    else:
        groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": tc.weight_decay},
                  {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    opt_cls = torch.optim.AdamW if tc.optimizer == "adamw" else torch.optim.Adam
    return opt_cls(groups, lr=tc.lr)


def make_scheduler(optimizer: torch.optim.Optimizer, tc: TrainConfig, steps_per_epoch: int) -> Any:
    if tc.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=tc.lr,
                                                   total_steps=max(tc.epochs * steps_per_epoch, 2),
                                                   pct_start=tc.warmup_fraction, anneal_strategy="cos")
    if tc.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(tc.epochs, 1))
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=tc.plateau_factor,
                                                      patience=tc.plateau_patience)


def make_ema(model: nn.Module, tc: TrainConfig) -> AveragedModel | None:
    if not tc.ema_decay:
        return None
    # Buffers too, so the average is a whole network; its BatchNorm statistics are re-estimated before each
    # validation anyway (recompute_batchnorm), since averaged running statistics do not fit averaged weights.
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(tc.ema_decay), use_buffers=True)
