"""One helper for optional dependencies: a missing extra is one sentence naming it, and `pneumo` exits 2 with it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pneumo.optional import EXTRA_MODULES, MissingExtraError, require, require_extra

SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_an_installed_module_is_returned():
    assert require("numpy", extra="train", needed_for="x") is np


def test_a_missing_module_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingExtraError, match=r"^pneumo train needs torch, which is not installed: "
                                                r"pip install 'pneumo\[train\]'$"):
        require("torch", extra="train", needed_for="pneumo train")
    with pytest.raises(MissingExtraError, match=r"pip install 'pneumo\[train\]'"):
        require_extra("train", needed_for="pneumo export")


def test_a_broken_installed_module_keeps_its_own_error(tmp_path, monkeypatch):
    # Installed, but importing something that is not there: a bug to see, not an extra to install.
    (tmp_path / "pneumo_broken_dep.py").write_text("import pneumo_no_such_module\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as caught:
        require("pneumo_broken_dep", extra="eval", needed_for="x")
    assert not isinstance(caught.value, MissingExtraError)


def test_a_clahe_bundle_without_opencv_names_its_extra(monkeypatch):
    from pneumo.config import PreprocessConfig
    from pneumo.data.preprocess import preprocess_array

    monkeypatch.setitem(sys.modules, "cv2", None)
    image = np.linspace(0.0, 1.0, 32 * 32, dtype=np.float32).reshape(32, 32)
    assert preprocess_array(image, PreprocessConfig(image_size=16)).shape == (16, 16)  # no CLAHE: no OpenCV needed
    with pytest.raises(MissingExtraError, match=r"CLAHE preprocessing .* pip install 'pneumo\[opencv\]'"):
        preprocess_array(image, PreprocessConfig(image_size=16, clahe=True))


def test_unknown_extra_is_an_error():
    with pytest.raises(ValueError, match=r"unknown extra 'trian'; choose one of \["):
        require("numpy", extra="trian", needed_for="x")


def test_extras_match_pyproject():
    import tomllib

    declared = tomllib.loads((Path(SRC).parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(EXTRA_MODULES) <= set(declared)


COMMANDS_WITHOUT_EXTRAS = r"""
import sys
for name in ("torch", "torchvision", "sklearn", "matplotlib", "cv2", "onnx"):
    sys.modules[name] = None  # as in `pip install pneumo` without extras
from pneumo.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("argv, extra", [
    (["train", "--data", "d", "--out", "o"], "train"),
    (["export", "--model", "default", "--into-bundle"], "train"),
    (["gate", "fit", "--model", "default", "--data", "d"], "train"),
    (["ensemble", "a", "b", "--out", "o"], "train"),
    (["evaluate", "--model", "default", "--data", "d", "--out", "o"], "eval"),
    (["predict", "x.png", "--backend", "torch"], "train"),
])
def test_commands_that_need_an_extra_say_which(argv, extra, tmp_path):
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", COMMANDS_WITHOUT_EXTRAS, *argv], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].endswith(f"pip install 'pneumo[{extra}]'"), lines[0]


def test_help_lists_every_command_without_extras(tmp_path):
    env = {**os.environ, "PYTHONPATH": SRC}
    done = subprocess.run([sys.executable, "-c", COMMANDS_WITHOUT_EXTRAS, "--help"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    for command in ("train", "evaluate", "predict", "export", "gate", "serve"):
        assert command in done.stdout
