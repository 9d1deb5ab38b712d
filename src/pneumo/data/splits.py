"""Patient-level, stratified, seeded splits and duplicate-image leakage checks."""

from __future__ import annotations

import datetime
import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pneumo.data.records import ImageRecord


def split_by_patient(records: list[ImageRecord], val_fraction: float, seed: int,
                     rule: str = "fraction") -> tuple[list[ImageRecord], list[ImageRecord]]:
    """Carve a validation set out of ``records`` so that no patient is in both parts.

    Stratified on normal / pneumonia and the pneumonia subtype (bacterial, viral, none given): in each stratum,
    patients are shuffled (seeded) and taken until their images reach ``val_fraction`` of that stratum's
    images, so the fraction asked for is the fraction given (within a patient per stratum) and the class
    balance is the same in both parts. Binary and 3-class runs get the same split on
    purpose: a 3-class model started from a binary one (``--init-from``), or compared with it, is then never
    validated on patients the other trained on.

    ``rule="kfold"`` draws the split of configs stored before the fraction was honoured (:func:`_kfold_split`).
    """
    if not records:
        raise ValueError("no records to split")
    if rule == "kfold":
        return _kfold_split(records, val_fraction, seed)
    if rule != "fraction":
        raise ValueError(f"unknown patient split rule {rule!r}; choose fraction or kfold")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    images: dict[str, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        images[record.patient_id or record.path].append(index)
    if len(images) < 2:
        raise ValueError(f"only {len(images)} patients; a patient-level validation split needs at least 2")
    # A patient's stratum: pneumonia (with that image's subtype) when any of their images is, else normal; a
    # Kermany patient has one label.
    patients_of: dict[tuple[int, str], list[str]] = defaultdict(list)
    for patient in sorted(images):
        record = max((records[i] for i in images[patient]), key=lambda r: (r.target(2), r.subtype or "", r.path))
        patients_of[(record.target(2), record.subtype or "")].append(patient)
    rng = np.random.default_rng(seed)
    chosen: set[int] = set()
    for stratum in sorted(patients_of):
        patients = patients_of[stratum]
        wanted = round(val_fraction * sum(len(images[p]) for p in patients))
        taken = 0
        for position in rng.permutation(len(patients)):
            if taken >= wanted:
                break
            chosen.update(images[patients[position]])
            taken += len(images[patients[position]])
    if not chosen or len(chosen) == len(records):
        raise ValueError(f"only {len(images)} patients: a {val_fraction:.0%} patient-level validation split "
                         "would leave one part empty")
    train = [replace(r, split="train") for i, r in enumerate(records) if i not in chosen]
    val = [replace(r, split="val") for i, r in enumerate(records) if i in chosen]
    return train, val


def _kfold_split(records: list[ImageRecord], val_fraction: float,
                 seed: int) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """The first fold of round(1 / val_fraction) stratified group folds, stratified on normal/pneumonia."""
    groups = np.array([r.patient_id or r.path for r in records])
    strata = np.array([r.target(2) for r in records])
    n_splits = max(2, int(round(1.0 / val_fraction)))
    n_groups = len(set(groups))
    if n_groups < n_splits:
        raise ValueError(f"only {n_groups} patients; need at least {n_splits} for a {val_fraction:.0%} "
                         "patient-level validation split")
    # scikit-learn on use: the evaluation commands name their split choices (SPLIT_CHOICES) without it.
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    train_idx, val_idx = next(splitter.split(np.zeros(len(records)), strata, groups))
    train = [replace(records[i], split="train") for i in sorted(train_idx)]
    val = [replace(records[i], split="val") for i in sorted(val_idx)]
    return train, val


_NUMBERED_PATIENT = re.compile(r"^(.*\D)?(\d+)(\D*)$")


def temporal_position(record: ImageRecord) -> tuple[str, float]:
    """(sequence, position in time) of a record.

    A manifest's ``order`` column (a number or an ISO date) is used when present, one sequence per label.
    Otherwise the patient key's number: Kermany numbers patients in time, one sequence each for ``IM-``,
    ``NORMAL2-IM-``, ``personN_bacteria`` and ``personN_virus``.
    """
    if record.order:
        try:
            return record.label, float(record.order)
        except ValueError:
            pass
        try:
            return record.label, float(datetime.date.fromisoformat(record.order[:10]).toordinal())
        except ValueError:
            raise ValueError(f"{record.path}: order {record.order!r} is neither a number nor an ISO date") from None
    match = _NUMBERED_PATIENT.match(record.patient_id or "")
    if not match:
        raise ValueError(f"{record.path}: patient key {record.patient_id!r} holds no number, so its place in time "
                         "is unknown; give the manifest an 'order' column or use split_by='patient'")
    return f"{match.group(1) or ''}#{match.group(3)}", float(match.group(2))


def split_temporal(records: list[ImageRecord], val_fraction: float,
                   end: str = "earliest") -> tuple[list[ImageRecord], list[ImageRecord]]:
    """Validation = the earliest (or latest) ``val_fraction`` of patients of each numbering sequence.

    A random patient split of one cohort is far easier than later X-rays; a block of patients from one end
    of the timeline is the usual stand-in for a cohort the model has not seen. Patients stay whole.
    """
    if not records:
        raise ValueError("no records to split")
    if end not in ("earliest", "latest"):
        raise ValueError(f"unknown temporal end {end!r}; choose earliest or latest")
    first_seen: dict[str, tuple[str, float]] = {}
    for record in records:
        sequence, position = temporal_position(record)
        key = record.patient_id or record.path
        if key not in first_seen or position < first_seen[key][1]:
            first_seen[key] = (sequence, position)
    by_sequence: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for patient, (sequence, position) in first_seen.items():
        by_sequence[sequence].append((position, patient))
    val_patients: set[str] = set()
    for patients in by_sequence.values():
        patients.sort(reverse=end == "latest")
        n_val = max(1, int(round(val_fraction * len(patients)))) if len(patients) > 1 else 0
        val_patients.update(p for _, p in patients[:n_val])
    if not val_patients or len(val_patients) == len(first_seen):
        raise ValueError(f"a {val_fraction:.0%} temporal split of {len(first_seen)} patients leaves one side empty")
    train = [replace(r, split="train") for r in records if (r.patient_id or r.path) not in val_patients]
    val = [replace(r, split="val") for r in records if (r.patient_id or r.path) in val_patients]
    return train, val


def patients_in_both(a: list[ImageRecord], b: list[ImageRecord]) -> set[str]:
    return {r.patient_id for r in a} & {r.patient_id for r in b}


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass(frozen=True)
class DuplicateGroup:
    digest: str
    paths: tuple[str, ...]
    splits: tuple[str, ...]

    @property
    def crosses_splits(self) -> bool:
        return len(set(self.splits)) > 1


def find_duplicates(records: list[ImageRecord]) -> list[DuplicateGroup]:
    """Groups of byte-identical files; a group spanning two splits is leakage."""
    digests: list[str | None] = []
    for record in records:
        try:
            digests.append(file_digest(record.path))
        except OSError:
            digests.append(None)  # unreadable files are reported by the scanner, not here
    return group_duplicates(records, digests)


def group_duplicates(records: list[ImageRecord], digests: list[str | None]) -> list[DuplicateGroup]:
    """Groups of records whose content digests (SHA-256 of the file) are equal; ``None`` is never grouped."""
    by_digest: dict[str, list[ImageRecord]] = defaultdict(list)
    for record, digest in zip(records, digests):
        if digest is not None:
            by_digest[digest].append(record)
    return [DuplicateGroup(d, tuple(r.path for r in rs), tuple(r.split for r in rs))
            for d, rs in sorted(by_digest.items()) if len(rs) > 1]
