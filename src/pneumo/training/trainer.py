"""``fit``: train a model from a RunConfig into a run directory.

RUN/config.json   the configuration that made the run
RUN/history.csv   one row per epoch
RUN/train.log     the log
RUN/best/         bundle of the epoch with the best validation AUC
RUN/last/         bundle of the latest epoch plus train_state.pt, for --resume
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, DistributedSampler

from pneumo.bundle import BundleMeta, load_state as load_weights, read_meta, save_bundle
from pneumo.config import RunConfig, TrainConfig
from pneumo.data.augment import BatchPreprocess, geometric_transform
from pneumo.data.balance import DistributedWeightedSampler, balanced_sampler, class_weights
from pneumo.data.cache import ImageCache
from pneumo.data.dataset import PixelDataset, XrayDataset
from pneumo.data.records import ImageRecord, class_names, load_records
from pneumo.data.selection import fingerprint, training_splits
from pneumo.data.shifted import render_shifted_block
from pneumo.data.site_augment import SiteAugment
from pneumo.models import create_model, init_backbone_from_bundle, set_trainable_blocks
from pneumo.training.losses import ClassificationLoss, ConsistencyLoss, DistillationLoss, pneumonia_probability
from pneumo.training.loop import evaluate, recompute_batchnorm, train_one_epoch
from pneumo.training.runtime import DistInfo, barrier, init_distributed, pick_device, seed_everything, \
    shutdown_distributed
from pneumo.training.state import STATE_FILE, Progress, load_state, load_training_weights, save_state

log = logging.getLogger("pneumo.train")
HISTORY_FIELDS = ["epoch", "train_loss", "val_loss", "val_auc", "val_auc_shifted", "lr", "epoch_s"]


@dataclass
class Prepared:
    train: XrayDataset
    val: XrayDataset
    skipped: list[tuple[str, str]]
    shifted: PixelDataset | None = None  # the acquisition-shifted validation block (data.shifted_val)


def prepare_datasets(cfg: RunConfig, dist_info: DistInfo = DistInfo()) -> Prepared:
    """Split by patient, fill the caches (rank 0 first), and drop files that cannot be decoded."""
    records = load_records(cfg.data.root, cfg.data.manifest)
    train_records, val_records = training_splits(records, cfg.data)
    skipped: list[tuple[str, str]] = []

    def build(recs: list[ImageRecord], augment: bool) -> XrayDataset:
        paths = [r.path for r in recs]
        # Rank 0 creates and fills the cache while the others wait, so no two processes build one file.
        if dist_info.is_main:
            cache = ImageCache(paths, cfg.preprocess, cfg.data.cache_dir or None)
            # The loader's process count decodes the cache too (0, loading in this process, decodes here).
            failures = cache.warm(workers=max(1, cfg.data.num_workers), progress=cfg.train.progress)
        barrier(dist_info)
        if not dist_info.is_main:
            cache = ImageCache(paths, cfg.preprocess, cfg.data.cache_dir or None)
            failures = cache.warm(workers=1)  # retries only what rank 0 could not decode
        bad = {f.path: f.reason for f in failures}
        skipped.extend(bad.items())
        if bad:
            keep = [i for i, r in enumerate(recs) if r.path not in bad]
            recs = [recs[i] for i in keep]
            if dist_info.is_main:
                cache = cache.subset(keep)
            barrier(dist_info)
            if not dist_info.is_main:
                cache = ImageCache([r.path for r in recs], cfg.preprocess, cfg.data.cache_dir or None)
        if not augment:
            return XrayDataset(recs, cache, None, cfg.data.classes)
        paired = cfg.train.consistency_weight > 0
        sites = SiteAugment(cfg.augment.site_variant) if paired or cfg.augment.site_variant > 0 else None
        return XrayDataset(recs, cache, geometric_transform(cfg.augment), cfg.data.classes, sites, paired)

    prepared = Prepared(build(train_records, True), build(val_records, False), skipped)
    if cfg.data.shifted_val:
        block = render_shifted_block(prepared.val.records, cfg.preprocess, cfg.data.split_seed)
        prepared.shifted = PixelDataset(block.records, block.pixels, cfg.data.classes)
    return prepared


@dataclass
class Validation:
    loss: float
    auc: float
    auc_shifted: float = float("nan")

    def score(self, select_on: str) -> float:
        """What picks the best epoch; the loss stands in when the block holds one class only."""
        auc = {"val": self.auc, "shifted": self.auc_shifted, "mean": (self.auc + self.auc_shifted) / 2}[select_on]
        return auc if np.isfinite(auc) else -self.loss


def _validate(model: torch.nn.Module, loaders: list[DataLoader], prep: BatchPreprocess, device: torch.device,
              loss_fn: ClassificationLoss, amp: bool, show: bool) -> Validation:
    """Loss and AUC on the validation block, and AUC on the shifted block when there is one."""
    logits, targets = evaluate(model, loaders[0], prep, device, amp=amp, progress=show, desc="validate")
    result = Validation(*_validation_metrics(logits, targets, loss_fn))
    if len(loaders) > 1:
        logits, targets = evaluate(model, loaders[1], prep, device, amp=amp, progress=show, desc="shifted")
        result.auc_shifted = _validation_metrics(logits, targets, loss_fn)[1]
    return result


def _validation_metrics(logits: np.ndarray, targets: np.ndarray, loss_fn: ClassificationLoss) -> tuple[float, float]:
    t_logits, t_targets = torch.from_numpy(logits), torch.from_numpy(targets).long()
    loss = float(loss_fn(t_logits, t_targets))
    prob = pneumonia_probability(t_logits).numpy()
    is_pneumonia = (targets > 0).astype(int)
    auc = float(roc_auc_score(is_pneumonia, prob)) if len(set(is_pneumonia)) == 2 else float("nan")
    return loss, auc


def _trim_history(path: Path, epochs_done: int) -> None:
    """Drop rows of epochs after the resumed checkpoint (written before a crash cut that epoch short),
    so history.csv keeps one row per epoch."""
    if not path.is_file():
        return
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    kept = [row for row in rows if int(row["epoch"]) <= epochs_done]
    if len(kept) == len(rows):
        return
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=_history_fields(path))
        writer.writeheader()
        writer.writerows(kept)
    tmp.replace(path)


def _history_fields(path: Path) -> list[str]:
    """The columns of an existing history (a run started by an earlier release keeps its own), else today's."""
    if path.is_file():
        with path.open(newline="") as handle:
            header = next(csv.reader(handle), None)
        if header:
            return header
    return HISTORY_FIELDS


def _append_history(path: Path, row: dict) -> None:
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=_history_fields(path), extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)


def _attach_log(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger("pneumo").addHandler(handler)
    logging.getLogger("pneumo").setLevel(logging.INFO)
    return handler


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
    if resume and dist_info.is_main:
        _recover_from_crash(run_dir)
    if resume and not (run_dir / "last" / STATE_FILE).is_file():
        if not (run_dir / "config.json").is_file():
            raise FileNotFoundError(f"cannot resume: {run_dir / 'last' / STATE_FILE} is missing")
        # Killed before its first checkpoint: resuming means starting over with the saved configuration
        # (``pneumo train --out`` refuses a directory that already holds a run, so this is the way back).
        log.warning("no checkpoint in %s yet: starting the run again from epoch 1", run_dir)
        if dist_info.is_main:
            (run_dir / "history.csv").unlink(missing_ok=True)
        resume = False
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


def _fit(cfg: RunConfig, run_dir: Path, resume: bool, device: torch.device, dist_info: DistInfo) -> Path:
    tc = cfg.train
    seed_everything(tc.seed + dist_info.rank, tc.deterministic)
    data = prepare_datasets(cfg, dist_info)
    for path, reason in data.skipped:
        log.warning("skipped unreadable image %s: %s", path, reason)
    log.info("train %d images, val %d images, skipped %d unreadable, device %s, world %d",
             len(data.train), len(data.val), len(data.skipped), device, dist_info.world_size)

    num_classes = cfg.data.classes
    weights = class_weights(data.train.targets, num_classes)
    loss_fn = ClassificationLoss(num_classes, weights if cfg.data.balance == "class_weights" else None,
                                 tc.focal_gamma if tc.loss == "focal" else 0.0, tc.label_smoothing).to(device)
    eval_loss = ClassificationLoss(num_classes, weights)
    teacher = _teacher(cfg, device)
    if teacher is not None:
        loss_fn = DistillationLoss(loss_fn, tc.distill_weight, tc.distill_temperature)
    if tc.consistency_weight > 0:
        loss_fn = ConsistencyLoss(loss_fn, tc.consistency_weight)
    train_loader, val_loaders, sampler = _loaders(cfg, data, device, dist_info)

    model = _network(cfg, run_dir, resume, device)
    train_model = model
    if dist_info.enabled:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = _optimizer(model, tc)
    steps_per_epoch = min(len(train_loader), tc.max_steps_per_epoch or len(train_loader))
    scheduler = _scheduler(optimizer, tc, steps_per_epoch)
    ema = _ema(model, tc)
    progress = _restore(run_dir, data, model, optimizer, scheduler, ema, dist_info) if resume else Progress()
    if progress.stopped_early or progress.epoch >= tc.epochs:
        log.info("nothing to do: run already finished at epoch %d", progress.epoch)
        return run_dir / "best"

    train_prep = BatchPreprocess(cfg.preprocess, cfg.augment).to(device)
    eval_prep = BatchPreprocess(cfg.preprocess).to(device)
    show = tc.progress and dist_info.is_main
    names = list(class_names(num_classes))
    all_train = data.train.records + data.val.records

    def after_step(_step: int) -> None:
        if tc.scheduler == "onecycle":
            scheduler.step()
        if ema is not None:
            ema.update_parameters(model)

    for epoch in range(progress.epoch + 1, tc.epochs + 1):
        started = time.perf_counter()
        if isinstance(sampler, (DistributedSampler, DistributedWeightedSampler)):
            sampler.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        train_loss = train_one_epoch(train_model, train_loader, train_prep, loss_fn, optimizer, device,
                                     grad_clip=tc.grad_clip, amp=tc.amp, max_steps=tc.max_steps_per_epoch,
                                     progress=show, desc=f"epoch {epoch}/{tc.epochs}", on_step=after_step,
                                     teacher=teacher)
        scored = model if ema is None else ema.module
        if ema is not None:
            recompute_batchnorm(scored, train_loader, eval_prep, device, batches=tc.ema_batchnorm_batches)
        checked = _validate(scored, val_loaders, eval_prep, device, eval_loss, tc.amp, show)
        val_loss, val_auc, score = checked.loss, checked.auc, checked.score(tc.select_on)
        if tc.scheduler == "cosine":
            scheduler.step()
        elif tc.scheduler == "plateau":
            scheduler.step(score)
        elapsed = time.perf_counter() - started
        improved = _record_epoch(progress, epoch, score, elapsed, tc.early_stopping_patience)
        shifted_auc = round(checked.auc_shifted, 6) if data.shifted is not None else ""
        row = {"epoch": epoch, "train_loss": round(train_loss, 6), "val_loss": round(val_loss, 6),
               "val_auc": round(val_auc, 6), "val_auc_shifted": shifted_auc, "lr": lr, "epoch_s": round(elapsed, 2)}
        shifted = f", shifted AUC {checked.auc_shifted:.4f}" if data.shifted is not None else ""
        message = (f"epoch {epoch}/{tc.epochs}: train loss {train_loss:.4f}, val loss {val_loss:.4f}, "
                   f"val AUC {val_auc:.4f}{shifted}, lr {lr:.2e}, {elapsed:.0f}s" + (" *best*" if improved else ""))
        log.info(message)
        if show:
            print(message, flush=True)
        if dist_info.is_main:
            _append_history(run_dir / "history.csv", row)
            meta = _bundle_meta(cfg, names, all_train, data, progress, checked, epoch)
            if improved:
                save_bundle(run_dir / "best", scored, meta, {"history.csv": run_dir / "history.csv"})
            _save_last(run_dir, scored, meta, progress, optimizer, scheduler,
                       None if ema is None else model.state_dict())
        barrier(dist_info)
        if progress.stopped_early:
            log.info("early stopping: no validation improvement for %d epochs", tc.early_stopping_patience)
            break
    if dist_info.is_main:
        _refresh_best_history(run_dir)
        log.info("best epoch %d, validation score %.4f, %.0fs training", progress.best_epoch, progress.best_score,
                 progress.elapsed_s)
    return run_dir / "best"


def _loaders(cfg: RunConfig, data: Prepared, device: torch.device,
             dist_info: DistInfo) -> tuple[DataLoader, list[DataLoader], Any]:
    """The training loader, the validation loaders (the shifted block second, when there is one), and the
    training sampler (None: plain shuffling)."""
    tc = cfg.train
    num_classes = cfg.data.classes
    sampler = None
    if dist_info.enabled and cfg.data.balance == "sampler":
        sampler = DistributedWeightedSampler(data.train.targets, num_classes, dist_info.world_size, dist_info.rank,
                                             tc.seed)
    elif dist_info.enabled:
        sampler = DistributedSampler(data.train, num_replicas=dist_info.world_size, rank=dist_info.rank,
                                     shuffle=True, seed=tc.seed)
    elif cfg.data.balance == "sampler":
        sampler = balanced_sampler(data.train.targets, num_classes, tc.seed)
    workers = cfg.data.num_workers
    loader_args = dict(batch_size=cfg.data.batch_size, num_workers=workers, pin_memory=device.type == "cuda",
                       persistent_workers=workers > 0)
    # Drop a ragged last batch (a batch of one breaks BatchNorm) unless that would leave none at all;
    # count what this process actually sees, which under DDP is 1/world of the data.
    per_process = len(sampler) if sampler is not None else len(data.train)
    train_loader = DataLoader(data.train, shuffle=sampler is None, sampler=sampler,
                              drop_last=per_process > cfg.data.batch_size,
                              generator=torch.Generator().manual_seed(tc.seed), **loader_args)
    val_loaders = [DataLoader(data.val, shuffle=False, **loader_args)]
    if data.shifted is not None:
        val_loaders.append(DataLoader(data.shifted, shuffle=False, batch_size=cfg.data.batch_size))
    return train_loader, val_loaders, sampler


def _network(cfg: RunConfig, run_dir: Path, resume: bool, device: torch.device) -> torch.nn.Module:
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


def _teacher(cfg: RunConfig, device: torch.device) -> torch.nn.Module | None:
    """The distillation teacher (``train.distill_from``) in eval mode, or None. Refuses a teacher that would see
    other inputs than the student (preprocessing) or answer other classes."""
    if not cfg.train.distill_from:
        return None
    from pneumo.inference.loading import load_bundle

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


def _check_same_split(run_dir: Path, data: Prepared) -> None:
    """Refuse to resume on a validation split other than the one the run started on (the data changed, or a
    pneumo release changed how splits are drawn): epochs on two splits would validate on images trained on."""
    training = read_meta(run_dir / "last")[1].training
    saved = training.get("val_fingerprint")
    now = fingerprint(data.val.records)
    if (saved is not None and saved != now) or (saved is None and training.get("n_val") != len(data.val)):
        raise ValueError(f"cannot resume {run_dir}: its validation split is not the one this data and pneumo give "
                         f"now ({training.get('n_val')} images then, {len(data.val)} now); start a new run, or "
                         "resume with the data and pneumo release that started it")


def _restore(run_dir: Path, data: Prepared, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             scheduler: Any, ema: AveragedModel | None, dist_info: DistInfo) -> Progress:
    """Optimizer, scheduler, counters (and the raw weights under an EMA) of the run's last epoch, once the
    validation split is known to be the run's own."""
    _check_same_split(run_dir, data)
    progress = load_state(run_dir / "last" / STATE_FILE, optimizer, scheduler)
    if ema is not None:
        # last/ holds the average; the raw weights that keep training sit in its train state.
        ema.module.load_state_dict(model.state_dict())
        raw = load_training_weights(run_dir / "last" / STATE_FILE)
        if raw is None:
            raise ValueError(f"cannot resume {run_dir}: ema_decay is set but last/{STATE_FILE} holds no "
                             "training weights (was the run started without EMA?)")
        model.load_state_dict(raw)
        ema.n_averaged.fill_(1)  # any count above 0: the next update averages instead of copying
    log.info("resuming after epoch %d (best validation score %.4f at epoch %d)", progress.epoch,
             progress.best_score, progress.best_epoch)
    if dist_info.is_main:
        _trim_history(run_dir / "history.csv", progress.epoch)
    return progress


def _record_epoch(progress: Progress, epoch: int, score: float, elapsed: float, patience: int) -> bool:
    """Count the epoch into ``progress``; True when it is the best so far."""
    progress.epoch = epoch
    progress.elapsed_s += elapsed
    # The first epoch always counts as best, so best/ exists even when the score is -val_loss < -1.
    improved = progress.best_epoch == 0 or score > progress.best_score
    if improved:
        progress.best_score, progress.best_epoch, progress.bad_epochs = score, epoch, 0
    else:
        progress.bad_epochs += 1
    progress.stopped_early = progress.bad_epochs >= patience
    return improved


def _bundle_meta(cfg: RunConfig, names: list[str], records: list[ImageRecord], data: Prepared, progress: Progress,
                 checked: Validation, epoch: int) -> BundleMeta:
    metrics = {"split": "val", "n": len(data.val), "auc": checked.auc, "loss": checked.loss, "epoch": epoch}
    if data.shifted is not None:
        metrics.update(auc_shifted=checked.auc_shifted, n_shifted=len(data.shifted))
    return BundleMeta(
        arch=cfg.model.arch, classes=cfg.data.classes, class_names=names, preprocess=cfg.preprocess,
        dropout=cfg.model.dropout,
        description=f"{cfg.model.arch} at {cfg.preprocess.image_size} px, {cfg.data.classes}-class, epoch {epoch}",
        data_fingerprint=fingerprint(records),
        metrics=metrics,
        training={"config": cfg.to_dict(), "epoch": epoch, "best_epoch": progress.best_epoch,
                  "train_seconds": round(progress.elapsed_s, 1), "n_train": len(data.train), "n_val": len(data.val),
                  "val_fingerprint": fingerprint(data.val.records), "skipped": len(data.skipped)},
    )


def _optimizer(model: torch.nn.Module, tc: TrainConfig) -> torch.optim.Optimizer:
    """Adam/AdamW over the trainable parameters; norm weights and biases (1-D tensors) undecayed on request."""
    params = [p for p in model.parameters() if p.requires_grad]
    if tc.decay_norm_and_bias:
        groups = [{"params": params, "weight_decay": tc.weight_decay}]
    else:
        groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": tc.weight_decay},
                  {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    opt_cls = torch.optim.AdamW if tc.optimizer == "adamw" else torch.optim.Adam
    return opt_cls(groups, lr=tc.lr)


def _scheduler(optimizer: torch.optim.Optimizer, tc: TrainConfig, steps_per_epoch: int):
    if tc.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=tc.lr, total_steps=max(tc.epochs * steps_per_epoch, 2),
                                                   pct_start=tc.warmup_fraction, anneal_strategy="cos")
    if tc.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(tc.epochs, 1))
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=tc.plateau_factor,
                                                      patience=tc.plateau_patience)


def _ema(model: torch.nn.Module, tc: TrainConfig) -> AveragedModel | None:
    if not tc.ema_decay:
        return None
    # Buffers too, so the average is a whole network; its BatchNorm statistics are re-estimated before each
    # validation anyway (recompute_batchnorm), since averaged running statistics do not fit averaged weights.
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(tc.ema_decay), use_buffers=True)


def _recover_from_crash(run_dir: Path) -> None:
    """Tidy what a run killed mid-save leaves behind: put back a bundle that was moved aside (killed
    between the two renames of a replace) and delete half-built ``.last.*``/``.best.*`` folders, which
    would otherwise pile up with every crash. Only this run writes into ``run_dir``."""
    for name in ("last", "best"):
        moved_aside = sorted(run_dir.glob(f".{name}.old-*"))
        if moved_aside and not (run_dir / name).exists():
            moved_aside[-1].rename(run_dir / name)
        for leftover in run_dir.glob(f".{name}.*"):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)


def _save_last(run_dir: Path, model, meta: BundleMeta, progress: Progress, optimizer, scheduler,
               training_weights: dict | None) -> None:
    with tempfile.TemporaryDirectory(dir=run_dir, prefix=".last.state-") as tmp:
        state_path = Path(tmp) / STATE_FILE
        save_state(state_path, progress, optimizer, scheduler, training_weights)
        save_bundle(run_dir / "last", model, meta, {STATE_FILE: state_path, "history.csv": run_dir / "history.csv"})


def _refresh_best_history(run_dir: Path) -> None:
    """Give the best bundle the full history (it was saved mid-run) without touching its weights."""
    best = run_dir / "best"
    if best.is_dir() and (run_dir / "history.csv").is_file():
        read_meta(best)  # fails loudly if the best bundle is damaged
        tmp = best / ".history.csv.tmp"
        tmp.write_bytes((run_dir / "history.csv").read_bytes())
        tmp.replace(best / "history.csv")
