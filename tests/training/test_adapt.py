"""``pneumo adapt`` on tiny synthetic sites: cross-fitting keeps each fold out of its own operating point, too few
labels are refused with the counts, the site bundle records its provenance and runs in the Predictor, and
fine-tuning with replay trains the top block only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.inference.bundles import add_gate, xray_png
from tests.training.adapt_support import write_site
from pneumo.bundle import META_FILE, WEIGHTS_FILE, file_sha256, load_state, read_document, read_meta
from pneumo.config import RunConfig
from pneumo.data.records import read_manifest
from pneumo.data.selection import fingerprint, image_digests
from pneumo.evaluation.calibration import ThresholdRule
from pneumo.inference.predictor import Predictor
from pneumo.inference.probability import OutputHead
from pneumo.training import fit
from pneumo.training.adaptation import AdaptConfig, FinetuneConfig, TooFewLabels, adapt
from pneumo.training.adaptation.crossfit import cross_fit, fit_operating_point
from pneumo.training.adaptation.replay import ReplayBatches

HEAD = OutputHead.of(["NORMAL", "PNEUMONIA"])


@pytest.fixture
def trained_parent(kermany_tree: Path, tmp_path: Path) -> Path:
    """A simple_cnn parent briefly trained on ``kermany_tree``: it records the training config replay needs."""
    cfg = RunConfig.from_dict({
        "data": {"root": str(kermany_tree), "cache_dir": str(tmp_path / "train-cache"), "num_workers": 0,
                 "batch_size": 8, "val_fraction": 0.25},
        "preprocess": {"image_size": 32}, "model": {"arch": "simple_cnn"},
        "train": {"epochs": 2, "max_steps_per_epoch": 3, "lr": 3e-3, "amp": False, "device": "cpu",
                  "progress": False}})
    return fit(cfg, tmp_path / "parent-run")


def _site_config(parent: Path, manifest: Path, out: Path, **tuning) -> AdaptConfig:
    finetune = FinetuneConfig(**{"enabled": False, **tuning})
    return AdaptConfig(model=str(parent), manifest=str(manifest), out=str(out), target_sensitivity=0.9, folds=3,
                       min_per_class=5, device="cpu", n_boot=50, finetune=finetune)


def test_each_fold_threshold_is_fitted_without_that_fold() -> None:
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(60), np.ones(60)].astype(int)
    logits = (rng.normal(0, 1, 120) + 1.5 * y)[:, None]
    folds = np.tile(np.arange(4), 30)
    rule = ThresholdRule("sensitivity", 0.9)
    crossed = cross_fit(logits, y, folds, rule, HEAD)
    # Scrambling fold 0's labels and scores moves every other fold's operating point, never fold 0's own.
    scrambled_logits, scrambled_y = logits.copy(), y.copy()
    scrambled_logits[folds == 0] = rng.normal(0, 5, ((folds == 0).sum(), 1))
    scrambled_y[folds == 0] = 1 - scrambled_y[folds == 0]
    again = cross_fit(scrambled_logits, scrambled_y, folds, rule, HEAD)
    assert again.points[0] == crossed.points[0]
    assert all(again.points[k] != crossed.points[k] for k in (1, 2, 3))
    # Each fold is measured once, with the point fitted on the other folds.
    for fold in range(4):
        held = folds == fold
        assert crossed.points[fold] == fit_operating_point(logits[~held], y[~held], rule, HEAD)
        expected = HEAD.score(logits[held], crossed.points[fold].temperature)[0]
        np.testing.assert_allclose(crossed.probabilities[held], expected)
        np.testing.assert_array_equal(crossed.flagged[held], expected >= crossed.points[fold].threshold)


def test_refuses_too_few_labels_naming_the_counts(tiny_bundle: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "few.csv"
    rows = [f"n{i}.png,NORMAL,N{i}" for i in range(25)] + [f"p{i}.png,PNEUMONIA,P{i}" for i in range(7)]
    manifest.write_text("path,label,patient_id\n" + "\n".join(rows) + "\n")
    cfg = AdaptConfig(model=str(tiny_bundle), manifest=str(manifest), out=str(tmp_path / "site"),
                      target_sensitivity=0.9, finetune=FinetuneConfig(enabled=False))
    with pytest.raises(TooFewLabels, match=r"25 NORMAL \(25 patients\), 7 PNEUMONIA \(7 patients\).*at least 20"):
        adapt(cfg)
    assert not (tmp_path / "site").exists()


def test_recalibrated_site_bundle_records_provenance_and_predicts(tiny_bundle: Path, tmp_path: Path) -> None:
    add_gate(tiny_bundle, [xray_png(s) for s in range(30)])
    manifest = write_site(tmp_path / "site-data", 6, 6)
    result = adapt(_site_config(tiny_bundle, manifest, tmp_path / "site"))
    assert result.method == "recalibration"
    directory, meta = read_meta(result.bundle)
    record = meta.adaptation
    parent_files = read_document(tiny_bundle)["files"]
    assert record["parent"]["weights_sha256"] == parent_files[WEIGHTS_FILE]
    assert record["parent"]["bundle_json_sha256"] == file_sha256(tiny_bundle / META_FILE)
    local = read_manifest(manifest)
    assert record["local"]["fingerprint"] == fingerprint(local) == meta.calibration["fingerprint"]
    assert record["local"]["image_digests"] == image_digests(local)
    assert record["rule"]["kind"] == "sensitivity" and record["rule"]["value"] == 0.9
    for method in ("parent", "recalibration"):
        figures = record["cross_validated"][method]
        assert figures["n"] == 24 and set(figures["ci95"]) >= {"auc", "sensitivity", "specificity"}
    assert len(record["cross_validated"]["recalibration"]["per_fold"]) == 3
    assert (meta.threshold, meta.temperature) == (result.point.threshold, result.point.temperature)
    assert record["threshold_matching"] is None  # fitted on the parent's own scores: nothing to match
    # Recalibration keeps the parent's weights; the operating point is the site's.
    assert read_document(directory)["files"][WEIGHTS_FILE] == parent_files[WEIGHTS_FILE]
    # The parent's gate travels with it, byte for byte.
    parent_meta = read_meta(tiny_bundle)[1]
    assert meta.gate == parent_meta.gate and meta.gate["sha256"] == file_sha256(directory / meta.gate["file"])
    predictor = Predictor.load(directory)
    assert predictor.backend.name == "onnx"  # model.onnx was added and matches the site's weights and gate
    image = str(manifest.parent / local[0].path)
    answer = predictor.predict(image)
    assert answer.label in ("NORMAL", "PNEUMONIA", "UNKNOWN") and answer.threshold == pytest.approx(meta.threshold)
    parent_answer = Predictor.load(tiny_bundle, backend="torch").predict(image)
    assert (answer.unknown_reason, answer.out_of_distribution) == (parent_answer.unknown_reason,
                                                                   parent_answer.out_of_distribution)


def test_replay_batches_hold_the_share_of_replayed_images() -> None:
    batches = list(ReplayBatches(n_local=30, n_replay=100, batch_size=8, share=0.25, seed=0))
    assert len(batches) == 5  # 30 local images, 6 per batch
    local = sorted(i for batch in batches for i in batch if i < 30)
    assert local == list(range(30))
    assert all(sum(i >= 30 for i in batch) == 2 for batch in batches)


def test_finetuning_with_replay_trains_the_top_block_only(trained_parent: Path, kermany_tree: Path,
                                                           tmp_path: Path) -> None:
    manifest = write_site(tmp_path / "site-data", 6, 6)
    cfg = _site_config(trained_parent, manifest, tmp_path / "site", enabled=True, max_epochs=2, batch_size=8,
                       replay_data=str(kermany_tree), replay_share=0.25, finetune_last=1, lr=1e-3,
                       min_auc_gain=-1.0)  # keep the fine-tuned model whatever it scores, to inspect it
    result = adapt(cfg)
    assert result.method == "fine-tuned"
    tuned = result.figures["fine-tuned"]
    assert len(tuned["auc_by_epoch"]) == 2 and tuned["epochs"] in (1, 2)
    directory, meta = read_meta(result.bundle)
    assert meta.adaptation["fine_tuning"]["replay_data"] == str(kermany_tree)
    # The shipped threshold is the out-of-fold one matched to the final network: it flags as many local X-rays.
    matching = meta.adaptation["threshold_matching"]
    assert meta.threshold == pytest.approx(matching["threshold"]) == pytest.approx(result.point.threshold)
    assert matching["final_flagged_at_threshold"] >= matching["flagged_out_of_fold"] >= 1
    assert matching["n"] == 24 and "matched" in meta.adaptation["operating_point_fitted_on"]
    before, after = load_state(trained_parent), load_state(directory)
    frozen = [k for k in before if k.startswith(("features.0.", "features.1."))]
    trained = [k for k in before if k.startswith(("features.2.", "classifier.")) and "weight" in k]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert all(not torch.equal(before[k], after[k]) for k in trained)
    assert Predictor.load(directory).predict(str(manifest.parent / "site-normal-000-0.png")).label != "ERROR"


def test_finetuning_without_replay_data_is_refused() -> None:
    with pytest.raises(ValueError, match="--replay-data ROOT"):
        FinetuneConfig(enabled=True, replay_share=0.25)


def test_adapt_command_prints_each_method_and_needs_images_with_history(tiny_bundle: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    from pneumo.cli import main

    manifest = write_site(tmp_path / "site-data", 6, 6)
    out = tmp_path / "site"
    assert main(["adapt", "--model", str(tiny_bundle), "--manifest", str(manifest), "--out", str(out),
                 "--no-finetune", "--folds", "3", "--min-per-class", "5", "--target-sensitivity", "0.9",
                 "--bootstrap", "20", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "parent as is" in printed and "recalibration" in printed and f"wrote site bundle {out}" in printed
    assert main(["adapt", "--model", str(tiny_bundle), "--manifest", str(manifest), "--out", str(out),
                 "--no-finetune"]) == 2  # never overwrites a site bundle
    assert "already exists" in capsys.readouterr().err
    assert main(["adapt", "--model", str(tiny_bundle), "--from-history", f"sqlite:///{tmp_path / 'history.db'}",
                 "--out", str(tmp_path / "other")]) == 2
    assert "--from-history needs --images DIR" in capsys.readouterr().err
