"""UNKNOWN versus out of distribution: the Predictor's reading of the gate's two boundaries, old one-boundary
gates, and the fields in JSON and CSV output."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from inference.bundles import add_gate, make_bundle, noise_png, xray_png
from pneumo.bundle import read_meta, write_meta
from pneumo.cli import main
from pneumo.commands.predict import print_csv
from pneumo.gate.mahalanobis import fit_far_boundary, load_gate, save_gate
from pneumo.inference.backend import ModelOutputs
from pneumo.inference.predictor import Predictor


class FixedGateBackend:
    """Stands in for the network: every input gets the same logits and the given gate outputs, so that each
    of the gate's cases can be reached on purpose."""

    name = "fixed"

    def __init__(self, distance: float | None, nonxray: float | None) -> None:
        self.distance, self.nonxray = distance, nonxray

    def run(self, batch: np.ndarray) -> ModelOutputs:
        n = len(batch)
        return ModelOutputs(np.full((n, 1), 2.0, np.float32), np.zeros((n, 4), np.float32),
                            None if self.distance is None else np.full(n, self.distance, np.float32),
                            None if self.nonxray is None else np.full(n, self.nonxray, np.float32))


def _predictor(tiny_bundle, distance, nonxray, threshold=10.0, far=50.0) -> Predictor:
    _, meta = read_meta(tiny_bundle)
    return Predictor(meta, FixedGateBackend(distance, nonxray), gate_threshold=threshold, gate_far_threshold=far)


@pytest.mark.parametrize("distance, nonxray, label, ood", [
    (5.0, -1.0, "PNEUMONIA", False),  # within the in-distribution boundary, a chest X-ray by the score
    (5.0, 3.0, "UNKNOWN", None),  # the non-X-ray score refuses at any distance
    (20.0, -1.0, "PNEUMONIA", True),  # beyond it, a chest X-ray by the score: a result with a warning
    (20.0, 0.5, "UNKNOWN", None),  # beyond it and not a chest X-ray by the score
    (60.0, -5.0, "UNKNOWN", None),  # beyond the far boundary, whatever the score
    (float("nan"), -1.0, "UNKNOWN", None),  # a NaN distance is never scored
])
def test_two_boundaries(tiny_bundle, distance, nonxray, label, ood):
    prediction = _predictor(tiny_bundle, distance, nonxray).predict(xray_png(1))
    assert (prediction.label, prediction.out_of_distribution) == (label, ood)
    assert (prediction.probability is None) == (label == "UNKNOWN")
    assert (prediction.ood_reason is not None) == bool(ood)
    if label == "UNKNOWN":
        assert "does not look like a chest X-ray" in prediction.unknown_reason
    if ood:
        assert "unlike the training population" in prediction.ood_reason and f"{distance:.1f}" in prediction.ood_reason


def test_one_boundary_gate_keeps_the_old_behaviour(tiny_bundle):
    """A gate without far_threshold: beyond the threshold UNKNOWN (today's message), never a warning."""
    beyond = _predictor(tiny_bundle, 20.0, None, far=None).predict(xray_png(1))
    assert beyond.label == "UNKNOWN" and "trained on (feature distance 20.0 above the gate's threshold 10.0)" in (
        beyond.unknown_reason)
    within = _predictor(tiny_bundle, 5.0, None, far=None).predict(xray_png(1))
    assert within.label == "PNEUMONIA" and within.out_of_distribution is False and within.ood_reason is None
    ungated = _predictor(tiny_bundle, None, None, threshold=None, far=None).predict(xray_png(1))
    assert ungated.label == "PNEUMONIA" and ungated.out_of_distribution is None  # no feature gate: cannot tell
    with pytest.raises(ValueError, match="below gate_threshold"):
        _predictor(tiny_bundle, 1.0, None, threshold=10.0, far=5.0)


def test_old_gate_file_on_disk_behaves_as_documented(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    add_gate(bundle, [xray_png(s, pneumonia=s % 3 == 0) for s in range(150)])
    directory, meta = read_meta(bundle)
    meta.gate.pop("far_threshold")  # bundle.json exactly as gate fits before the far boundary wrote it
    write_meta(directory, meta)
    predictor = Predictor.load(bundle)
    assert predictor.gate_far_threshold is None and "has no out-of-distribution band" in predictor.gate_status
    noise = predictor.predict(noise_png(1))
    assert noise.label == "UNKNOWN" and "trained on" in noise.unknown_reason
    xrays = predictor.predict_many([xray_png(s) for s in range(1000, 1010)])
    assert all(p.out_of_distribution is False for p in xrays if p.label != "UNKNOWN")


def _far_gated_bundle(tmp_path):
    """A tiny bundle whose gate has a far boundary fitted on wider copies of its X-rays and on noise."""
    bundle = make_bundle(tmp_path / "b")
    params = add_gate(bundle, [xray_png(s, pneumonia=s % 3 == 0) for s in range(150)])
    predictor = Predictor.load(bundle)

    def features(sources):
        return np.stack([e.features for e in predictor.embed_many(sources)])

    xrays = features([xray_png(s, pneumonia=s % 3 == 0) for s in range(150)])
    wide = params.mean + 2.0 * (xrays - params.mean)  # further out along the X-rays' own directions
    fit_far_boundary(params, np.concatenate([xrays, wide[:100]]), features([noise_png(s) for s in range(40)]),
                     wide[100:], far_percentile=99.0)
    directory, meta = read_meta(bundle)
    meta.gate = save_gate(directory, params)
    write_meta(directory, meta)
    return bundle, params


def test_far_gate_runs_the_same_in_torch_and_onnx(tmp_path):
    pytest.importorskip("onnxruntime")
    from pneumo.export.onnx import add_onnx_to_bundle

    bundle, params = _far_gated_bundle(tmp_path)
    assert load_gate(bundle, read_meta(bundle)[1].gate).far_threshold == pytest.approx(params.far_threshold)
    _, diffs = add_onnx_to_bundle(bundle)  # the non-X-ray score is an output of the graph, checked like the rest
    assert "gate_nonxray (relative)" in diffs
    sources = [noise_png(s) for s in range(100, 104)] + [xray_png(s) for s in range(2000, 2006)]
    torch_predictor = Predictor.load(bundle, backend="torch")
    onnx_predictor = Predictor.load(bundle, backend="onnx")
    assert onnx_predictor.gate_far_threshold == pytest.approx(torch_predictor.gate_far_threshold)
    for t, o in zip(torch_predictor.predict_many(sources), onnx_predictor.predict_many(sources)):
        assert (t.label, t.out_of_distribution) == (o.label, o.out_of_distribution)
    assert all(p.label == "UNKNOWN" for p in torch_predictor.predict_many(sources[:4]))


def test_json_and_csv_carry_out_of_distribution(tiny_bundle, capsys):
    rows = [p.to_dict() for p in (_predictor(tiny_bundle, 20.0, -1.0).predict(xray_png(1)),
                                  _predictor(tiny_bundle, 5.0, -1.0).predict(xray_png(2)),
                                  _predictor(tiny_bundle, 60.0, -1.0).predict(xray_png(3)))]
    assert [r["out_of_distribution"] for r in rows] == [True, False, None]
    json.loads(json.dumps(rows))  # plain JSON types
    print_csv(rows)
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["out_of_distribution"] for r in table] == ["true", "false", ""]
    assert "unlike the training population" in table[0]["ood_reason"] and table[1]["ood_reason"] == ""
    assert [r["label"] for r in table] == ["PNEUMONIA", "PNEUMONIA", "UNKNOWN"]


def test_predict_command_json_fields(tmp_path, capsys):
    bundle, _ = _far_gated_bundle(tmp_path)
    image = tmp_path / "x.png"
    image.write_bytes(xray_png(3000))
    assert main(["predict", str(image), "--model", str(bundle), "--format", "json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["out_of_distribution"] in (True, False) and "ood_reason" in row
