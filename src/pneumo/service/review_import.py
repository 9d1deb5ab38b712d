"""Reviews from the RIS: a CSV keyed by analysis id or SOP Instance UID, one conclusion per line.

Columns (a header line is required): ``analysis_id`` or ``sop_instance_uid`` (either may be empty on a line, not
both), ``label`` (see :data:`~pneumo.service.history_schema.REVIEW_LABELS`; case, spaces and hyphens are
forgiven), and optionally ``note`` and ``reviewer`` (else the importer's ``--reviewer``). A SOP Instance UID
received more than once reviews every analysis of that instance. The outcome names lines by number only: no
UID, note or name of the file's content is echoed.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from pneumo.service.audit import AuditEvent
from pneumo.service.history_schema import REVIEW_LABELS
from pneumo.service.history_store import SqlHistory
from pneumo.service.reviews import ReviewStore, check_review

KEYS = ("analysis_id", "sop_instance_uid")
IMPORT_ACTOR = "pneumo site import-reviews"


@dataclass
class ImportOutcome:
    matched: list[tuple[int, list[int]]] = field(default_factory=list)  # (line, analysis ids reviewed)
    unmatched: list[tuple[int, str]] = field(default_factory=list)  # (line, why)
    invalid: list[tuple[int, str]] = field(default_factory=list)  # (line, why)

    @property
    def reviews(self) -> int:
        return sum(len(ids) for _, ids in self.matched)

    def summary(self) -> str:
        return (f"{len(self.matched)} lines matched ({self.reviews} analyses reviewed), {len(self.unmatched)} "
                f"unmatched, {len(self.invalid)} invalid")


def normalise_label(text: str) -> str:
    label = "_".join(text.strip().upper().replace("-", " ").split())
    if label not in REVIEW_LABELS:
        raise ValueError(f"unknown label {text.strip()[:40]!r}; choose one of {list(REVIEW_LABELS)}")
    return label


def _targets(history: SqlHistory, row: dict[str, str]) -> tuple[list[int], str]:
    """The analysis ids a line names, and why none when none (ValueError: the key itself is malformed)."""
    analysis_id, uid = (row.get("analysis_id") or "").strip(), (row.get("sop_instance_uid") or "").strip()
    if analysis_id:
        if not analysis_id.isdigit():
            raise ValueError("analysis_id is not a whole number")
        return ([int(analysis_id)] if history.get(int(analysis_id)) is not None else []), "no analysis with that id"
    if uid:
        return [entry.id for entry in history.find_dicom(uid)], "no analysis of that SOP Instance UID"
    raise ValueError("neither analysis_id nor sop_instance_uid is given")


def import_reviews(history: SqlHistory, store: ReviewStore, source: TextIO, *, reviewer: str | None) -> ImportOutcome:
    """Store the review of every valid, matching line; report the others by line number."""
    reader = csv.DictReader(source)
    columns = set(reader.fieldnames or ())
    if "label" not in columns or not columns & set(KEYS):
        raise ValueError(f"the CSV needs a header with 'label' and one of {list(KEYS)}; it has {sorted(columns)}")
    outcome = ImportOutcome()
    for row in reader:
        line = reader.line_num
        try:
            label = normalise_label(row.get("label") or "")
            who = (row.get("reviewer") or "").strip() or reviewer
            if not who:
                raise ValueError("no reviewer on the line and no --reviewer given")
            check_review(label, row.get("note"), "import")
            ids, why = _targets(history, row)
        except ValueError as exc:
            outcome.invalid.append((line, str(exc)))
            continue
        if not ids:
            outcome.unmatched.append((line, why))
            continue
        for analysis_id in ids:
            store.add(analysis_id, label, reviewer=who, role=None, source="import", note=row.get("note"),
                      audit=AuditEvent(actor=IMPORT_ACTOR, action="review", detail=f"label {label}, from a CSV"))
        outcome.matched.append((line, ids))
    return outcome


def import_file(history: SqlHistory, store: ReviewStore, path: Path, *, reviewer: str | None) -> ImportOutcome:
    with Path(path).open(newline="", encoding="utf-8-sig") as handle:  # utf-8-sig: a spreadsheet's BOM
        return import_reviews(history, store, handle, reviewer=reviewer)
