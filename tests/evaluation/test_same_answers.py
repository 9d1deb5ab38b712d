"""`pneumo evaluate` and `pneumo predict` give the same answer on every image of a folder: the same label by the
same threshold rule, UNKNOWN on the same images, the out-of-distribution warning on the same images."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ASSETS
from inference.bundles import add_gate, make_bundle, xray_png
from pneumo.bundle import read_meta, write_meta
from pneumo.cli import main
from pneumo.gate.mahalanobis import save_gate
from pneumo.inference.predictor import Predictor
from pneumo.inference.rows import csv_cell


def _add_non_xrays(folder: Path) -> None:
    """Images that are no chest X-ray: some refused by the cheap checks, some only by the feature gate."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (80, 80), dtype=np.uint8)).save(folder / "noise.jpeg")
    colour = np.zeros((64, 64, 3), np.uint8)
    colour[..., 0], colour[..., 2] = 200, 40
    Image.fromarray(colour).save(folder / "colour.jpeg")
    Image.fromarray(np.full((64, 64), 128, np.uint8)).save(folder / "blank.jpeg")
    ramp = np.tile(np.linspace(0, 255, 96).astype(np.uint8), (96, 1))
    Image.fromarray(ramp).save(folder / "ramp.jpeg")
    (folder / "IM-0999-0001.jpeg").write_bytes(b"not an image at all")  # skipped by evaluate, an error by predict


def _between(values: list[float], quantile: float) -> float:
    """A boundary halfway between two neighbouring values, so that no image lies on it."""
    ordered = sorted(set(values))
    k = max(1, min(len(ordered) - 1, int(len(ordered) * quantile)))
    return (ordered[k - 1] + ordered[k]) / 2.0


def _gated_bundle(tmp_path: Path, images: list[str]) -> Path:
    """A bundle whose gate reads a third of the folder's X-ray-like images, warns on a third and refuses the
    rest, and whose decision threshold splits the answered ones into NORMAL and PNEUMONIA."""
    bundle = make_bundle(tmp_path / "bundle")
    params = add_gate(bundle, [xray_png(s) for s in range(60)])
    details = Predictor.load(bundle, backend="torch").score_many(images)
    judged = [d.outputs for d in details if d.verdict is not None and d.verdict.by_features]  # passed cheap checks
    distances = [o.distance for o in judged]
    params.threshold, params.far_threshold = _between(distances, 1 / 3), _between(distances, 2 / 3)
    params.nonxray_weight, params.nonxray_bias = np.zeros(params.dim), -1.0  # only the distance decides here
    directory, meta = read_meta(bundle)
    meta.gate = save_gate(directory, params)
    meta.threshold = _between([o.probability for o in judged if o.distance < params.far_threshold], 1 / 2)
    write_meta(directory, meta)
    return bundle


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_evaluate_and_predict_answer_alike(kermany_tree: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    normal, pneumonia = kermany_tree / "test" / "NORMAL", kermany_tree / "test" / "PNEUMONIA"
    for asset in ASSETS.glob("*.jpeg"):
        shutil.copy(asset, pneumonia if "bacteria" in asset.name else normal)
    _add_non_xrays(normal)
    images = sorted(str(p) for p in (kermany_tree / "test").rglob("*.jpeg"))
    bundle = _gated_bundle(tmp_path, images)

    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(bundle), "--data", str(kermany_tree), "--split", "test", "--out",
                 str(out), "--backend", "torch", "--bootstrap", "0"]) == 0
    with (out / "predictions.csv").open(newline="") as handle:
        evaluated = {r["path"]: (r["deployed_label"], r["out_of_distribution"]) for r in csv.DictReader(handle)}
    capsys.readouterr()
    assert main(["predict", str(kermany_tree / "test"), "--model", str(bundle), "--backend", "torch",
                 "--format", "csv", "--batch-size", "3"]) == 1  # 1: an input could not be read
    predicted = {r["path"]: (r["label"], r["out_of_distribution"]) for r in _csv(capsys.readouterr().out)
                 if not r["error"]}
    single = Predictor.load(bundle, backend="torch")
    one_by_one = {path: (p.label, csv_cell(p.out_of_distribution)) for path in images
                  if (p := single.predict(path)).error is None}

    assert len(evaluated) == len(images) - 1  # all but the unreadable file
    assert evaluated == predicted == one_by_one
    answers = list(evaluated.values())
    # Every kind of answer occurs, so that the comparison covers each branch of the decision.
    assert {("UNKNOWN", ""), ("NORMAL", "false"), ("PNEUMONIA", "false")} <= set(answers)
    assert any(ood == "true" for _, ood in answers)  # warned readings
    reasons = [p.unknown_reason for p in single.predict_many(images) if p.label == "UNKNOWN"]
    assert any("colour" in r or "blank" in r for r in reasons)  # refused by the cheap checks
    assert any("feature distance" in r for r in reasons)  # refused by the feature gate
