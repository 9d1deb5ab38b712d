"""Plots are real PNGs and the report embeds every one of them, with nothing loaded from outside."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
from PIL import Image

from pneumo import DISCLAIMER
from pneumo.evaluation import plots
from pneumo.evaluation.metrics import binary_metrics, bootstrap_ci, multiclass_metrics
from pneumo.evaluation.report import PLOT_CAPTIONS, operating_point_words, write_report


def _all_plots(out: Path) -> tuple[dict, dict[str, Path]]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 120)
    prob = np.clip(0.4 * y + 0.6 * rng.random(120), 0, 1)
    metrics = binary_metrics(y, prob, 0.45)
    metrics["ci95"] = bootstrap_ci(y, prob, 0.45, [str(i // 2) for i in range(120)], n_boot=100)
    metrics["split"] = "test"
    class_prob = rng.dirichlet([1, 1, 1], 120)
    metrics.update(multiclass_metrics(rng.integers(0, 3, 120), class_prob, 0.45))
    history = out / "history.csv"
    history.write_text("epoch,train_loss,val_loss,val_auc,lr,epoch_s\n1,0.7,0.6,0.8,0.001,3\n2,0.5,0.55,0.9,0.001,3\n")
    cm = metrics["confusion_matrix"]
    made = {
        "confusion_matrix": plots.confusion_matrix_plot([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]],
                                                        ["NORMAL", "PNEUMONIA"], out / "confusion_matrix.png"),
        "roc": plots.roc_plot(y, prob, 0.45, metrics["sensitivity"], metrics["specificity"], metrics["auc"],
                              out / "roc.png"),
        "pr": plots.pr_plot(y, prob, metrics["sensitivity"], metrics["precision"], metrics["pr_auc"], out / "pr.png"),
        "reliability": plots.reliability_plot(y, prob, out / "reliability.png", raw_prob=prob ** 2),
        "threshold": plots.threshold_plot(y, prob, 0.45, out / "threshold.png"),
        "confusion_matrix_3class": plots.confusion_matrix_plot(metrics["confusion_matrix_3class"],
                                                               ["NORMAL", "BACTERIAL", "VIRAL"], out / "cm3.png"),
        "training_curves": plots.training_curves_plot(plots.read_history(history), out / "curves.png"),
    }
    return metrics, made


def test_every_plot_is_a_png(tmp_path: Path) -> None:
    _, made = _all_plots(tmp_path)
    assert set(made) == {stem for stem, _, _ in PLOT_CAPTIONS}
    for path in made.values():
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width > 300 and image.height > 200


def test_report_is_self_contained_and_embeds_every_plot(tmp_path: Path) -> None:
    metrics, made = _all_plots(tmp_path)
    report = write_report(tmp_path / "report.html", metrics, {"Version": "simple_cnn-32px-x"},
                          {"Split": "test", "X-rays scored": 120}, made, warnings=["calibrated on <this> split"])
    text = report.read_text()
    for path in made.values():
        assert base64.b64encode(path.read_bytes()).decode() in text, path.name
    sources = re.findall(r"""src=['"]([^'"]+)""", text)
    assert len(sources) == len(made) and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r"https?://|<link|<script|@import|url\(", text)
    assert DISCLAIMER in text
    assert "calibrated on &lt;this&gt; split" in text  # escaped, shown as a warning
    assert "Normal, bacterial and viral" in text


def test_operating_point_is_explained_with_the_counts() -> None:
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    metrics = binary_metrics(y, np.array([0.9, 0.8, 0.5, 0.3, 0.6, 0.2, 0.1, 0.4]), 0.5)
    text = " ".join(operating_point_words(metrics))
    assert "at least <b>0.500</b>" in text
    assert "Of the <b>4</b> X-rays with pneumonia it flagged <b>3</b> and missed <b>1</b>" in text
    assert "cleared <b>3</b> and flagged <b>1</b>" in text


def test_perfect_sensitivity_is_not_presented_as_certain() -> None:
    # 10 pneumonia X-rays all found: the bootstrap interval is [1, 1], the rule of three says >= 70%.
    y = np.array([1] * 10 + [0] * 10)
    metrics = binary_metrics(y, np.r_[np.full(10, 0.9), np.linspace(0.1, 0.95, 10)], 0.5)
    assert metrics["sensitivity"] == 1.0
    text = " ".join(operating_point_words(metrics))
    assert "could still be as low as 70%" in text
