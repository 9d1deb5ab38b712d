"""The audit trail: who did what, to which analysis, when and from which address, in an append-only table.

An event is one call, ``audit.record(event)`` (its own transaction), or ``insert_event(connection, event)``
inside the transaction of the action it describes (a prediction's row and its audit row commit together, so
a server killed mid-request never acknowledges an action whose audit row is lost). Nothing here updates or
deletes a row. Events carry names, fixed action words and ids only: never an image, a patient identifier,
a password or a token.
"""

from __future__ import annotations

import csv
import json
import threading
from dataclasses import asdict, dataclass
from typing import Any, TextIO

import sqlalchemy as sa

from pneumo.inference.rows import csv_cell
from pneumo.service.clock import utc_now
from pneumo.service.history_schema import audit_events

# The action words the service writes; a new kind of action (a review) adds its word here.
ACTIONS = ("login", "logout", "predict", "view", "list", "export", "model.load", "audit.read",
           "account.add", "account.disable", "token.issue", "token.revoke", "token.rejected", "review",
           "reviews.import", "site.report")
OUTCOMES = ("ok", "failed", "denied")
EXPORT_FORMATS = ("csv", "json")
COLUMNS = ("id", "created", "actor", "role", "action", "analysis_id", "address", "outcome", "detail")


@dataclass(frozen=True)
class AuditEvent:
    actor: str
    action: str
    role: str | None = None
    analysis_id: int | None = None
    address: str | None = None
    outcome: str = "ok"
    detail: str | None = None

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown audit action {self.action!r}; choose one of {list(ACTIONS)}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown audit outcome {self.outcome!r}; choose one of {list(OUTCOMES)}")


def insert_event(connection: sa.Connection, event: AuditEvent) -> None:
    """Add ``event`` inside the caller's transaction (it commits or rolls back with the action)."""
    connection.execute(audit_events.insert().values(created=utc_now(), **asdict(event)))


class AuditTrail:
    """Reads and appends the audit table of one history database (sharing its writer lock)."""

    def __init__(self, engine: sa.Engine, write_lock: threading.Lock) -> None:
        self.engine = engine
        self._write_lock = write_lock

    def record(self, event: AuditEvent) -> None:
        """Append one event in its own transaction; it is committed when this returns."""
        with self._write_lock, self.engine.begin() as connection:
            insert_event(connection, event)

    def rows(self, *, limit: int, offset: int = 0, actor: str | None = None,
             analysis_id: int | None = None) -> list[dict[str, Any]]:
        """Events oldest first, optionally of one actor or one analysis."""
        query = sa.select(*(audit_events.c[name] for name in COLUMNS)).order_by(audit_events.c.id)
        query = self._filtered(query, actor, analysis_id).limit(int(limit)).offset(int(offset))
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def count(self, *, actor: str | None = None, analysis_id: int | None = None) -> int:
        query = self._filtered(sa.select(sa.func.count()).select_from(audit_events), actor, analysis_id)
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    @staticmethod
    def _filtered(query: sa.Select, actor: str | None, analysis_id: int | None) -> sa.Select:
        if actor is not None:
            query = query.where(audit_events.c.actor == actor)
        if analysis_id is not None:
            query = query.where(audit_events.c.analysis_id == analysis_id)
        return query

    def export(self, out: TextIO, fmt: str, page: int = 1000) -> int:
        """Write every event to ``out`` as CSV (formula-safe cells) or a JSON list; returns the count."""
        if fmt not in EXPORT_FORMATS:
            raise ValueError(f"unknown audit export format {fmt!r}; choose one of {list(EXPORT_FORMATS)}")
        events = self._all(page)
        if fmt == "json":
            json.dump(events, out, indent=1)
            out.write("\n")
        else:
            writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows({key: csv_cell(value) for key, value in event.items()} for event in events)
        return len(events)

    def _all(self, page: int) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        while batch := self.rows(limit=page, offset=len(events)):
            events.extend(batch)
        return events


class DicomArrivalAudit:
    """The history as the DICOM node writes it: each arrival's row commits with a ``predict`` audit row naming
    the AE title that sent it (a PACS has no account; its AE title is what identifies it), carries the model's
    identity (``model``: a :class:`pneumo.site.identity.ModelIdentity`), and is counted for /metrics."""

    def __init__(self, history: Any, model: Any, metrics: Any) -> None:
        self._history = history
        self._model = model
        self._metrics = metrics

    def add(self, **fields: Any) -> Any:
        calling_ae = (fields.get("dicom") or {}).get("calling_ae") or "unknown AE"
        event = AuditEvent(actor=f"dicom:{calling_ae}", action="predict", detail="received by the DICOM node")
        entry = self._history.add(**fields, audit=event, model_id=self._model.label, model_parent=self._model.parent)
        self._metrics.prediction(entry.result, "dicom")
        return entry
