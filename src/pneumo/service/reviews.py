"""The reading clinician's conclusion on a result: stored beside the history, append-only.

A review names one analysis (a history row: an upload or a DICOM arrival), a label from
:data:`~pneumo.service.history_schema.REVIEW_LABELS`, who reviewed and when, and an optional note. A later review
of the same analysis, by the same reviewer or another, supersedes the earlier one (the newest counts); the earlier
rows stay as the trail. Notes are shown to readers of the result and never logged or audited.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, replace
from typing import Any, Iterable

import sqlalchemy as sa

from pneumo.service.audit import AuditEvent, insert_event
from pneumo.service.clock import utc_now
from pneumo.service.history_schema import REVIEW_LABELS, REVIEW_SOURCES, analyses, reviews

MAX_NOTE_CHARS = 2000
# Every review label as the binary truth it is: pneumonia (any kind) or not; NOT_ASSESSABLE counts in no figure.
PNEUMONIA_LABELS = frozenset({"PNEUMONIA", "PNEUMONIA_BACTERIAL", "PNEUMONIA_VIRAL"})
_COLUMNS = ("id", "analysis_id", "created", "reviewer", "role", "label", "note", "source")


class UnknownAnalysis(LookupError):
    """A review names an analysis id that the history does not hold."""


@dataclass(frozen=True)
class Review:
    id: int
    analysis_id: int
    created: str
    reviewer: str
    role: str | None
    label: str
    note: str | None
    source: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_review(label: str, note: str | None, source: str) -> str | None:
    """The label and source checked, and the note trimmed (None when empty); ValueError naming what is wrong."""
    if label not in REVIEW_LABELS:
        raise ValueError(f"unknown review label {label!r}; choose one of {list(REVIEW_LABELS)}")
    if source not in REVIEW_SOURCES:
        raise ValueError(f"unknown review source {source!r}; choose one of {list(REVIEW_SOURCES)}")
    note = (note or "").strip() or None
    if note is not None and len(note) > MAX_NOTE_CHARS:
        raise ValueError(f"the note has {len(note)} characters; at most {MAX_NOTE_CHARS} are kept")
    return note


def binary_truth(label: str) -> int | None:
    """1 pneumonia, 0 normal, None not assessable."""
    if label == "NORMAL":
        return 0
    return 1 if label in PNEUMONIA_LABELS else None


class ReviewStore:
    """Adds and reads the reviews of one history database (sharing its writer lock)."""

    def __init__(self, engine: sa.Engine, write_lock: threading.Lock) -> None:
        self.engine = engine
        self._write_lock = write_lock

    def add(self, analysis_id: int, label: str, *, reviewer: str, role: str | None, source: str,
            note: str | None = None, audit: AuditEvent | None = None) -> Review:
        """Store one review; ``audit`` commits in the same transaction. UnknownAnalysis when there is no such row."""
        note = check_review(label, note, source)
        created = utc_now()
        values = dict(analysis_id=analysis_id, created=created, reviewer=reviewer, role=role, label=label,
                      note=note, source=source)
        with self._write_lock, self.engine.begin() as connection:
            exists = connection.execute(sa.select(analyses.c.id).where(analyses.c.id == analysis_id)).first()
            if exists is None:
                raise UnknownAnalysis(f"no analysis with id {analysis_id} in the history")
            review_id = int(connection.execute(reviews.insert().values(**values).returning(reviews.c.id)).scalar_one())
            if audit is not None:
                insert_event(connection, replace(audit, analysis_id=analysis_id))
        return Review(review_id, **values)

    def trail(self, analysis_id: int) -> list[Review]:
        """Every review of one analysis, oldest first (the last is the one that counts)."""
        query = sa.select(*(reviews.c[n] for n in _COLUMNS)).where(reviews.c.analysis_id == analysis_id)
        with self.engine.connect() as connection:
            return [Review(**row._mapping) for row in connection.execute(query.order_by(reviews.c.id))]

    def latest(self, analysis_ids: Iterable[int] | None = None) -> dict[int, Review]:
        """The review that counts (the newest) of each reviewed analysis, of ``analysis_ids`` or of all."""
        newest = sa.select(sa.func.max(reviews.c.id)).group_by(reviews.c.analysis_id)
        if analysis_ids is not None:
            newest = newest.where(reviews.c.analysis_id.in_(list(analysis_ids)))
        query = sa.select(*(reviews.c[n] for n in _COLUMNS)).where(reviews.c.id.in_(newest.scalar_subquery()))
        with self.engine.connect() as connection:
            return {int(row.analysis_id): Review(**row._mapping) for row in connection.execute(query)}

    def count(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(sa.select(sa.func.count()).select_from(reviews)).scalar_one())
