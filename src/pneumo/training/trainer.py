"""``fit``: train a model from a RunConfig into a run directory.

RUN/config.json   the configuration that made the run
RUN/history.csv   one row per epoch
RUN/train.log     the log
RUN/best/         bundle of the epoch with the best validation AUC
RUN/last/         bundle of the latest epoch plus train_state.pt, for --resume

This module is the loop; what it is built from (:mod:`.factories`), its data (:mod:`.datasets`), what it
measures (:mod:`.validation`) and writes (:mod:`.checkpoint`, :mod:`.history`), and how it resumes after a crash
(:mod:`.recovery`) sit beside it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pneumo.config import RunConfig
from pneumo.data.augment import BatchPreprocess
from pneumo.training.checkpoint import bundle_meta, refresh_best_history, save_epoch
from pneumo.training.datasets import Loaders, TrainingSplits, make_loaders, prepare_datasets
from pneumo.training.factories import Losses, Optimization, load_teacher, make_losses, make_network, \
    make_optimization
from pneumo.training.history import append_history
from pneumo.training.loop import recompute_batchnorm, train_one_epoch
from pneumo.training.recovery import has_checkpoint, restore
from pneumo.training.runtime import DistInfo, barrier, init_distributed, pick_device, seed_everything, \
    shutdown_distributed
from pneumo.training.state import Progress
from pneumo.training.validation import Validation, validate

log = logging.getLogger("pneumo.train")


def load_run_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"cannot resume: {path} is missing (is {run_dir} a pneumo run directory?)")
    return RunConfig.from_stored(json.loads(path.read_text()))


def fit(cfg: RunConfig, run_dir: str | Path, resume: bool = False) -> Path:
    """Train according to ``cfg`` into ``run_dir``; returns the best bundle's directory."""
    run_dir = Path(run_dir)
    cfg.check()
    device = pick_device(cfg.train.device)
    dist_info = init_distributed(device)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    resume = resume and has_checkpoint(run_dir, dist_info)
    if dist_info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            cfg.save(run_dir / "config.json")
    handler = _attach_log(run_dir) if dist_info.is_main else None
    try:
        return _fit(cfg, run_dir, resume, device, dist_info)
    finally:
        if handler is not None:
            logging.getLogger("pneumo").removeHandler(handler)
            handler.close()
        shutdown_distributed(dist_info)


def _attach_log(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger("pneumo").addHandler(handler)
    logging.getLogger("pneumo").setLevel(logging.INFO)
    return handler


@dataclass
class _Run:
    """Everything one run holds from epoch to epoch."""

    cfg: RunConfig
    run_dir: Path
    device: torch.device
    dist_info: DistInfo
    data: TrainingSplits
    loaders: Loaders
    losses: Losses
    teacher: nn.Module | None
    model: nn.Module  # the network trained
    train_model: nn.Module  # the same, wrapped for DistributedDataParallel under torchrun
    optimization: Optimization
    train_prep: BatchPreprocess
    eval_prep: BatchPreprocess

    @property
    def show(self) -> bool:
        return self.cfg.train.progress and self.dist_info.is_main


def _fit(cfg: RunConfig, run_dir: Path, resume: bool, device: torch.device, dist_info: DistInfo) -> Path:
    seed_everything(cfg.train.seed + dist_info.rank, cfg.train.deterministic)
    run = _set_up(cfg, run_dir, resume, device, dist_info)
    progress = restore(run_dir, run.data, run.model, run.optimization, dist_info) if resume else Progress()
    if progress.stopped_early or progress.epoch >= cfg.train.epochs:
        log.info("nothing to do: run already finished at epoch %d", progress.epoch)
        return run_dir / "best"
    for epoch in range(progress.epoch + 1, cfg.train.epochs + 1):
        _epoch(run, progress, epoch)
        if progress.stopped_early:
            log.info("early stopping: no validation improvement for %d epochs", cfg.train.early_stopping_patience)
            break
    if dist_info.is_main:
        refresh_best_history(run_dir)
        log.info("best epoch %d, validation score %.4f, %.0fs training", progress.best_epoch, progress.best_score,
                 progress.elapsed_s)
    return run_dir / "best"


def _set_up(cfg: RunConfig, run_dir: Path, resume: bool, device: torch.device, dist_info: DistInfo) -> _Run:
    """Data, teacher, losses, loaders and network, in the order that keeps a seeded run's draws the same."""
    data = prepare_datasets(cfg, dist_info)
    for path, reason in data.skipped:
        log.warning("skipped unreadable image %s: %s", path, reason)
    log.info("train %d images, val %d images, skipped %d unreadable, device %s, world %d",
             len(data.train), len(data.val), len(data.skipped), device, dist_info.world_size)
    teacher = load_teacher(cfg, device)
    losses = make_losses(cfg, data.train.targets, teacher is not None, device)
    loaders = make_loaders(cfg, data, device, dist_info)
    model = make_network(cfg, run_dir, resume, device)
    train_model = model
    if dist_info.enabled:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    tc = cfg.train
    steps_per_epoch = min(len(loaders.train), tc.max_steps_per_epoch or len(loaders.train))
    return _Run(cfg, run_dir, device, dist_info, data, loaders, losses, teacher, model, train_model,
                make_optimization(model, tc, steps_per_epoch), BatchPreprocess(cfg.preprocess, cfg.augment).to(device),
                BatchPreprocess(cfg.preprocess).to(device))


def _epoch(run: _Run, progress: Progress, epoch: int) -> None:
    """Train one epoch, validate what is saved (the EMA when there is one), count, report and checkpoint it."""
    tc, opt = run.cfg.train, run.optimization
    started = time.perf_counter()
    run.loaders.set_epoch(epoch)
    lr = opt.lr
    train_loss = train_one_epoch(run.train_model, run.loaders.train, run.train_prep, run.losses.train,
                                 opt.optimizer, run.device, grad_clip=tc.grad_clip, amp=tc.amp,
                                 max_steps=tc.max_steps_per_epoch, progress=run.show,
                                 desc=f"epoch {epoch}/{tc.epochs}", on_step=lambda _: opt.after_step(run.model),
                                 teacher=run.teacher)
    scored = run.model if opt.ema is None else opt.ema.module
    if opt.ema is not None:
        recompute_batchnorm(scored, run.loaders.train, run.eval_prep, run.device, batches=tc.ema_batchnorm_batches)
    checked = validate(scored, run.loaders.val, run.eval_prep, run.device, run.losses.eval, tc.amp, run.show)
    score = checked.score(tc.select_on)
    opt.after_epoch(score)
    elapsed = time.perf_counter() - started
    improved = progress.record(epoch, score, elapsed, tc.early_stopping_patience)
    row = _report(run, epoch, train_loss, checked, lr, elapsed, improved)
    if run.dist_info.is_main:
        append_history(run.run_dir / "history.csv", row)
        meta = bundle_meta(run.cfg, run.data, progress, checked, epoch)
        save_epoch(run.run_dir, scored, meta, progress, improved, opt, run.model)
    barrier(run.dist_info)


def _report(run: _Run, epoch: int, train_loss: float, checked: Validation, lr: float, elapsed: float,
            improved: bool) -> dict:
    """Log the epoch (and print it with progress on); returns its history row."""
    has_shifted = run.data.shifted is not None
    shifted = f", shifted AUC {checked.auc_shifted:.4f}" if has_shifted else ""
    message = (f"epoch {epoch}/{run.cfg.train.epochs}: train loss {train_loss:.4f}, val loss {checked.loss:.4f}, "
               f"val AUC {checked.auc:.4f}{shifted}, lr {lr:.2e}, {elapsed:.0f}s" + (" *best*" if improved else ""))
    log.info(message)
    if run.show:
        print(message, flush=True)
    return {"epoch": epoch, "train_loss": round(train_loss, 6), "val_loss": round(checked.loss, 6),
            "val_auc": round(checked.auc, 6), "val_auc_shifted": round(checked.auc_shifted, 6) if has_shifted else "",
            "lr": lr, "epoch_s": round(elapsed, 2)}
