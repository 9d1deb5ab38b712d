"""Kill ``pneumo train`` with SIGKILL at chosen moments and check what it leaves behind.

Shared by ``test_train_crash.py`` (a few kills, in CI) and ``bench/reliability_crash.py`` (many).
"""

from __future__ import annotations

import csv
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pneumo.inference.loading import load_bundle
from pneumo.training.state import STATE_FILE

from .corpus import xray_like
from .launcher import Launcher


def synthetic_tree(root: Path, seed: int = 0) -> Path:
    """A tiny Kermany-style tree (train/test x NORMAL/PNEUMONIA, several images per patient), like the
    ``kermany_tree`` test fixture, for the bench scripts that run outside pytest."""
    rng = np.random.default_rng(seed)
    for split, patients, base in (("train", 10, 0), ("test", 3, 100)):
        for label in ("NORMAL", "PNEUMONIA"):
            (root / split / label).mkdir(parents=True, exist_ok=True)
        for p in range(patients):
            for k in range(2):
                Image.fromarray(xray_like(rng)).save(root / split / "NORMAL" / f"IM-{base + p:04d}-{k + 1:04d}.jpeg")
                sick = xray_like(rng)
                sick[20:30, 8:16] = 150  # a bright patch in one lung
                kind = "bacteria" if p % 2 == 0 else "virus"
                Image.fromarray(sick).save(root / split / "PNEUMONIA" / f"person{base + p}_{kind}_{p * 2 + k}.jpeg")
    return root


def train_argv(data: Path, run: Path, cache: Path, epochs: int) -> list[str]:
    """A tiny training run: simple_cnn at 32 px, two steps per epoch, no loader processes, and no early
    stopping (the synthetic data is learnt at once, which would otherwise end the run after a few epochs)."""
    config = run.parent / f"{run.name}-config.json"
    config.write_text(json.dumps({"train": {"early_stopping_patience": 1000}}))
    return ["train", "--config", config, "--data", data, "--out", run, "--arch", "simple_cnn", "--image-size", "32",
            "--epochs", epochs, "--max-steps-per-epoch", "2", "--batch-size", "8", "--workers", "0",
            "--device", "cpu", "--no-progress", "--cache-dir", cache, "--seed", "0"]


def check_bundles(run: Path) -> dict[str, int]:
    """Every bundle a reader can see loads completely; ``last`` agrees with its training state.

    Returns the epoch each visible bundle holds.
    """
    epochs = {}
    for name in ("last", "best"):
        directory = run / name
        if not directory.exists():
            continue
        _, meta, _ = load_bundle(directory)  # raises BundleError on a missing, truncated or altered file
        epochs[name] = int(meta.training["epoch"])
        if name == "last":
            state = torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)
            assert state["progress"]["epoch"] == epochs[name], (state["progress"], epochs)
    return epochs


def history_epochs(run: Path) -> list[int]:
    path = run / "history.csv"
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def saving(run: Path) -> bool:
    """True while a bundle is being written (its staging folder exists)."""
    return any(p.name.startswith((".last.staging-", ".best.staging-")) for p in run.glob(".*"))


@dataclass
class KillLog:
    kills: int = 0
    during_save: int = 0
    finished_before_kill: int = 0
    epochs_after_kill: list[dict[str, int]] = field(default_factory=list)


def kill_repeatedly(launcher: Launcher, data: Path, run: Path, cache: Path, epochs: int, kills: int,
                    seed: int, logs: Path) -> KillLog:
    """Start (then resume) the run ``kills`` times and SIGKILL each start: even starts the moment a bundle
    starts being written, odd ones at a random point of a random epoch (training, validation or saving).
    Checks every bundle a reader can see after every kill."""
    rng = random.Random(seed)
    log = KillLog()
    for attempt in range(kills):
        fresh = not (run / "config.json").exists()
        argv = train_argv(data, run, cache, epochs) if fresh else ["train", "--resume", run]
        done_before = len(history_epochs(run))
        child = launcher.start(argv, logs / f"start{attempt}.log")
        deadline = time.monotonic() + 120
        if attempt % 2 == 0:
            while not saving(run) and child.running() and time.monotonic() < deadline:
                time.sleep(0.0005)
            time.sleep(rng.uniform(0.0, 0.02))
        else:
            target = done_before + rng.randint(0, 1)
            while len(history_epochs(run)) < target and child.running() and time.monotonic() < deadline:
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.4))
        was_saving = saving(run)
        finished = child.kill()
        if finished.killed:
            log.kills += 1
            log.during_save += was_saving
        else:
            log.finished_before_kill += 1
            assert finished.code == 0, finished.output[-3000:]
        log.epochs_after_kill.append(check_bundles(run))
    return log
