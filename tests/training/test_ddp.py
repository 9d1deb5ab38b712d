"""Data-parallel training: ``pneumo train`` under torchrun with two CPU processes (gloo backend)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pneumo.inference.loading import load_bundle
from pneumo.training.state import STATE_FILE


def _torchrun(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PNEUMO_CACHE=str(tmp_path / "cache"))
    env.pop("WORLD_SIZE", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
               "-m", "pneumo.cli", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)


@pytest.mark.slow  # ~30 s on the shared 2-core machine, mostly three processes importing torch
def test_two_process_gloo_training(kermany_tree: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    # 34 training images, batch 16: each rank sees 17, so each epoch has one full batch per rank.
    done = _torchrun(tmp_path, "train", "--data", str(kermany_tree), "--arch", "simple_cnn", "--image-size", "32",
                     "--epochs", "2", "--batch-size", "16", "--workers", "0", "--device", "cpu",
                     "--cache-dir", str(tmp_path / "cache"), "--out", str(run),
                     "--no-progress")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("best model bundle:") == 2  # both ranks finished
    model, meta, _ = load_bundle(run)
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(2, 1, 32, 32))).all()
    assert meta.training["epoch"] in (1, 2)
    with (run / "history.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2]  # rank 0 alone writes: one row per epoch
    assert all(float(r["train_loss"]) > 0 for r in rows)  # batches were trained on every epoch
    assert "world 2" in (run / "train.log").read_text()
    assert (run / "last" / STATE_FILE).is_file()
    assert not [p for p in run.iterdir() if p.name.startswith(".")]
