"""Fixtures for the evaluation tests: a bundle really trained (briefly) on the tiny Kermany tree."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def fitted_bundle(kermany_tree: Path, tmp_path: Path) -> Path:
    """A simple_cnn bundle from a two-step ``fit`` on ``kermany_tree``: it holds the training config that
    ``--split val`` needs to carve the same patient-level validation split."""
    from pneumo.config import RunConfig
    from pneumo.training import fit

    cfg = RunConfig.from_dict({
        "data": {"root": str(kermany_tree), "cache_dir": str(tmp_path / "train-cache"), "num_workers": 0,
                 "batch_size": 8},
        "preprocess": {"image_size": 32},
        "model": {"arch": "simple_cnn"},
        "train": {"epochs": 1, "max_steps_per_epoch": 2, "amp": False, "device": "cpu", "progress": False},
    })
    return fit(cfg, tmp_path / "run")
