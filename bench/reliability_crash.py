"""Kill ``pneumo train`` with SIGKILL many times, resume it each time, and count what survived.

    python -m bench.reliability_crash [--kills 20] [--epochs 30] [--seed 0] [--data KERMANY_ROOT]

The CI test (tests/reliability/test_train_crash.py) does a few kills; this does many. Half the kills land
the moment a bundle starts being written (best/ or last/ staging), the others at a random point of a
random epoch. After every kill each visible bundle must load completely (checksums, safetensors) and
last/ must agree with its training state; after the final resume the run must hold every epoch once.
Prints the counts; exit status 1 when any check failed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout root: pneumo_testsupport/

from bench.verdict import verdict  # noqa: E402
from pneumo_testsupport.crash import (check_bundles, history_epochs, kill_repeatedly,  # noqa: E402
                                      synthetic_tree)
from pneumo_testsupport.launcher import Launcher  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--kills", type=int, default=20, help="starts that are SIGKILLed")
    p.add_argument("--epochs", type=int, default=30, help="epochs of the run (two steps each)")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    p.add_argument("--data", default="", help="Kermany-style root (default: a tiny synthetic tree)")
    p.add_argument("--keep", default="", help="work in this folder and keep it (default: a temporary one)")
    return p


def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="pneumo-crash-") as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        data = Path(args.data) if args.data else synthetic_tree(work / "data")
        run, cache, logs = work / "run", work / "cache", work / "logs"
        logs.mkdir(exist_ok=True)
        started = time.perf_counter()
        with Launcher() as launcher:
            log = kill_repeatedly(launcher, data, run, cache, args.epochs, args.kills, args.seed, logs)
            final = launcher.start(["train", "--resume", run], logs / "final.log").wait()
        elapsed = time.perf_counter() - started

        problems = []
        if final.code != 0 or "Traceback" in final.output:
            problems.append(f"final resume failed (code {final.code}): {final.output[-1500:]}")
        epochs = check_bundles(run)
        history = history_epochs(run)
        if epochs.get("last") != args.epochs or not 1 <= epochs.get("best", 0) <= args.epochs:
            problems.append(f"bundles after the final resume: {epochs}")
        if history != list(range(1, args.epochs + 1)):
            problems.append(f"history epochs {history}, expected 1..{args.epochs}")
        leftovers = sorted(p.name for p in run.iterdir() if p.name.startswith(".") and p.is_dir())
        if leftovers:
            problems.append(f"half-written folders left behind: {leftovers}")
        progress = Counter(after.get("last", 0) for after in log.epochs_after_kill)

        print(f"starts SIGKILLed:             {log.kills} of {args.kills}")
        print(f"  while a bundle was written: {log.during_save}")
        print(f"  finished before the kill:   {log.finished_before_kill}")
        print(f"bundle checks after kills:    {len(log.epochs_after_kill)} passed (every visible best/ and last/ "
              "loaded completely)")
        print(f"last/ epoch after each kill:  {[after.get('last', 0) for after in log.epochs_after_kill]}")
        print(f"kills that left no last/:     {progress[0]}")
        print(f"final resume:                 exit {final.code}, last epoch {epochs.get('last')}, "
              f"best epoch {epochs.get('best')}, history rows {len(history)} (expected {args.epochs})")
        print(f"wall time:                    {elapsed:.1f} s")
        return verdict(problems)


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
