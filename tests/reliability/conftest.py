"""Fixtures of the reliability suite: the hostile corpus (built once per session into a temp folder)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pneumo_testsupport.corpus import Case, build_corpus
from pneumo_testsupport.launcher import Launcher

CORPUS_SEED = 20240611


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Case]:
    return build_corpus(tmp_path_factory.mktemp("hostile"), seed=CORPUS_SEED)


@pytest.fixture(scope="session")
def corpus_dir(corpus: list[Case]) -> Path:
    return corpus[0].path.parent


@pytest.fixture(scope="session")
def launcher():
    """One process that imports pneumo once and forks a real, killable process per ``pneumo`` command."""
    with Launcher() as started:
        yield started


@pytest.fixture(scope="session")
def session_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained simple_cnn bundle at 32 px (like ``tiny_bundle``, built once for the whole suite),
    with a temperature and threshold that are not the defaults, so a predictor that ignored them shows."""
    import torch

    from pneumo.bundle import BundleMeta, save_bundle
    from pneumo.config import PreprocessConfig
    from pneumo.models import create_model

    torch.manual_seed(0)
    model = create_model("simple_cnn", classes=2)
    meta = BundleMeta(arch="simple_cnn", classes=2, class_names=["NORMAL", "PNEUMONIA"],
                      preprocess=PreprocessConfig(image_size=32), threshold=0.4, temperature=1.7, dropout=0.5,
                      description="reliability suite bundle")
    return save_bundle(tmp_path_factory.mktemp("bundle") / "bundle", model, meta)
