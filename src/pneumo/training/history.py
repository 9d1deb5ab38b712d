"""``history.csv``: one row per epoch, appended as the run goes and trimmed back when a run resumes."""

from __future__ import annotations

import csv
from pathlib import Path

from pneumo import atomic

HISTORY_FIELDS = ["epoch", "train_loss", "val_loss", "val_auc", "val_auc_shifted", "lr", "epoch_s"]


def history_fields(path: Path) -> list[str]:
    """The columns of an existing history (a run started by an earlier release keeps its own), else today's."""
    if path.is_file():
        with path.open(newline="") as handle:
            header = next(csv.reader(handle), None)
        if header:
            return header
    return HISTORY_FIELDS


def append_history(path: Path, row: dict) -> None:
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=history_fields(path), extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)


def trim_history(path: Path, epochs_done: int) -> None:
    """Drop rows of epochs after the resumed checkpoint (written before a crash cut that epoch short),
    so history.csv keeps one row per epoch."""
    if not path.is_file():
        return
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    kept = [row for row in rows if int(row["epoch"]) <= epochs_done]
    if len(kept) == len(rows):
        return
    with atomic.replacing(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=history_fields(path))
        writer.writeheader()
        writer.writerows(kept)
