"""Helpers shared by the inference, explain, gate and export tests: tiny bundles, encoded images, a gate."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from conftest import synthetic_xray
from pneumo.bundle import BundleMeta, read_meta, save_bundle, write_meta
from pneumo.config import DataConfig, PreprocessConfig, RunConfig
from pneumo.data.records import class_names
from pneumo.models import create_model


def settle_batchnorm(model: torch.nn.Module, size: int, batches: int = 3) -> torch.nn.Module:
    """Set BatchNorm running statistics from a few synthetic X-ray batches, as training would: an untrained
    network with default statistics lets the signal vanish in deep archs (all-constant features/CAMs)."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for b in range(batches):
            images = np.stack([synthetic_xray(100 * b + i, size=(size, size), pneumonia=i % 2 == 0)
                               for i in range(4)]).astype(np.float32) / 255.0
            model(torch.from_numpy((images - 0.5) / 0.25)[:, None])
    return model.eval()


def make_bundle(path: Path, *, arch: str = "simple_cnn", classes: int = 2, size: int = 32, seed: int = 0,
                temperature: float = 1.0, threshold: float = 0.5, data_root: str = "") -> Path:
    """An untrained bundle saved the way training saves one; ``data_root`` stores a training config."""
    torch.manual_seed(seed)
    model = settle_batchnorm(create_model(arch, classes=classes), size)
    training = {}
    if data_root:
        run = RunConfig(data=DataConfig(root=data_root, classes=classes, val_fraction=0.3),
                        preprocess=PreprocessConfig(image_size=size))
        training = {"config": run.to_dict()}
    meta = BundleMeta(arch=arch, classes=classes, class_names=list(class_names(classes)),
                      preprocess=PreprocessConfig(image_size=size), temperature=temperature, threshold=threshold,
                      dropout=0.5, description="test bundle", training=training)
    return save_bundle(path, model, meta)


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def xray_png(seed: int, size: tuple[int, int] = (64, 56), pneumonia: bool = False) -> bytes:
    return png(synthetic_xray(seed, size=size, pneumonia=pneumonia))


def noise_png(seed: int, size: tuple[int, int] = (64, 64)) -> bytes:
    return png(np.random.default_rng(seed).integers(0, 256, size=size, dtype=np.uint8))


def add_gate(bundle: Path, images: list, percentile: float = 99.0):
    """Fit a gate on two thirds of ``images``, calibrate it on the rest, and store it in ``bundle``."""
    from pneumo.gate.mahalanobis import fit_gate, save_gate
    from pneumo.inference.predictor import Predictor

    predictor = Predictor.load(bundle)
    network = predictor.backend.network
    features = np.stack([e.features for e in predictor.embed_many(images)])
    cut = 2 * len(features) // 3
    params, _ = fit_gate(features[:cut], features[cut:], feature_layers=network.feature_layers,
                         pooling=network.pooling, percentile=percentile)
    directory, meta = read_meta(bundle)
    meta.gate = save_gate(directory, params)
    write_meta(directory, meta)
    return params


def add_warning_gate(bundle: Path) -> Path:
    """Give ``bundle`` a two-boundary gate whose in-distribution threshold is 0 and whose non-X-ray score never
    refuses: every input that passes the cheap checks is answered, as a chest X-ray unlike the training
    population (with the out-of-distribution warning)."""
    from pneumo.gate.mahalanobis import save_gate

    params = add_gate(bundle, [xray_png(s) for s in range(60)])
    params.threshold, params.far_threshold = 0.0, 1e12
    params.nonxray_weight, params.nonxray_bias = np.zeros(params.dim), -1.0
    directory, meta = read_meta(bundle)
    meta.gate = save_gate(directory, params)
    write_meta(directory, meta)
    return bundle
