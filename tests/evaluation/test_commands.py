"""``pneumo evaluate``, ``calibrate`` and ``compare`` end to end on the tiny Kermany tree."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from pneumo.bundle import BundleMeta, read_meta, save_bundle
from pneumo.cli import main
from pneumo.config import PreprocessConfig
from pneumo.models import create_model

METRIC_KEYS = {"n", "auc", "pr_auc", "accuracy", "sensitivity", "specificity", "precision", "f1", "threshold",
               "confusion_matrix", "ece", "brier", "ci95", "split", "model_version", "calibrated_on_this_split"}
BASE_PLOTS = {"confusion_matrix.png", "roc.png", "pr.png", "reliability.png", "threshold.png"}


def _evaluate(model: Path, data: Path, out: Path, *extra: str) -> int:
    return main(["evaluate", "--model", str(model), "--data", str(data), "--out", str(out), "--bootstrap", "100",
                 *extra])


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_evaluate_writes_every_output_and_skips_unreadable(kermany_tree: Path, tiny_bundle: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    broken = kermany_tree / "test" / "NORMAL" / "IM-0199-0001.jpeg"
    broken.write_bytes(b"not a jpeg at all")
    out = tmp_path / "eval"
    assert _evaluate(tiny_bundle, kermany_tree, out, "--split", "test") == 0
    captured = capsys.readouterr()
    assert "skipped unreadable image" in captured.err and broken.name in captured.err
    assert "sensitivity" in captured.out and "specificity" in captured.out

    metrics = json.loads((out / "metrics.json").read_text())
    assert METRIC_KEYS <= set(metrics)
    assert metrics["n"] == 12 and metrics["split"] == "test"  # 3 test patients x 4 images; the broken one skipped
    assert [s["path"] for s in metrics["skipped"]] == [str(broken)]
    assert set(metrics["ci95"]) >= {"auc", "sensitivity", "specificity"}
    assert metrics["calibrated_on_this_split"] is False

    rows = _rows(out / "predictions.csv")
    assert len(rows) == 12 and set(rows[0]) >= {"path", "true_label", "probability", "predicted_label"}
    cm = metrics["confusion_matrix"]
    flagged = [r for r in rows if r["predicted_label"] == "PNEUMONIA"]
    assert all(float(r["probability"]) >= metrics["threshold"] for r in flagged)
    assert sum(r["true_label"] == "PNEUMONIA" for r in flagged) == cm["tp"]
    assert len(flagged) == cm["tp"] + cm["fp"]

    assert BASE_PLOTS <= {p.name for p in out.glob("*.png")}
    assert "data:image/png;base64," in (out / "report.html").read_text()


def test_evaluate_scores_what_predict_answers_and_counts_the_gate(kermany_tree: Path, tiny_bundle: Path,
                                                                  tmp_path: Path) -> None:
    """One path: each probability in predictions.csv is the one `pneumo predict` gives with the same backend and
    TTA; the deployed figures count gate-refused images as neither detected nor cleared."""
    from pneumo.evaluation.metrics import deployed_metrics
    from pneumo.inference.predictor import Predictor

    out = tmp_path / "eval"
    assert _evaluate(tiny_bundle, kermany_tree, out, "--split", "test", "--backend", "torch", "--tta") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["backend"], metrics["tta"], metrics["n_unknown"]) == ("torch", True, 0)
    assert metrics["deployed"]["sensitivity"] == pytest.approx(metrics["sensitivity"])
    rows = _rows(out / "predictions.csv")
    answers = Predictor.load(tiny_bundle, backend="torch", tta=True).predict_many([r["path"] for r in rows])
    for row, answer in zip(rows, answers):
        assert float(row["probability"]) == pytest.approx(answer.probability, abs=1e-6)
    # Two of four pneumonias refused: sensitivity as deployed halves whatever the model's own figure.
    figures = deployed_metrics([1, 1, 1, 1, 0, 0], [0.9, 0.9, 0.9, 0.9, 0.1, 0.1], 0.5,
                               [True, True, False, False, True, False])
    assert (figures["sensitivity"], figures["specificity"], figures["n_unknown"]) == (0.5, 0.5, 3)
    assert figures["coverage"] == pytest.approx(0.5)


def test_val_split_needs_the_training_config(kermany_tree: Path, tiny_bundle: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert _evaluate(tiny_bundle, kermany_tree, tmp_path / "out", "--split", "val") == 2
    assert "training config" in capsys.readouterr().err


def test_calibrate_on_val_then_evaluate(kermany_tree: Path, fitted_bundle: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    _, before = read_meta(fitted_bundle)
    assert main(["calibrate", "--model", str(fitted_bundle), "--data", str(kermany_tree), "--split", "val",
                 "--target-sensitivity", "0.9"]) == 0
    assert "temperature" in capsys.readouterr().out
    _, meta = read_meta(fitted_bundle)  # re-reading checks the weights' checksum still holds
    cal = meta.calibration
    assert cal["split"] == "val" and cal["rule"]["kind"] == "sensitivity" and cal["rule"]["value"] == 0.9
    assert cal["n"] == before.training["n_val"]  # the same patient-level validation split as in training
    assert meta.threshold == cal["threshold"] and meta.temperature == cal["temperature"] > 0
    assert cal["achieved"]["sensitivity"] >= 0.9
    assert {"ece_before", "ece_after"} <= set(cal)

    val_out = tmp_path / "val"
    assert _evaluate(fitted_bundle, kermany_tree, val_out, "--split", "val") == 0
    err = capsys.readouterr().err
    assert "WARNING" in err and "fitted on this very split" in err
    val_metrics = json.loads((val_out / "metrics.json").read_text())
    assert val_metrics["calibrated_on_this_split"] is True
    assert val_metrics["sensitivity"] == pytest.approx(cal["achieved"]["sensitivity"])
    assert val_metrics["threshold"] == pytest.approx(meta.threshold)
    assert "fitted on this very split" in (val_out / "report.html").read_text()

    test_out = tmp_path / "test"
    assert _evaluate(fitted_bundle, kermany_tree, test_out, "--split", "test") == 0
    test_metrics = json.loads((test_out / "metrics.json").read_text())
    assert test_metrics["calibrated_on_this_split"] is False
    assert (test_out / "training_curves.png").is_file()  # the trained bundle carries its history.csv


def test_calibrate_fixed_threshold_without_temperature(kermany_tree: Path, tiny_bundle: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate", "--model", str(tiny_bundle), "--data", str(kermany_tree), "--split", "test",
                 "--threshold", "0.3", "--no-temperature"]) == 0
    assert "WARNING: calibrating on split 'test'" in capsys.readouterr().err
    _, meta = read_meta(tiny_bundle)
    assert meta.threshold == 0.3 and meta.temperature == 1.0 and meta.calibration["rule"]["kind"] == "fixed"


def _three_class_bundle(directory: Path) -> Path:
    torch.manual_seed(1)
    meta = BundleMeta(arch="simple_cnn", classes=3, class_names=["NORMAL", "BACTERIAL", "VIRAL"],
                      preprocess=PreprocessConfig(image_size=32), dropout=0.5, description="3-class test bundle")
    return save_bundle(directory, create_model("simple_cnn", classes=3, dropout=0.5), meta)


def test_three_class_metrics(kermany_tree: Path, tmp_path: Path) -> None:
    bundle = _three_class_bundle(tmp_path / "bundle3")
    out = tmp_path / "eval3"
    # Threshold 0 flags everything: no normal X-ray is cleared, in the binary and the 3-class decision alike.
    assert _evaluate(bundle, kermany_tree, out, "--split", "test", "--threshold", "0") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["threshold_source"] == "command line" and metrics["specificity"] == 0.0
    assert metrics["per_class_recall"]["NORMAL"] == 0.0
    assert set(metrics["per_class_recall"]) == {"NORMAL", "BACTERIAL", "VIRAL"}
    assert 0.0 <= metrics["bacterial_vs_viral_auc"] <= 1.0
    assert metrics["class_counts"] == {"NORMAL": 6, "BACTERIAL": 4, "VIRAL": 2}
    assert (out / "confusion_matrix_3class.png").is_file()
    rows = _rows(out / "predictions.csv")
    assert {"true_class", "predicted_class", "p_normal", "p_bacterial", "p_viral"} <= set(rows[0])
    for row in rows:  # P(pneumonia) is 1 - P(normal)
        assert float(row["probability"]) == pytest.approx(1 - float(row["p_normal"]), abs=2e-6)


def test_compare_scored_and_stored(kermany_tree: Path, tiny_bundle: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    other = _three_class_bundle(tmp_path / "other")
    out = tmp_path / "cmp"
    assert main(["compare", str(tiny_bundle), str(other), "--data", str(kermany_tree), "--split", "test",
                 "--bootstrap", "50", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "bundle" in table and "other" in table and "auc" in table and "[" in table  # intervals shown
    assert (out / "compare.png").is_file()
    document = json.loads((out / "compare.json").read_text())
    runs = document["runs"]
    assert [r["name"] for r in runs] == ["bundle", "other"] and all(r["metrics"]["n"] == 12 for r in runs)
    (difference,) = document["auc_differences"]  # the same 12 images: a paired difference, printed and stored
    assert difference["name"] == "other" and difference["against"] == "bundle"
    assert difference["difference"] == pytest.approx(runs[1]["metrics"]["auc"] - runs[0]["metrics"]["auc"])
    assert "AUC other - bundle: " in table and "paired bootstrap over patients, 12 images" in table

    # Without --data: an earlier evaluation's metrics.json next to a bundle's stored figures.
    evaluated = tmp_path / "evaluated"
    assert _evaluate(tiny_bundle, kermany_tree, evaluated, "--split", "test") == 0
    capsys.readouterr()
    assert main(["compare", str(evaluated), str(other), "--out", str(tmp_path / "cmp2")]) == 0
    captured = capsys.readouterr()
    assert "evaluated" in captured.out and "no --data given" in captured.err
    assert "AUC other - evaluated: not compared (no per-image outputs" in captured.out  # a bundle's stored figures
    # Two evaluation folders of the same images: paired from their predictions.csv.
    again = tmp_path / "again"
    assert _evaluate(other, kermany_tree, again, "--split", "test") == 0
    capsys.readouterr()
    assert main(["compare", str(evaluated), str(again), "--out", str(tmp_path / "cmp3")]) == 0
    (difference,) = json.loads((tmp_path / "cmp3" / "compare.json").read_text())["auc_differences"]
    first, second = (json.loads((d / "metrics.json").read_text())["auc"] for d in (evaluated, again))
    assert difference["difference"] == pytest.approx(second - first, abs=1e-6)
