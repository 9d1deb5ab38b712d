"""Resumable training state (optimizer, scheduler, counters), saved beside the last bundle.

Saved with ``torch.save`` of tensors and plain values only, and read with ``weights_only=True``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

STATE_FILE = "train_state.pt"


@dataclass
class Progress:
    epoch: int = 0  # epochs completed
    # What picks the best epoch: validation AUC, or minus the validation loss when the AUC is undefined (a
    # validation split with one class), so that higher is better either way.
    best_score: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    elapsed_s: float = 0.0
    stopped_early: bool = False

    def record(self, epoch: int, score: float, elapsed: float, patience: int) -> bool:
        """Count a finished epoch in; True when it is the best so far. Stops early after ``patience`` epochs
        without improvement."""
        self.epoch = epoch
        self.elapsed_s += elapsed
        # The first epoch always counts as best, so best/ exists even when the score is -val_loss < -1.
        improved = self.best_epoch == 0 or score > self.best_score
        if improved:
            self.best_score, self.best_epoch, self.bad_epochs = score, epoch, 0
        else:
            self.bad_epochs += 1
        self.stopped_early = self.bad_epochs >= patience
        return improved


def save_state(path: Path, progress: Progress, optimizer: torch.optim.Optimizer, scheduler: Any,
               training_weights: dict[str, torch.Tensor] | None = None) -> None:
    """``training_weights``: the raw network's state when the bundle beside holds other weights (an EMA)."""
    state = {"progress": asdict(progress), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state()}
    if training_weights is not None:
        state["training_weights"] = training_weights
    torch.save(state, path)


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"cannot resume: {path} is missing")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError (damaged zip), EOFError...: refused, not a traceback
        raise ValueError(f"cannot resume: {path} is damaged or not a pneumo training state "
                         f"({type(exc).__name__}); it is never loaded as a general pickle") from exc


def load_state(path: Path, optimizer: torch.optim.Optimizer, scheduler: Any) -> Progress:
    raw = _read(path)
    optimizer.load_state_dict(raw["optimizer"])
    scheduler.load_state_dict(raw["scheduler"])
    torch.set_rng_state(raw["torch_rng"])
    progress = dict(raw["progress"])
    if "best_auc" in progress:  # states written before the field was renamed
        progress["best_score"] = progress.pop("best_auc")
    return Progress(**progress)


def load_training_weights(path: Path) -> dict[str, torch.Tensor] | None:
    """The raw network's weights saved beside an EMA bundle, or None when the bundle holds them itself."""
    return _read(path).get("training_weights")
