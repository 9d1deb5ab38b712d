"""requirements/service.lock (scripts/lock.sh) locks exactly the torch-free install that pyproject.toml declares."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "service.lock"


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]).lower()


def _locked() -> dict[str, list[str]]:
    """name -> the hashes of its pinned version, from the lock's `name==version \\` blocks."""
    entries: dict[str, list[str]] = {}
    current = None
    for line in LOCK.read_text().splitlines():
        if re.match(r"^[A-Za-z0-9]", line):
            name, _, version = line.split(" ")[0].partition("==")
            assert version, f"{LOCK}: {line!r} is not pinned with =="
            current = entries.setdefault(_name(name), [])
        elif "--hash=sha256:" in line and current is not None:
            current.append(line.split("--hash=sha256:")[1].strip(" \\"))
    return entries


def test_lock_covers_the_declared_dependencies_with_hashes():
    declared = {_name(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    locked = _locked()
    missing = sorted(declared - set(locked))
    assert not missing, f"{LOCK} lacks {missing}: run `bash scripts/lock.sh lock` after changing the dependencies"
    unhashed = sorted(name for name, hashes in locked.items() if not hashes)
    assert not unhashed, f"{LOCK}: no hashes for {unhashed}"
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for hashes in locked.values() for h in hashes)


def test_lock_holds_no_training_dependency():
    heavy = {"torch", "torchvision", "scikit-learn", "scipy", "matplotlib", "opencv-python-headless", "onnx"}
    assert not heavy & set(_locked()), "the service's lock must stay torch-free"
