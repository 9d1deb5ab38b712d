"""``pneumo adapt --from-history``: the latest review of each analysis is its label (NOT_ASSESSABLE left out),
images are found by their SHA-256 in --images, and the site bundle is adapted on them."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest

from tests.training.adapt_support import write_site
from pneumo.bundle import read_meta
from pneumo.cli import main
from pneumo.data.records import read_manifest
from pneumo.service.history import open_history
from pneumo.service.reviews import ReviewStore


def _history_of(manifest: Path, url: str) -> dict[str, str]:
    """One analysis per site image with the manifest's label as its review (the first reviewed twice, the last
    two not assessable); returns path -> expected manifest label."""
    records = read_manifest(manifest)
    history = open_history(url)
    store = ReviewStore(history.engine, history.write_lock)
    expected = {}
    try:
        for i, record in enumerate(records):
            digest = hashlib.sha256(Path(record.path).read_bytes()).hexdigest()
            entry = history.add(image_sha256=digest, file_type="png", model_version="m", heatmap_png=None,
                                result={"label": "NORMAL", "probability": 0.3, "threshold": 0.5})
            if i == 0:  # superseded: the later review counts
                store.add(entry.id, "NORMAL" if record.label == "PNEUMONIA" else "PNEUMONIA", reviewer="a",
                          role="clinician", source="api")
            label = "NOT_ASSESSABLE" if i >= len(records) - 2 else (
                "PNEUMONIA_VIRAL" if record.label == "PNEUMONIA" else "NORMAL")
            store.add(entry.id, label, reviewer="b", role="clinician", source="api")
            if label != "NOT_ASSESSABLE":
                expected[str(Path(record.path).resolve())] = record.label
        # A reviewed image that is not in the folder is left out, not an error.
        missing = history.add(image_sha256="f" * 64, file_type="png", model_version="m", heatmap_png=None,
                              result={"label": "NORMAL"})
        store.add(missing.id, "NORMAL", reviewer="b", role="clinician", source="api")
    finally:
        history.close()
    return expected


def test_adapt_from_history_uses_the_latest_reviews(tiny_bundle: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    manifest = write_site(tmp_path / "site-data", 7, 7)
    url = f"sqlite:///{tmp_path / 'history.sqlite3'}"
    expected = _history_of(manifest, url)
    out = tmp_path / "site"
    assert main(["adapt", "--model", str(tiny_bundle), "--from-history", url, "--images", str(tmp_path / "site-data"),
                 "--out", str(out), "--no-finetune", "--folds", "3", "--min-per-class", "5",
                 "--target-sensitivity", "0.9", "--bootstrap", "20", "--device", "cpu", "--no-onnx"]) == 0
    printed = capsys.readouterr().out
    assert f"history: {len(expected) + 1} reviewed images" in printed and "1 missing" in printed
    written = tmp_path / "site-from-history.csv"
    with written.open() as handle:
        rows = list(csv.DictReader(handle))
    assert {row["path"]: row["label"] for row in rows} == expected
    assert {row["subtype"] for row in rows if row["label"] == "PNEUMONIA"} == {"viral"}
    assert all(row["patient_id"] and row["patient_id"] not in row["path"] for row in rows)
    meta = read_meta(out)[1]
    assert meta.adaptation["local"]["n_images"] == len(expected)


def test_adapt_from_history_refuses_a_folder_without_the_images(tiny_bundle: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    manifest = write_site(tmp_path / "site-data", 2, 2)
    url = f"sqlite:///{tmp_path / 'history.sqlite3'}"
    _history_of(manifest, url)
    (tmp_path / "elsewhere").mkdir()
    assert main(["adapt", "--model", str(tiny_bundle), "--from-history", url, "--images", str(tmp_path / "elsewhere"),
                 "--out", str(tmp_path / "site"), "--no-finetune"]) == 2
    assert "none of the" in capsys.readouterr().err
