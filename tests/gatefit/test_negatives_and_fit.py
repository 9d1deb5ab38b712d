"""Non-X-ray images for calibration, and ``pneumo gate fit`` end to end on a tiny dataset."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
import pytest

from inference.bundles import make_bundle, noise_png, png, xray_png
from pneumo.bundle import read_meta
from pneumo.evaluation.scoring import select_records
from pneumo.cli import build_parser, main
from pneumo.data.decode import decode_image
from pneumo.gate.checks import cheap_reason
from pneumo.gatefit import holdout, micrograph, negatives
from pneumo.gatefit.fit import GateFitConfig, fit_bundle_gate
from pneumo.inference.predictor import Predictor


@pytest.mark.parametrize("make", [negatives.document, negatives.screenshot, negatives.blank, negatives.noise,
                                  negatives.gradient, negatives.pattern, micrograph.micrograph])
def test_synthetic_negatives_decode_and_are_deterministic(make):
    first = [make(np.random.default_rng(5), i) for i in range(4)]
    again = [make(np.random.default_rng(5), i) for i in range(4)]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == np.uint8 and min(a.shape[:2]) >= 64
        assert decode_image(png(a)).shape == a.shape[:2]


def test_micrographs_cover_every_kind_in_colour_and_grey_and_pass_the_cheap_checks_in_grey():
    """Grey micrographs must reach the feature gate: refusing them is the non-X-ray score's job."""
    images = [micrograph.micrograph(np.random.default_rng([2, i]), i) for i in range(2 * len(micrograph.KINDS))]
    colour, grey = images[:len(micrograph.KINDS)], images[len(micrograph.KINDS):]
    assert all(a.ndim == 3 and a.shape[2] == 3 for a in colour) and all(a.ndim == 2 for a in grey)
    assert colour[2].mean() < 80 < colour[0].mean()  # fluorescence is dark, brightfield stains are light
    for a in grey:
        pixels = decode_image(png(a))
        assert cheap_reason(pixels, 0.0) is None and pixels.std() > 0.05


def test_lobes_lay_large_regions_of_cells_over_the_stroma():
    """Low-magnification epithelium: large regions, not scattered cells, so the image varies at a coarse scale
    as scikit-image's immunohistochemistry photograph does (a coarse-to-fine spread ratio of 0.76)."""
    stroma = Image.new("RGB", (320, 256), (236, 232, 226))
    out = np.asarray(micrograph._lobes(stroma, np.random.default_rng(4), micrograph._STAINS["ihc"], 1.0))
    changed = np.any(out != np.asarray(stroma), axis=2)
    assert 0.05 < changed.mean() < 0.95  # lobes cover part of the field, stroma stays around them
    grey = out.mean(axis=2)
    coarse = grey.reshape(8, 32, 8, 40).mean(axis=(1, 3))
    assert coarse.std() / grey.std() > 0.4
    assert grey[changed].std() > 10  # cells with membranes and nuclei, not a flat fill


def test_micrographs_are_a_kind_with_a_held_out_share_and_render_deterministically():
    with_them = negatives.negative_images(3, xrays=[np.full((64, 64), 0.5, np.float32)], scale=0.05)
    kinds = {i.category for i in with_them}
    assert "micrograph" in kinds
    held = {holdout.origin(i) for i in holdout.split_negatives(with_them, seed=3)[1]}
    assert any(o.startswith("micrograph:") for o in held)
    again = negatives.negative_images(3, xrays=[np.full((64, 64), 0.5, np.float32)], scale=0.05)
    assert [i.source for i in again if i.category == "micrograph"] == [
        i.source for i in with_them if i.category == "micrograph"]


def test_shipped_samples_are_found_offline():
    pytest.importorskip("skimage")
    names = {p.name for p in negatives.sample_photo_files()}
    assert {"camera.png", "astronaut.png"} <= names
    dicoms = list(negatives.other_dicoms())
    assert any(d.name == "MR_small.dcm" for d in dicoms) and all(d.category == "dicom-other" for d in dicoms)
    assert not any(d.name == "CT_small.dcm" for d in dicoms)  # CT files are ct-pydicom, split on their own


def test_unknown_category_is_refused():
    with pytest.raises(ValueError, match="category"):
        negatives.NegativeImage("cats", "x", b"")


def test_split_keeps_each_photograph_on_one_side():
    images = list(negatives.photos(np.random.default_rng(0))) + _small_negatives()
    fit, held_out = holdout.split_negatives(images)
    assert len(fit) + len(held_out) == len(images) and 0.35 < len(held_out) / len(images) < 0.65
    fit_origins = {holdout.origin(i) for i in fit}
    assert not fit_origins & {holdout.origin(i) for i in held_out}
    crops = [i for i in images if i.category == "photo-gray" and "-crop" in i.name]
    assert crops and all(holdout.origin(c) == "photo:" + c.name.split("-crop")[0] for c in crops)
    assert holdout.split_negatives(images) == (fit, held_out)  # stable
    with pytest.raises(ValueError, match="held_out_fraction"):
        holdout.split_negatives(images, 1.0)


def _small_negatives(seed=0, *, xrays=(), scale=1.0):
    return [negatives.NegativeImage("noise", f"n{i}", noise_png(i)) for i in range(10)] + [
        negatives.NegativeImage("document", f"d{i}", png(negatives.document(np.random.default_rng(i), i)))
        for i in range(2)]


def _dataset(root, patients=24):
    for split in ("train",):
        for label in ("NORMAL", "PNEUMONIA"):
            (root / split / label).mkdir(parents=True)
        for p in range(patients):
            for k in range(3):
                (root / split / "NORMAL" / f"IM-{p:04d}-{k:04d}.jpeg").write_bytes(xray_png(p * 10 + k))
                (root / split / "PNEUMONIA" / f"person{p}_bacteria_{p * 10 + k}.jpeg").write_bytes(
                    xray_png(5000 + p * 10 + k, pneumonia=True))
    return root


def test_fit_stores_a_verified_gate_with_figures(tmp_path, monkeypatch):
    monkeypatch.setattr("pneumo.gatefit.fit.negative_images", _small_negatives)
    root = _dataset(tmp_path / "data")
    bundle = make_bundle(tmp_path / "bundle", data_root=str(root))
    report = fit_bundle_gate(str(bundle), str(root), cfg=GateFitConfig(percentile=99.0, batch_size=16))
    _, meta = read_meta(bundle)
    gate = meta.gate
    assert gate == report.summary and (bundle / gate["file"]).is_file()
    assert gate["n_fit"] + gate["n_calibration"] > 50 and gate["n_calibration"] > 0
    assert gate["xray_flagged_split"].startswith("val")
    assert set(gate["nonxray_by_category"]) == {"noise", "document"} and gate["n_nonxray_all"] == 12
    _, held_out = holdout.split_negatives(_small_negatives())
    assert gate["n_nonxray"] == len(held_out) and 0 < len(held_out) < 12  # measured on images the score never saw
    assert gate["nonxray_flagged_pct"] == 100.0 and gate["nonxray_all_flagged_pct"] == 100.0
    assert gate["far_threshold"] >= gate["threshold"] and gate["site_variants"] == 1
    assert 0.0 <= gate["site_variant_flagged_pct"] <= 100.0 and "xray_ood_pct" in gate
    assert gate["n_inverted_fit"] > 0 and 0.0 <= gate["inverted_flagged_pct"] <= 100.0
    assert 0 < gate["n_framed_fit"] <= GateFitConfig().framed
    predictor = Predictor.load(bundle)
    # The stored figure is what the stored gate does on the validation X-rays, recounted here.
    validation = [r.path for r in select_records(meta, "val", str(root)).records]
    answers = predictor.predict_many(validation)
    flagged = 100.0 * sum(a.label == "UNKNOWN" for a in answers) / len(answers)
    assert gate["xray_flagged_pct"] == pytest.approx(round(flagged, 3))
    assert predictor.has_gate and predictor.gate_threshold == pytest.approx(gate["threshold"])
    assert predictor.gate_far_threshold == pytest.approx(gate["far_threshold"])
    warned = 100.0 * sum(bool(a.out_of_distribution) for a in answers) / len(answers)
    assert gate["xray_ood_pct"] == pytest.approx(round(warned, 3))
    assert predictor.predict(noise_png(99)).label == "UNKNOWN"


def test_gate_fit_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("pneumo.gatefit.fit.negative_images", _small_negatives)
    root = _dataset(tmp_path / "data", patients=12)
    bundle = make_bundle(tmp_path / "bundle", data_root=str(root))
    report = tmp_path / "report.json"
    assert main(["gate", "fit", "--model", str(bundle), "--data", str(root), "--max-images", "30",
                 "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "X-rays answered UNKNOWN" in out and "non-X-ray images answered UNKNOWN" in out and "far threshold" in out
    gate = read_meta(bundle)[1].gate
    assert gate["variants"] == 1 and gate["n_fit"] + gate["n_calibration"] == 30 * 2  # originals + one variant each
    assert len(json.loads(report.read_text())["negatives"]) == 12
    assert main(["gate", "fit", "--model", str(bundle), "--data", str(root), "--max-images", "30",
                 "--site-variants", "0"]) == 0
    assert "no far boundary" in capsys.readouterr().out and read_meta(bundle)[1].gate["far_threshold"] is None
    assert main(["gate", "show", "--model", str(bundle)]) == 0


def test_the_command_fits_at_the_configs_operating_point():
    """`pneumo gate fit` without options fits at GateFitConfig's operating point (issue 23's margins), not at
    a second copy of it that could drift."""
    args = build_parser().parse_args(["gate", "fit", "--model", "bundle"])
    cfg = GateFitConfig()
    for name in ("percentile", "calibration_fraction", "variants", "site_variants", "far_percentile",
                 "nonxray_margin", "warn_percentile", "inset_xrays", "negative_draws", "framed", "seed"):
        assert getattr(args, name) == getattr(cfg, name), name
    assert (cfg.far_percentile, cfg.nonxray_margin, cfg.warn_percentile) == (99.8, 3.0, 87.5)


def test_fit_needs_the_training_config(tmp_path):
    root = _dataset(tmp_path / "data", patients=3)
    bundle = make_bundle(tmp_path / "bundle")
    with pytest.raises(ValueError, match="training config"):
        fit_bundle_gate(str(bundle), str(root))


def test_the_fit_measures_with_the_stored_rule(tmp_path, monkeypatch):
    """The figures in meta.gate come from a Predictor with every boundary of the stored gate, the warning
    zone's limit included, so they are what `pneumo predict` does with that gate."""
    from pneumo.gatefit import fit as gatefit

    seen = []
    real = gatefit._predictor

    def spy(directory, meta, cfg, gate):
        predictor = real(directory, meta, cfg, gate)
        seen.append((gate, predictor))
        return predictor

    monkeypatch.setattr("pneumo.gatefit.fit.negative_images", _small_negatives)
    monkeypatch.setattr("pneumo.gatefit.fit._predictor", spy)
    root = _dataset(tmp_path / "data", patients=12)
    bundle = make_bundle(tmp_path / "bundle", data_root=str(root))
    fit_bundle_gate(str(bundle), str(root), cfg=GateFitConfig(max_images=40, batch_size=16))
    gate, measuring = seen[-1]
    stored = read_meta(bundle)[1].gate
    assert gate is not None and stored["warn_nonxray"] == gate.warn_nonxray and gate.warn_nonxray <= 0.0
    assert (measuring.gate_threshold, measuring.gate_far_threshold, measuring.gate_warn_nonxray) == (
        gate.threshold, gate.far_threshold, gate.warn_nonxray)
    loaded = Predictor.load(bundle, backend="torch")
    assert loaded.gate_warn_nonxray == pytest.approx(stored["warn_nonxray"])


def test_framed_variants_join_the_scores_xrays(tmp_path, monkeypatch):
    """``framed`` framed acquisition variants of fitting X-rays are among the X-rays the non-X-ray score is fitted on,
    and none with ``framed=0``."""
    from pneumo.gate import mahalanobis
    from pneumo.gatefit import fit as gatefit

    positives, framed_images = [], []
    real_fit, real_framed = mahalanobis.fit_far_boundary, gatefit.framed_variants

    def spy_fit(params, xray_features, *args, **kwargs):
        positives.append(len(xray_features))
        return real_fit(params, xray_features, *args, **kwargs)

    def spy_framed(paths, seed):
        for image in real_framed(paths, seed):
            framed_images.append(image)
            yield image

    monkeypatch.setattr("pneumo.gatefit.fit.negative_images", _small_negatives)
    monkeypatch.setattr("pneumo.gatefit.fit.fit_far_boundary", spy_fit)
    monkeypatch.setattr("pneumo.gatefit.fit.framed_variants", spy_framed)
    root = _dataset(tmp_path / "data", patients=12)
    bundle = make_bundle(tmp_path / "bundle", data_root=str(root))
    fit_bundle_gate(str(bundle), str(root), cfg=GateFitConfig(max_images=40, batch_size=16, framed=7))
    with_frames = read_meta(bundle)[1].gate["n_framed_fit"]
    assert len(framed_images) == 7 and with_frames == 7
    for image in framed_images:  # each one framed in black on every side
        assert image[0].max() == 0 and image[-1].max() == 0 and image[:, 0].max() == 0 and image[:, -1].max() == 0
    fit_bundle_gate(str(bundle), str(root), cfg=GateFitConfig(max_images=40, batch_size=16, framed=0))
    assert read_meta(bundle)[1].gate["n_framed_fit"] == 0 and positives[0] - positives[1] == 7
    with pytest.raises(ValueError, match="framed"):
        GateFitConfig(framed=-1)


def test_the_score_is_fitted_on_several_renders_of_the_fitting_origins_only(monkeypatch):
    """Each extra draw renders the fitting side's origins again (other noise, other crops), never a held-out
    origin, from seeds the bench's small ones cannot reach; the held-out side is draw 0's alone."""
    seeds = []

    def rendered(seed=0, *, xrays=(), scale=1.0):
        seeds.append(seed)
        return [negatives.NegativeImage("noise", f"n{i}", noise_png(1000 * (seed % 97) + i)) for i in range(10)]

    monkeypatch.setattr("pneumo.gatefit.fit.negative_images", rendered)
    from pneumo.gatefit.fit import fitting_negatives

    one = fitting_negatives([], GateFitConfig(negative_draws=1))
    three = fitting_negatives([], GateFitConfig(negative_draws=3))
    assert three.held_out == one.held_out and three.first_draw == one.first_draw and len(one.first_draw) == 10
    held = {holdout.origin(i) for i in three.held_out}
    assert held and not held & {holdout.origin(i) for i in three.fit}
    assert len(three.fit) == 3 * len(one.fit)
    assert len({i.source for i in three.fit}) == len(three.fit)  # every render is a new image
    assert seeds[0] == 0 and all(seed > 1000 for seed in seeds[2:]) and len(set(seeds[2:])) == 2
    with pytest.raises(ValueError, match="negative_draws"):
        GateFitConfig(negative_draws=0)
