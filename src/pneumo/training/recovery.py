"""Resuming a run: tidy what a crash left behind, check the data is the run's own, and load back the optimizer,
schedule, counters and (under an EMA) the raw weights of the last finished epoch."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from torch import nn

from pneumo.bundle import read_meta
from pneumo.data.selection import fingerprint
from pneumo.training.datasets import TrainingSplits
from pneumo.training.factories import Optimization
from pneumo.training.history import trim_history
from pneumo.training.runtime import DistInfo
from pneumo.training.state import STATE_FILE, Progress, load_state, load_training_weights

log = logging.getLogger("pneumo.train")


def has_checkpoint(run_dir: Path, dist_info: DistInfo) -> bool:
    """Whether ``pneumo train --resume`` continues from ``last/`` (after tidying a crash's leftovers), or, for a
    run killed before its first checkpoint, starts again from epoch 1 with its saved configuration."""
    if dist_info.is_main:
        recover_from_crash(run_dir)
    if (run_dir / "last" / STATE_FILE).is_file():
        return True
    if not (run_dir / "config.json").is_file():
        raise FileNotFoundError(f"cannot resume: {run_dir / 'last' / STATE_FILE} is missing")
    # ``pneumo train --out`` refuses a directory that already holds a run, so this is the way back.
    log.warning("no checkpoint in %s yet: starting the run again from epoch 1", run_dir)
    if dist_info.is_main:
        (run_dir / "history.csv").unlink(missing_ok=True)
    return False


def recover_from_crash(run_dir: Path) -> None:
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


def check_same_split(run_dir: Path, data: TrainingSplits) -> None:
    """Refuse to resume on a validation split other than the one the run started on (the data changed, or a
    pneumo release changed how splits are drawn): epochs on two splits would validate on images trained on."""
    training = read_meta(run_dir / "last")[1].training
    saved = training.get("val_fingerprint")
    now = fingerprint(data.val.records)
    if (saved is not None and saved != now) or (saved is None and training.get("n_val") != len(data.val)):
        raise ValueError(f"cannot resume {run_dir}: its validation split is not the one this data and pneumo give "
                         f"now ({training.get('n_val')} images then, {len(data.val)} now); start a new run, or "
                         "resume with the data and pneumo release that started it")


def restore(run_dir: Path, data: TrainingSplits, model: nn.Module, optimization: Optimization,
            dist_info: DistInfo) -> Progress:
    """Optimizer, scheduler, counters (and the raw weights under an EMA) of the run's last epoch, once the
    validation split is known to be the run's own."""
    check_same_split(run_dir, data)
    progress = load_state(run_dir / "last" / STATE_FILE, optimization.optimizer, optimization.scheduler)
    ema = optimization.ema
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
        trim_history(run_dir / "history.csv", progress.epoch)
    return progress
