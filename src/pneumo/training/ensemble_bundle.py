"""Build an ensemble bundle from trained bundles: their networks in one :class:`LogitEnsemble`, read and
shipped as one model (``pneumo gate fit``, ``pneumo export --into-bundle`` and ``pneumo calibrate`` then treat
it as any bundle, so its threshold is fitted on the path ``pneumo predict`` runs).

The members must read images the same way (one ``preprocess``), answer the same classes, and have been
validated on the same split of the same data: the ensemble is validated there too, and a member trained on
another member's validation images would make that validation a lie.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from pneumo.bundle import BundleMeta, save_bundle
from pneumo.data.selection import split_settings
from pneumo.evaluation.scoring import training_data_config
from pneumo.inference.loading import load_bundle
from pneumo.models import ENSEMBLE, LogitEnsemble


def _split_of(meta: BundleMeta) -> dict[str, object] | None:
    """How the member's validation was carved (None: the bundle does not say)."""
    stored = training_data_config(meta)
    return split_settings(stored) if stored is not None else None


def build_ensemble(members: list[str | os.PathLike[str]], out: str | os.PathLike[str],
                   description: str = "") -> Path:
    """Write an ensemble of the ``members`` bundles to ``out``; returns its directory. It has no gate, ONNX
    export or calibration yet: fit them on it as on any new bundle."""
    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least 2 member bundles, got {len(members)}")
    loaded = [load_bundle(ref) for ref in members]
    _, first, first_dir = loaded[0]
    first_split = _split_of(first)
    for _, meta, directory in loaded:
        if meta.arch == ENSEMBLE:
            raise ValueError(f"{directory} is an ensemble itself; give its members instead")
        if (meta.classes, meta.class_names) != (first.classes, first.class_names):
            raise ValueError(f"{directory} answers {meta.class_names}, {first_dir} {first.class_names}: "
                             "members must answer the same classes")
        if dataclasses.asdict(meta.preprocess) != dataclasses.asdict(first.preprocess):
            raise ValueError(f"{directory} preprocesses images otherwise than {first_dir} "
                             f"({meta.preprocess} against {first.preprocess}): members share one input")
        if meta.data_fingerprint and first.data_fingerprint and meta.data_fingerprint != first.data_fingerprint:
            raise ValueError(f"{directory} was trained on other data than {first_dir} (fingerprint "
                             f"{meta.data_fingerprint} against {first.data_fingerprint})")
        split = _split_of(meta)
        if split is None or split != first_split:
            raise ValueError(f"{directory} was validated on another split than {first_dir} ({split} against "
                             f"{first_split}; None: the bundle does not record it); the ensemble would be "
                             "validated on images some member trained on")
    ensemble = LogitEnsemble([model for model, _, _ in loaded], [meta.arch for _, meta, _ in loaded])
    member_entries = [{"arch": meta.arch, "dropout": meta.dropout, "source": directory.name,
                       "version": meta.version} for _, meta, directory in loaded]
    names = " + ".join(meta.arch for _, meta, _ in loaded)
    meta = BundleMeta(
        arch=ENSEMBLE, classes=first.classes, class_names=list(first.class_names), preprocess=first.preprocess,
        dropout=0.0, description=description or f"ensemble of {len(loaded)}: {names}, logits averaged",
        data_fingerprint=first.data_fingerprint, members=member_entries,
        training={"config": (first.training or {}).get("config", {}),
                  "members": [{"version": m.version, "best_epoch": (m.training or {}).get("best_epoch"),
                               "metrics": m.metrics} for _, m, _ in loaded]})
    return save_bundle(out, ensemble, meta)
