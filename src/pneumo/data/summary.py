"""A dataset health report: counts per split and class, patients, subtypes, sizes, corrupt files,
exact and near duplicates, and cross-split leakage."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from pneumo.data.decode import decode_image, read_image_bytes
from pneumo.data.errors import ImageDecodeError
from pneumo.data.near_duplicates import MAX_DISTANCE, difference_hash, near_duplicate_groups
from pneumo.data.records import ImageRecord
from pneumo.data.splits import DuplicateGroup, group_duplicates


@dataclass
class GroupStats:
    images: int = 0
    patients: set[str] = field(default_factory=set)
    bacterial: int = 0
    viral: int = 0
    min_side: int = 0
    max_side: int = 0
    corrupt: int = 0


@dataclass
class DatasetSummary:
    groups: dict[tuple[str, str], GroupStats]
    corrupt: list[tuple[str, str]]
    duplicates: list[DuplicateGroup]
    leaking_patients: dict[str, list[str]]
    near_duplicates: list[DuplicateGroup] = field(default_factory=list)  # digest: "near"

    @property
    def leaking_near_duplicates(self) -> list[DuplicateGroup]:
        return [g for g in self.near_duplicates if g.crosses_splits]

    @property
    def leaking_duplicates(self) -> list[DuplicateGroup]:
        return [g for g in self.duplicates if g.crosses_splits]

    def to_dict(self) -> dict:
        return {
            "groups": [{"split": s or "(none)", "class": c, "images": g.images, "patients": len(g.patients),
                        "bacterial": g.bacterial, "viral": g.viral, "min_side": g.min_side, "max_side": g.max_side,
                        "corrupt": g.corrupt} for (s, c), g in sorted(self.groups.items())],
            "corrupt": [{"path": p, "reason": r} for p, r in self.corrupt],
            "duplicate_groups": len(self.duplicates),
            "duplicate_files": sum(len(g.paths) for g in self.duplicates),
            "leaking_duplicates": [list(g.paths) for g in self.leaking_duplicates],
            "near_duplicate_groups": len(self.near_duplicates),
            "near_duplicate_files": sum(len(g.paths) for g in self.near_duplicates),
            "leaking_near_duplicates": [list(g.paths) for g in self.leaking_near_duplicates],
            "leaking_patients": self.leaking_patients,
        }

    def format(self) -> str:
        header = f"{'split':<8} {'class':<10} {'images':>7} {'patients':>8} {'bact.':>6} {'viral':>6} " \
                 f"{'size (short-long side)':>24} {'corrupt':>7}"
        lines = [header, "-" * len(header)]
        for (split, label), g in sorted(self.groups.items()):
            size = f"{g.min_side}-{g.max_side} px" if g.images - g.corrupt > 0 else "-"
            lines.append(f"{split or '(none)':<8} {label:<10} {g.images:>7} {len(g.patients):>8} {g.bacterial:>6} "
                         f"{g.viral:>6} {size:>24} {g.corrupt:>7}")
        lines.append("")
        lines.append(f"corrupt or unreadable files: {len(self.corrupt)}")
        for path, reason in self.corrupt[:20]:
            lines.append(f"  {path}: {reason}")
        if len(self.corrupt) > 20:
            lines.append(f"  ... and {len(self.corrupt) - 20} more")
        lines.append(f"exact-duplicate groups: {len(self.duplicates)} "
                     f"({sum(len(g.paths) for g in self.duplicates)} files)")
        lines.append(f"near-duplicate groups (same image re-encoded or resized; difference hash within "
                     f"{MAX_DISTANCE} of 256 bits): {len(self.near_duplicates)} "
                     f"({sum(len(g.paths) for g in self.near_duplicates)} files)")
        leak, near_leak = self.leaking_duplicates, self.leaking_near_duplicates
        lines.append(f"cross-split leakage: {len(leak)} duplicate groups, {len(near_leak)} near-duplicate groups, "
                     f"{len(self.leaking_patients)} patients in more than one split")
        for g in leak[:10]:
            lines.append("  duplicate across splits: " + ", ".join(g.paths))
        for g in near_leak[:10]:
            lines.append("  near-duplicate across splits: " + ", ".join(g.paths))
        for patient, splits in list(self.leaking_patients.items())[:10]:
            lines.append(f"  patient {patient} in splits {splits}")
        return "\n".join(lines)


@dataclass
class _Inspection:
    """What one read of a file tells: its content digest, and its sides and difference hash or why not."""
    digest: str | None = None
    sides: tuple[int, int] = (0, 0)
    dhash: np.ndarray | None = None
    problem: str | None = None


def _inspect(record: ImageRecord) -> _Inspection:
    try:
        label, data = read_image_bytes(record.path)
    except ImageDecodeError as exc:
        return _Inspection(problem=exc.reason)
    found = _Inspection(digest=hashlib.sha256(data).hexdigest())
    try:
        image = decode_image(data, name=label)
    except ImageDecodeError as exc:
        found.problem = exc.reason
        return found
    height, width = image.shape
    found.sides, found.dhash = (min(height, width), max(height, width)), difference_hash(image)
    return found


def summarize(records: list[ImageRecord], workers: int = 2) -> DatasetSummary:
    groups: dict[tuple[str, str], GroupStats] = defaultdict(GroupStats)
    corrupt: list[tuple[str, str]] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        inspections = list(pool.map(_inspect, records))
    for record, seen in zip(records, inspections):
        g = groups[(record.split, record.label)]
        g.images += 1
        g.patients.add(record.patient_id)
        g.bacterial += record.subtype == "bacterial"
        g.viral += record.subtype == "viral"
        if seen.problem is not None:
            g.corrupt += 1
            corrupt.append((record.path, seen.problem))
            continue
        short, long = seen.sides
        g.min_side = short if g.min_side == 0 else min(g.min_side, short)
        g.max_side = max(g.max_side, long)
    splits_of: dict[str, set[str]] = defaultdict(set)
    for record in records:
        splits_of[record.patient_id].add(record.split)
    leaking = {p: sorted(s) for p, s in sorted(splits_of.items()) if len(s) > 1}
    exact = group_duplicates(records, [seen.digest for seen in inspections])
    near = [DuplicateGroup("near", tuple(records[i].path for i in g), tuple(records[i].split for i in g))
            for g in near_duplicate_groups([seen.dhash for seen in inspections])]
    return DatasetSummary(dict(groups), corrupt, exact, leaking, near)
