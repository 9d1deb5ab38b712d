"""What a run writes after each epoch: the bundle metadata, ``best/`` when the epoch improved, ``last/`` with
its training state (for ``--resume``), and at the end the full history into ``best/``."""

from __future__ import annotations

import tempfile
from pathlib import Path

from torch import nn

from pneumo import atomic
from pneumo.bundle import BundleMeta, read_meta, save_bundle
from pneumo.config import RunConfig
from pneumo.data.records import class_names
from pneumo.data.selection import fingerprint
from pneumo.training.datasets import TrainingSplits
from pneumo.training.factories import Optimization
from pneumo.training.state import STATE_FILE, Progress, save_state
from pneumo.training.validation import Validation


def bundle_meta(cfg: RunConfig, data: TrainingSplits, progress: Progress, checked: Validation, epoch: int) -> BundleMeta:
    metrics = {"split": "val", "n": len(data.val), "auc": checked.auc, "loss": checked.loss, "epoch": epoch}
    if data.shifted is not None:
        metrics.update(auc_shifted=checked.auc_shifted, n_shifted=len(data.shifted))
    return BundleMeta(
        arch=cfg.model.arch, classes=cfg.data.classes, class_names=list(class_names(cfg.data.classes)),
        preprocess=cfg.preprocess, dropout=cfg.model.dropout,
        description=f"{cfg.model.arch} at {cfg.preprocess.image_size} px, {cfg.data.classes}-class, epoch {epoch}",
        data_fingerprint=fingerprint(data.train.records + data.val.records),
        metrics=metrics,
        training={"config": cfg.to_dict(), "epoch": epoch, "best_epoch": progress.best_epoch,
                  "train_seconds": round(progress.elapsed_s, 1), "n_train": len(data.train), "n_val": len(data.val),
                  "val_fingerprint": fingerprint(data.val.records), "skipped": len(data.skipped)},
    )


def save_epoch(run_dir: Path, scored: nn.Module, meta: BundleMeta, progress: Progress, improved: bool,
               optimization: Optimization, raw: nn.Module) -> None:
    """``best/`` (when ``improved``) and ``last/`` hold ``scored``, the network validated; under an EMA the raw
    weights that keep training go into last/'s training state."""
    history = run_dir / "history.csv"
    if improved:
        save_bundle(run_dir / "best", scored, meta, {"history.csv": history})
    save_last(run_dir, scored, meta, progress, optimization.optimizer, optimization.scheduler,
              None if optimization.ema is None else raw.state_dict())


def save_last(run_dir: Path, model: nn.Module, meta: BundleMeta, progress: Progress, optimizer, scheduler,
              training_weights: dict | None) -> None:
    with tempfile.TemporaryDirectory(dir=run_dir, prefix=".last.state-") as tmp:
        state_path = Path(tmp) / STATE_FILE
        save_state(state_path, progress, optimizer, scheduler, training_weights)
        save_bundle(run_dir / "last", model, meta, {STATE_FILE: state_path, "history.csv": run_dir / "history.csv"})


def refresh_best_history(run_dir: Path) -> None:
    """Give the best bundle the full history (it was saved mid-run) without touching its weights."""
    best = run_dir / "best"
    if best.is_dir() and (run_dir / "history.csv").is_file():
        read_meta(best)  # fails loudly if the best bundle is damaged
        atomic.write_bytes(best / "history.csv", (run_dir / "history.csv").read_bytes())
