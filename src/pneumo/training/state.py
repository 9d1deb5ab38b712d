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
    best_auc: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    elapsed_s: float = 0.0
    stopped_early: bool = False


def save_state(path: Path, progress: Progress, optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
    torch.save({"progress": asdict(progress), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state()}, path)


def load_state(path: Path, optimizer: torch.optim.Optimizer, scheduler: Any) -> Progress:
    if not path.is_file():
        raise FileNotFoundError(f"cannot resume: {path} is missing")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError (damaged zip), EOFError...: refused, not a traceback
        raise ValueError(f"cannot resume: {path} is damaged or not a pneumo training state "
                         f"({type(exc).__name__}); it is never loaded as a general pickle") from exc
    optimizer.load_state_dict(raw["optimizer"])
    scheduler.load_state_dict(raw["scheduler"])
    torch.set_rng_state(raw["torch_rng"])
    return Progress(**raw["progress"])
