"""Shared fixtures: tiny synthetic X-ray-like images, a tiny Kermany tree, and a tiny model bundle."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest
import torch
from PIL import Image

# Tests share a 2-core machine with other work; one thread each keeps them predictable.
torch.set_num_threads(1)

ASSETS = Path(__file__).parent / "assets"


def synthetic_xray(seed: int, size: tuple[int, int] = (48, 40), pneumonia: bool = False) -> np.ndarray:
    """A uint8 image with two dark 'lungs' on a bright body; pneumonia adds a bright blotch in one lung."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.full((h, w), 170.0)
    for cx in (w * 0.3, w * 0.7):
        lung = ((xx - cx) / (w * 0.17)) ** 2 + ((yy - h * 0.5) / (h * 0.33)) ** 2 < 1
        image[lung] = 60.0
    if pneumonia:
        cx = w * (0.3 if rng.random() < 0.5 else 0.7)
        blotch = ((xx - cx) / (w * 0.1)) ** 2 + ((yy - h * 0.55) / (h * 0.12)) ** 2 < 1
        image[blotch] = 150.0
    image += rng.normal(0, 8, size=(h, w))
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture
def kermany_tree(tmp_path: Path) -> Path:
    """ROOT/{train,test}/{NORMAL,PNEUMONIA} with several images per patient, Kermany file names."""
    root = tmp_path / "kermany"
    seed = 0
    for split, patients in (("train", 10), ("test", 3)):
        normal = root / split / "NORMAL"
        pneumonia = root / split / "PNEUMONIA"
        normal.mkdir(parents=True)
        pneumonia.mkdir(parents=True)
        base = 100 if split == "test" else 0
        for p in range(patients):
            for k in range(2):
                seed += 1
                Image.fromarray(synthetic_xray(seed)).save(normal / f"IM-{base + p:04d}-{k + 1:04d}.jpeg")
                seed += 1
                kind = "bacteria" if p % 2 == 0 else "virus"
                Image.fromarray(synthetic_xray(seed, pneumonia=True)).save(
                    pneumonia / f"person{base + p}_{kind}_{seed}.jpeg")
    return root


def make_tiny_bundle(folder: Path) -> Path:
    """An untrained simple_cnn bundle at 32 px (2-class), saved the way training saves bundles."""
    from pneumo.bundle import BundleMeta, save_bundle
    from pneumo.config import PreprocessConfig
    from pneumo.models import create_model

    torch.manual_seed(0)
    model = create_model("simple_cnn", classes=2)
    meta = BundleMeta(arch="simple_cnn", classes=2, class_names=["NORMAL", "PNEUMONIA"],
                      preprocess=PreprocessConfig(image_size=32), dropout=0.5, description="test bundle")
    return save_bundle(folder / "bundle", model, meta)


@contextmanager
def node_starter(model: Path, data_dir: Path, **dicom_defaults) -> Iterator[Callable[..., tuple]]:
    """``start(**dicom_overrides)`` -> (client, node): pneumo on ``model`` with its DICOM node on a free loopback
    port, spooling under ``data_dir``; every app started is shut down when the block ends."""
    from fastapi.testclient import TestClient

    from pneumo.dicom.settings import DicomSettings
    from pneumo.service import ServiceSettings, create_app

    clients = []

    def start(**dicom_overrides):
        values = {"port": 0, "spool_dir": data_dir / "dicom", **dicom_defaults, **dicom_overrides}
        settings = ServiceSettings(model=str(model), data_dir=data_dir, api_key=None, dicom=DicomSettings(**values))
        client = TestClient(create_app(settings), base_url="http://127.0.0.1")  # a Host the service trusts
        client.__enter__()
        clients.append(client)
        return client, client.app.state.service.dicom

    try:
        yield start
    finally:
        for client in clients:
            client.__exit__(None, None, None)


@pytest.fixture
def tiny_bundle(tmp_path: Path) -> Path:
    """An untrained simple_cnn bundle at 32 px (2-class), saved the way training saves bundles."""
    return make_tiny_bundle(tmp_path)


@pytest.fixture
def real_xrays() -> list[Path]:
    """Four real chest X-rays checked into tests/assets (official Kermany val split)."""
    return sorted(ASSETS.glob("*.jpeg"))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PNEUMO_CACHE", str(tmp_path / "cache"))
    os.environ.pop("PNEUMO_API_KEY", None)
