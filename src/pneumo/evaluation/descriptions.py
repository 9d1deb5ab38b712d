"""What an evaluation report says about the model and the data it scored: plain dicts, JSON-ready."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pneumo.bundle import BundleMeta
from pneumo.evaluation.scoring import Selection, SplitScores

SPLIT_MEANING = {
    "test": "the data set's held-out test folder",
    "val": "the patient-level validation split carved from the training folder, the split the model's "
           "checkpoint was chosen on",
    "shifted-val": "the validation split with each X-ray given the other label's acquisition style "
                   "(pneumo.data.shifted), which a model that reads the acquisition instead of the lungs fails",
    "official-val": "the data set's own val folder",
    "train": "the images the model was trained on",
    "all": "every image of the data set, training images included",
}


def model_description(meta: BundleMeta, bundle_dir: Path, threshold: float) -> dict[str, Any]:
    training = meta.training or {}
    trained = ""
    if training:
        trained = (f"saved at epoch {training.get('epoch', '?')} (best epoch {training.get('best_epoch', '?')}), "
                   f"{training.get('n_train', '?')} training / {training.get('n_val', '?')} validation images, "
                   f"{training.get('train_seconds', '?')} s")
    cal = meta.calibration or {}
    return {
        "Version": meta.version,
        "Description": meta.description,
        "Architecture": meta.arch,
        "Input": f"{meta.preprocess.image_size} x {meta.preprocess.image_size} px grayscale, "
                 f"{meta.preprocess.resize_mode} resize, {meta.preprocess.intensity} intensity normalisation",
        "Outputs": ", ".join(meta.class_names),
        "Decision threshold": f"{threshold:.4f}",
        "Temperature": f"{meta.temperature:.4f}",
        "Calibrated on": (f"{cal.get('split')!r} split, {cal.get('n')} X-rays, {cal.get('created', '')}"
                          if cal else "not calibrated"),
        "Training": trained,
        "Training data fingerprint": meta.data_fingerprint,
        "pneumo version": meta.pneumo_version,
        "Bundle": str(bundle_dir),
    }


def dataset_description(scores: SplitScores, selection: Selection) -> dict[str, Any]:
    """What was scored, with machine-readable keys (metrics.json's ``dataset``)."""
    cfg = selection.data
    meaning = SPLIT_MEANING[selection.split]
    if selection.split in ("train", "val"):
        if cfg.split_by == "temporal":
            meaning += (f" (temporal: the {cfg.temporal_end} {cfg.val_fraction:g} of patients of each numbering "
                        "sequence are validation, patients kept together)")
        else:
            meaning += f" (fraction {cfg.val_fraction:g}, seed {cfg.split_seed}, patients kept together)"
    return {
        "source": cfg.manifest or cfg.root,
        "split": selection.split,
        "split_meaning": meaning,
        "n_images": len(scores.records),
        "n_pneumonia": int(scores.targets.sum()),
        "n_normal": int((scores.targets == 0).sum()),
        "n_bacterial": sum(r.subtype == "bacterial" for r in scores.records),
        "n_viral": sum(r.subtype == "viral" for r in scores.records),
        "n_patients": len(set(scores.patient_ids)),
        "n_skipped": len(scores.skipped),
        "fingerprint": selection.fingerprint,
    }


def dataset_labels(dataset: dict[str, Any]) -> dict[str, Any]:
    """The dataset description with words a reader understands, for the report."""
    subtypes = f"{dataset['n_bacterial']} / {dataset['n_viral']}" if dataset["n_bacterial"] + dataset["n_viral"] else ""
    return {
        "Source": dataset["source"],
        "Split": f"{dataset['split']}: {dataset['split_meaning']}",
        "X-rays scored": dataset["n_images"],
        "Pneumonia / normal": f"{dataset['n_pneumonia']} / {dataset['n_normal']}",
        "Bacterial / viral": subtypes,
        "Patients": dataset["n_patients"],
        "Unreadable, skipped": dataset["n_skipped"],
        "Fingerprint (file names and labels)": dataset["fingerprint"],
    }
