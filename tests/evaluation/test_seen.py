"""``pneumo evaluate`` says which images a bundle saw from what the bundle records, not from the split's name:
new images get no training-images warning, a model's training data and a site bundle's own local X-rays do."""

from __future__ import annotations

from pathlib import Path

from pneumo.data.selection import select_split, training_splits
from pneumo.evaluation.pipeline import EvaluationOptions, evaluate_bundle
from pneumo.evaluation.scoring import select_records, training_data_config
from pneumo.bundle import read_meta
from pneumo.data.records import scan_kermany
from pneumo.training.adaptation import AdaptConfig, FinetuneConfig, adapt
from tests.training.adapt_support import write_site


def _evaluate(model: Path, manifest: str, out: Path, root: str = "") -> dict:
    return evaluate_bundle(model, root, manifest, out, EvaluationOptions(split="all", n_boot=0)).metrics


def _mentions(metrics: dict, words: str) -> bool:
    return any(words in warning for warning in metrics["warnings"])


def test_site_bundle_warns_on_its_own_local_images_only(tiny_bundle: Path, tmp_path: Path) -> None:
    local = write_site(tmp_path / "local", 6, 6)
    new = write_site(tmp_path / "new", 3, 3, seed=5000, prefix="new")
    site = adapt(AdaptConfig(model=str(tiny_bundle), manifest=str(local), out=str(tmp_path / "site"),
                             target_sensitivity=0.9, folds=3, min_per_class=5, n_boot=20,
                             finetune=FinetuneConfig(enabled=False))).bundle
    fresh = _evaluate(site, str(new), tmp_path / "eval-new")
    assert fresh["seen_by_model"] == {"training": 0, "local": 0}
    assert not _mentions(fresh, "training images") and not _mentions(fresh, "local X-rays")
    own = _evaluate(site, str(local), tmp_path / "eval-local")
    assert own["seen_by_model"] == {"training": 0, "local": 24}
    assert _mentions(own, "24 of the 24 images are this site bundle's own local X-rays")
    assert own["calibrated_on_this_split"]  # the operating point was fitted on them too


def test_training_images_are_recognised_by_the_bundles_fingerprint(fitted_bundle: Path, kermany_tree: Path,
                                                                   tmp_path: Path) -> None:
    everything = _evaluate(fitted_bundle, "", tmp_path / "eval-all", root=str(kermany_tree))
    _, meta = read_meta(fitted_bundle)
    records = scan_kermany(kermany_tree)
    train, _ = training_splits(records, training_data_config(meta))
    assert everything["seen_by_model"]["training"] == len(train) > 0
    assert _mentions(everything, f"{len(train)} of the {len(records)} images are the model's training images")
    new = write_site(tmp_path / "new", 3, 3, seed=7000, prefix="new")
    fresh = _evaluate(fitted_bundle, str(new), tmp_path / "eval-new")
    assert fresh["seen_by_model"]["training"] == 0 and not _mentions(fresh, "training images")
    # The official test folder alone, given as the whole data set, is not the training data either.
    held = select_records(meta, "all", str(kermany_tree / "test")).seen
    assert held is not None and held.training == 0
    assert select_split(records, "all", training_data_config(meta))  # 'all' still means every image
