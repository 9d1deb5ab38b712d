"""Crash safety of training: ``pneumo train`` SIGKILLed at random moments (and mid-save) resumes to
completion with ``pneumo train --resume``; no bundle a reader can see is ever half-written."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import torch

from pneumo.training.state import STATE_FILE

from pneumo_testsupport.corpus import CodeRunningPickle
from pneumo_testsupport.crash import check_bundles, history_epochs, kill_repeatedly, train_argv
from pneumo_testsupport.launcher import Launcher

EPOCHS = 8
KILLS = 4
SEED = 8


def test_sigkilled_training_resumes_to_completion(launcher: Launcher, kermany_tree: Path, tmp_path: Path) -> None:
    run, cache, logs = tmp_path / "run", tmp_path / "cache", tmp_path / "logs"
    logs.mkdir()
    # A few unreadable files in the data: training must skip them, before and after every crash.
    shutil.copyfile(__file__, kermany_tree / "train" / "NORMAL" / "IM-9000-0001.jpeg")
    (kermany_tree / "train" / "PNEUMONIA" / "person900_virus_1.jpeg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 40)
    log = kill_repeatedly(launcher, kermany_tree, run, cache, EPOCHS, KILLS, SEED, logs)
    assert log.kills >= KILLS - 1, log  # at most one start may finish before its kill lands
    assert log.during_save >= 1, log  # at least one kill landed while a bundle was being written

    done = launcher.start(["train", "--resume", run], logs / "final.log").wait()
    assert done.code == 0, done.output[-3000:]
    assert "Traceback" not in done.output
    epochs = check_bundles(run)
    assert epochs["last"] == EPOCHS and 1 <= epochs["best"] <= EPOCHS, epochs
    assert history_epochs(run) == list(range(1, EPOCHS + 1)), "history lost or repeated epochs across crashes"
    leftovers = sorted(p.name for p in run.iterdir() if p.name.startswith(".") and p.is_dir())
    assert not leftovers, f"half-written bundle folders left behind: {leftovers}"

    # A checkpoint swapped for a pickle that runs code: resuming refuses it cleanly and runs nothing.
    marker = tmp_path / "pwned"
    torch.save({"progress": {}, "optimizer": CodeRunningPickle(marker)}, run / "last" / STATE_FILE)
    refused = launcher.start(["train", "--resume", run, "--epochs", EPOCHS + 1], logs / "evil.log").wait()
    assert refused.code == 2 and "never loaded as a general pickle" in refused.output, refused
    assert "Traceback" not in refused.output and not marker.exists()


def test_resume_before_the_first_checkpoint_starts_over(launcher: Launcher, kermany_tree: Path,
                                                        tmp_path: Path) -> None:
    """Killed before epoch 1 was saved: ``--resume`` must not dead-end (``--out`` refuses the folder)."""
    run = tmp_path / "run"
    child = launcher.start(train_argv(kermany_tree, run, tmp_path / "cache", 1), tmp_path / "first.log")
    while not (run / "config.json").exists() and child.running():
        time.sleep(0.001)
    assert child.kill().killed
    assert not (run / "last").exists()
    done = launcher.start(["train", "--resume", run], tmp_path / "resume.log").wait()
    assert done.code == 0, done.output[-3000:]
    assert check_bundles(run)["last"] == 1 and history_epochs(run) == [1]
