"""Crash recovery and the run's bookkeeping, without training: what a killed run leaves is tidied, a run killed
before its first checkpoint starts again, the history is trimmed to the checkpoint, and epochs are counted."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from pneumo.training.history import append_history, trim_history
from pneumo.training.recovery import has_checkpoint, recover_from_crash
from pneumo.training.runtime import DistInfo
from pneumo.training.state import STATE_FILE, Progress


def test_a_bundle_moved_aside_is_put_back_and_half_built_ones_deleted(tmp_path: Path) -> None:
    (tmp_path / ".last.old-123").mkdir()  # killed between the two renames of a replace: no last/ at all
    (tmp_path / ".last.old-123" / "bundle.json").write_text("{}")
    (tmp_path / "best").mkdir()
    (tmp_path / ".best.old-9").mkdir()  # best/ is there: the moved-aside copy is stale
    (tmp_path / ".best.staging-x").mkdir()
    recover_from_crash(tmp_path)
    assert (tmp_path / "last" / "bundle.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "last"]


def test_resume_without_a_checkpoint_starts_again_or_refuses(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        has_checkpoint(tmp_path, DistInfo())  # not a run directory at all
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "history.csv").write_text("epoch\n")
    assert not has_checkpoint(tmp_path, DistInfo())  # killed before epoch 1 finished: start over
    assert not (tmp_path / "history.csv").exists()
    (tmp_path / "last").mkdir()
    (tmp_path / "last" / STATE_FILE).write_bytes(b"")
    assert has_checkpoint(tmp_path, DistInfo())


def test_history_is_trimmed_to_the_checkpoint_and_keeps_an_older_header(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    path.write_text("epoch,train_loss,val_loss,val_auc,lr,epoch_s\n")  # a run started before val_auc_shifted
    for epoch in (1, 2, 3):
        append_history(path, {"epoch": epoch, "train_loss": 0.5, "val_loss": 0.4, "val_auc": 0.9,
                              "val_auc_shifted": "", "lr": 1e-3, "epoch_s": 1.0})
    trim_history(path, 2)
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["epoch"] for r in rows] == ["1", "2"] and "val_auc_shifted" not in rows[0]


def test_progress_counts_the_best_epoch_and_stops_after_patience() -> None:
    progress = Progress()
    assert progress.record(1, -5.0, 2.0, patience=2)  # the first epoch is best even with a score below -1
    assert progress.record(2, 0.7, 2.0, patience=2)
    assert not progress.record(3, 0.6, 2.0, patience=2) and not progress.stopped_early
    assert not progress.record(4, 0.7, 2.0, patience=2) and progress.stopped_early  # equal is no improvement
    assert (progress.best_epoch, progress.best_score, progress.epoch, progress.elapsed_s) == (2, 0.7, 4, 8.0)
