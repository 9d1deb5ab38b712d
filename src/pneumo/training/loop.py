"""One training epoch and one evaluation pass; every variant of training is a configuration of these."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from pneumo.data.augment import BatchPreprocess


def _autocast(device: torch.device, enabled: bool):
    # bfloat16 needs no loss scaling; GPUs without it (before Ampere) train in float32 instead.
    if enabled and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return torch.autocast(device_type=device.type, enabled=False)


def keep_frozen_in_eval(model: nn.Module) -> None:
    """BatchNorm layers whose parameters are frozen keep their loaded running statistics."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()


def train_one_epoch(model: nn.Module, loader: DataLoader, prep: BatchPreprocess, loss_fn: nn.Module,
                    optimizer: torch.optim.Optimizer, device: torch.device, *, grad_clip: float = 0.0,
                    amp: bool = False, max_steps: int = 0, progress: bool = False, desc: str = "train",
                    on_step: Callable[[int], None] | None = None, teacher: nn.Module | None = None) -> float:
    """Train for one pass over ``loader`` (or ``max_steps`` batches); returns the mean training loss. With a
    ``teacher`` (in eval mode), ``loss_fn`` also gets the teacher's logits on the same augmented batch; with
    paired batches (a ``"variant"`` view), it gets the variants' logits."""
    model.train()
    keep_frozen_in_eval(model)
    prep.train()
    total, count = 0.0, 0
    steps = len(loader) if not max_steps else min(max_steps, len(loader))
    bar = tqdm(total=steps, desc=desc, unit="batch", disable=not progress, leave=False, dynamic_ncols=True)
    for step, batch in enumerate(loader):
        loss, targets = _batch_loss(model, batch, prep, loss_fn, device, amp, teacher)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()} at step {step}; lower the learning rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        total += loss.item() * len(targets)
        count += len(targets)
        bar.update(1)
        bar.set_postfix(loss=f"{total / count:.4f}")
        if on_step is not None:
            on_step(step)
        if max_steps and step + 1 >= max_steps:
            break  # checked after the step, so no batch is loaded only to be thrown away
    bar.close()
    return total / max(count, 1)


def _batch_loss(model: nn.Module, batch: dict, prep: BatchPreprocess, loss_fn: nn.Module, device: torch.device,
                amp: bool, teacher: nn.Module | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss of one batch and its targets: plain, distilled from ``teacher``, or over image and variant
    (both views in one forward pass, so BatchNorm sees them together)."""
    images = prep(batch["image"].to(device, non_blocking=True))
    targets = batch["target"].to(device, non_blocking=True)
    if "variant" in batch:
        variants = prep(batch["variant"].to(device, non_blocking=True))
        with _autocast(device, amp):
            logits, variant_logits = model(torch.cat([images, variants])).split(len(images))
        return loss_fn(logits, targets, variant_logits), targets
    with _autocast(device, amp):
        logits = model(images)
    if teacher is None:
        return loss_fn(logits, targets), targets
    with torch.no_grad(), _autocast(device, amp):
        teacher_logits = teacher(images)
    return loss_fn(logits, targets, teacher_logits), targets


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, prep: BatchPreprocess, device: torch.device, *,
             amp: bool = False, progress: bool = False, desc: str = "eval") -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, outputs) and targets (N,) over ``loader`` in order."""
    model.eval()
    prep.eval()
    logits_all: list[np.ndarray] = []
    targets_all: list[np.ndarray] = []
    for batch in tqdm(loader, desc=desc, unit="batch", disable=not progress, leave=False, dynamic_ncols=True):
        images = prep(batch["image"].to(device, non_blocking=True))
        with _autocast(device, amp):
            logits = model(images)
        logits_all.append(logits.float().cpu().numpy())
        targets_all.append(np.asarray(batch["target"]))
    if not logits_all:
        return np.zeros((0, 1), np.float32), np.zeros((0,), np.int64)
    return np.concatenate(logits_all), np.concatenate(targets_all)


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, loader: DataLoader, prep: BatchPreprocess, device: torch.device, *,
                        batches: int) -> None:
    """Re-estimate BatchNorm running statistics of ``model`` from ``batches`` batches of ``loader``.

    An average of weights (EMA) is a network no batch ever went through: averaging the running statistics
    alongside does not give that network's statistics while the weights still move fast, and the averaged
    model then answers one constant in eval mode. A cumulative average over a few batches fixes that.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or batches <= 0:
        return
    momenta = [m.momentum for m in norms]
    for module in norms:
        module.reset_running_stats()
        module.momentum = None  # cumulative average over the batches below
    was_training = model.training
    model.train()
    prep.eval()
    for step, batch in enumerate(loader):
        if step >= batches:
            break
        model(prep(batch["image"].to(device, non_blocking=True)))
    for module, momentum in zip(norms, momenta):
        module.momentum = momentum
    model.train(was_training)
