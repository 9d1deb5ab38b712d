"""Patient-level, stratified, seeded splits and duplicate-image leakage checks."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from pneumo.data.records import ImageRecord


def split_by_patient(records: list[ImageRecord], val_fraction: float,
                     seed: int) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """Carve a validation set out of ``records`` so that no patient is in both parts.

    Stratified on normal/pneumonia so that the imbalance is the same in both. Binary and 3-class runs get
    the same split on purpose: a 3-class model started from a binary one (``--init-from``), or compared
    with it, is then never validated on patients the other trained on.
    """
    if not records:
        raise ValueError("no records to split")
    groups = np.array([r.patient_id or r.path for r in records])
    strata = np.array([r.target(2) for r in records])
    n_splits = max(2, int(round(1.0 / val_fraction)))
    n_groups = len(set(groups))
    if n_groups < n_splits:
        raise ValueError(f"only {n_groups} patients; need at least {n_splits} for a {val_fraction:.0%} "
                         "patient-level validation split")
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    train_idx, val_idx = next(splitter.split(np.zeros(len(records)), strata, groups))
    train = [replace(records[i], split="train") for i in sorted(train_idx)]
    val = [replace(records[i], split="val") for i in sorted(val_idx)]
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
