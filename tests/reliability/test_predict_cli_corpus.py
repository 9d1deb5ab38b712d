"""The hostile corpus through ``pneumo predict``: one row per input (an error naming the file, or a
prediction), exit status 1, and nothing on the terminal that a user should not see (no traceback, no
source lines from warnings)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pneumo.cli import main as pneumo_main
from pneumo.commands.predict import IMAGE_SUFFIXES
from pneumo.data.decode import decode_image
from pneumo.data.errors import ImageDecodeError

from pneumo_testsupport.corpus import Case
from pneumo_testsupport.launcher import Launcher
from .outcomes import release_fifos

LABELS = {"NORMAL", "PNEUMONIA"}  # no gate in the test bundle, so only the cheap checks can say UNKNOWN
# What a user must never see: a traceback, a Python source location, the text of a source line.
LEAKS = re.compile(r"Traceback|File \"|\.py:\d+|site-packages")


def decode_refusal(path: Path) -> str | None:
    if not path.is_file():
        return "not a regular file"
    try:
        decode_image(path)
    except ImageDecodeError as exc:
        return exc.reason
    return None


def row_problems(rows: list[dict], expected_paths: list[str]) -> dict[str, str]:
    """Every expected input has exactly one row, in order; error rows name the file and carry no result;
    the others are predictions; the decoder and the CLI agree on which is which."""
    problems = {}
    if [r["path"] for r in rows] != expected_paths:
        missing = sorted(set(expected_paths) - {r["path"] for r in rows})
        extra = sorted({r["path"] for r in rows} - set(expected_paths))
        return {"<rows>": f"rows do not match the inputs: missing {missing[:5]}, extra {extra[:5]}"}
    for row in rows:
        path = row["path"]
        refused = decode_refusal(Path(path))
        if refused is not None:
            if not row["error"] or path not in row["error"]:
                problems[path] = f"unreadable input without an error naming it: {row}"
            elif row["label"] is not None or row["probability"] is not None:
                problems[path] = f"error row carries a result: {row}"
        elif row["error"] is not None:
            problems[path] = f"readable input reported as an error: {row['error']}"
        elif row["label"] == "UNKNOWN":
            if not row["unknown_reason"] or row["probability"] is not None:
                problems[path] = f"UNKNOWN without a reason, or with a probability: {row}"
        elif row["label"] not in LABELS or not 0.0 <= row["probability"] <= 1.0:
            problems[path] = f"bad prediction: {row}"
    return problems


def test_predict_over_the_corpus_folder(corpus: list[Case], corpus_dir: Path, session_bundle: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A folder argument: every image-suffixed regular file in it gets a row (the FIFO and the
    ``folder.png`` directory are skipped by the folder walk, without hanging)."""
    code = pneumo_main(["predict", str(corpus_dir), "--model", str(session_bundle), "--format", "json",
                        "--batch-size", "9"])
    out, err = capsys.readouterr()
    rows = json.loads(out)
    expected = sorted(str(c.path) for c in corpus
                      if not c.special and c.path.suffix.lower() in IMAGE_SUFFIXES)
    assert len(expected) >= 200
    problems = row_problems(rows, expected)
    assert not problems, "\n".join(f"{path}: {why}" for path, why in problems.items())
    failed = sum(r["error"] is not None for r in rows)
    assert failed >= 60 and len(rows) - failed >= 20, (failed, len(rows))
    assert code == 1 and f"{failed} of {len(rows)} inputs could not be read" in err
    assert not LEAKS.search(out + err), err[-3000:]


def test_predict_as_a_user_runs_it(launcher: Launcher, corpus: list[Case], session_bundle: Path,
                                   tmp_path: Path) -> None:
    """Every input named on the command line (any suffix, the FIFO, a missing file), in a real ``pneumo``
    process, so the terminal shows exactly what a user would see, warnings and library logging included."""
    named = [str(c.path) for c in corpus if not (c.path.is_dir())]
    missing = str(tmp_path / "no-such-xray.jpeg")
    argv = ["predict", *named, missing, "--model", session_bundle, "--format", "json"]
    child = launcher.start(argv, tmp_path / "stdout.json", err=tmp_path / "stderr.txt")
    finished = child.wait()
    release_fifos(corpus)  # harmless when nothing read the FIFO
    rows = json.loads(finished.output)
    problems = row_problems(rows, named + [missing])
    assert not problems, "\n".join(f"{path}: {why}" for path, why in problems.items())
    assert finished.code == 1, finished
    assert not LEAKS.search(finished.errors), finished.errors[-3000:]
    assert not LEAKS.search(finished.output)
    failed = sum(r["error"] is not None for r in rows)
    assert f"{failed} of {len(rows)} inputs could not be read" in finished.errors
