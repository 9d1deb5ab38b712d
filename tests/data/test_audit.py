"""The shortcut audit finds a cue planted in the acquisition and not one that lives only in the lungs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pneumo.data.audit import attributes, measure, score_attributes, sequence_of
from pneumo.data.audit_probe import run_probe
from pneumo.data.records import scan_kermany

from conftest import synthetic_xray


def _tree(root: Path, marker_on_pneumonia: bool, patients: int = 16) -> Path:
    """Kermany-named films; with ``marker_on_pneumonia`` every pneumonia film has a white corner marker."""
    for label in ("NORMAL", "PNEUMONIA"):
        (root / "train" / label).mkdir(parents=True)
    for p in range(patients):
        normal = synthetic_xray(2 * p, size=(64, 56))
        Image.fromarray(normal).save(root / "train" / "NORMAL" / f"IM-{p:04d}-0001.jpeg")
        sick = synthetic_xray(2 * p + 1, size=(64, 56), pneumonia=True)
        if marker_on_pneumonia:
            sick[2:10, 2:10] = 255
        Image.fromarray(sick).save(root / "train" / "PNEUMONIA" / f"person{p}_bacteria_{p}.jpeg")
    return root


def test_attributes_of_a_film_are_named_and_bounded():
    image = np.zeros((50, 40), np.float32)
    image[10:40, 10:30] = 0.6
    image[45:49, 1:5] = 1.0
    values = attributes(image)
    assert values["aspect"] == pytest.approx(0.8) and values["pixels"] == 2000
    assert values["border_dark"] > 0.8 and values["corner_text"] > 0.0
    assert all(np.isfinite(v) for k, v in values.items() if not k.startswith("thorax"))


def test_a_planted_corner_marker_is_the_strongest_cue(tmp_path: Path):
    records = scan_kermany(_tree(tmp_path / "k", marker_on_pneumonia=True))
    scores = {s.name: s for s in score_attributes(measure(records))}
    assert scores["corner_text"].auc > 0.95
    assert set(scores["corner_text"].by_sequence) == {"NORMAL:IM-#"}


def test_the_probe_reads_a_marker_but_not_a_lung_finding(tmp_path: Path):
    marked = scan_kermany(_tree(tmp_path / "marked", marker_on_pneumonia=True))
    plain = scan_kermany(_tree(tmp_path / "plain", marker_on_pneumonia=False))
    marked_table, plain_table = measure(marked), measure(plain)
    assert run_probe(marked, marked_table.frames, [sequence_of(r) for r in marked], folds=4).auc > 0.9
    # The synthetic finding is a blotch inside a lung, which the probe never sees.
    assert run_probe(plain, plain_table.frames, [sequence_of(r) for r in plain], folds=4).auc < 0.75


def test_the_command_writes_json_and_a_report_and_names_unreadable_files(tmp_path: Path):
    root = _tree(tmp_path / "k", marker_on_pneumonia=True, patients=6)
    (root / "train" / "NORMAL" / "IM-0099-0001.jpeg").write_bytes(b"broken")
    done = subprocess.run([sys.executable, "-m", "pneumo.cli", "data", "audit", str(root), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "IM-0099-0001.jpeg" in done.stdout
    audit = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert audit["images"] == 12 and len(audit["skipped"]) == 1
    by_name = {a["name"]: a for a in audit["attributes"]}
    assert by_name["corner_text"]["auc"] > 0.95 and audit["lungs_hidden_probe"]["auc"] > 0.8
    assert "| corner_text |" in (tmp_path / "out" / "report.md").read_text()


def _chest(seed: int, marker: bool) -> np.ndarray:
    """A body with two darker lung fields on black air; ``marker``: a white corner marker in the air."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:120, 0:120] / 120
    film = np.zeros((120, 120), np.float32)
    film[(np.abs(xx - 0.5) < 0.33) & (yy > 0.18)] = rng.uniform(0.7, 0.85)
    for cx in (0.37, 0.63):
        film[((xx - cx) / 0.1) ** 2 + ((yy - 0.52) / 0.18) ** 2 < 1] = rng.uniform(0.35, 0.5)
    if marker:
        film[3:13, 3:13] = 1.0
    return np.round(np.clip(film + rng.normal(0, 0.02, film.shape), 0, 1) * 255).astype(np.uint8)


def test_the_probe_on_the_thorax_crop_no_longer_sees_a_marker_outside_it(tmp_path: Path):
    """`--probe-on thorax` measures what a model trained with the crop can still read off the acquisition: a
    marker in the air beside the body is cropped away with it."""
    from pneumo.data.thorax import find_thorax

    root = tmp_path / "k"
    for label in ("NORMAL", "PNEUMONIA"):
        (root / "train" / label).mkdir(parents=True)
    for p in range(16):
        Image.fromarray(_chest(2 * p, marker=False)).save(root / "train" / "NORMAL" / f"IM-{p:04d}-0001.jpeg")
        Image.fromarray(_chest(2 * p + 1, marker=True)).save(
            root / "train" / "PNEUMONIA" / f"person{p}_bacteria_{p}.jpeg")
    assert find_thorax(_chest(1, marker=True) / 255.0) is not None
    records = scan_kermany(root)
    sequences = [sequence_of(r) for r in records]
    whole = run_probe(records, measure(records).frames, sequences, folds=4)
    cropped = run_probe(records, measure(records, probe_on_thorax=True).frames, sequences, folds=4,
                        source="thorax crop")
    assert whole.auc > 0.9 and cropped.auc < 0.75 and cropped.source == "thorax crop"
