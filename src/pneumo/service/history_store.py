"""The history repository on a SQLAlchemy engine, for every database: one schema
(:mod:`pneumo.service.history_schema`), migrated to the newest revision (Alembic) when it is opened.

A row holds only what is needed to review an earlier result: when, the SHA-256 of the image bytes, the sniffed
file type, the result JSON, the model that answered (version, ``name@hash`` and its parent), the heatmap PNG and
where it came from. DICOM arrivals add their Study/Series/SOP Instance UIDs, SOP class and the sender's AE title.
No patient name or id, no other DICOM tag and no file name is ever stored.

The engines (:mod:`history_sqlite`, :mod:`history_postgres`) build on this module; :mod:`history` picks one by URL.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from pneumo.service.audit import AuditEvent, insert_event
from pneumo.service.clock import utc_now
from pneumo.service.history_schema import DICOM_COLUMNS, MODEL_COLUMNS, SOURCES, analyses

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

_SUMMARY = (analyses.c.id, analyses.c.created, analyses.c.image_sha256, analyses.c.file_type,
            analyses.c.model_version, analyses.c.result, analyses.c.source,
            *(analyses.c[name] for name in (*DICOM_COLUMNS, *MODEL_COLUMNS)))


@dataclass(frozen=True)
class HistoryEntry:
    id: int
    created: str
    image_sha256: str
    file_type: str
    model_version: str
    result: dict[str, Any]
    has_heatmap: bool
    heatmap_png: bytes | None = None  # loaded only by ``get``; listings leave it out to stay small
    source: str = "upload"
    dicom: dict[str, str] | None = None  # the UIDs of a DICOM arrival (see history_schema.DICOM_COLUMNS)
    model_id: str | None = None  # "name@hash" of the bundle (None on rows older than revision 0004)
    model_parent: str | None = None  # its parent's, for a site bundle

    def summary(self) -> dict[str, Any]:
        """JSON for a history listing: everything but the heatmap image."""
        return {"id": self.id, "created": self.created, "image_sha256": self.image_sha256,
                "file_type": self.file_type, "model_version": self.model_version,
                "model": {"id": self.model_id, "parent": self.model_parent, "version": self.model_version},
                "label": self.result.get("label"), "probability": self.result.get("probability"),
                "out_of_distribution": self.result.get("out_of_distribution"), "has_heatmap": self.has_heatmap,
                "result": self.result, "source": self.source, "dicom": self.dicom}

    def to_dict(self) -> dict[str, Any]:
        """JSON for one entry, with the heatmap as base64 PNG (or null)."""
        data = self.summary()
        data["heatmap"] = base64.b64encode(self.heatmap_png).decode("ascii") if self.heatmap_png else None
        return data


def redact(url: str) -> str:
    """``url`` without its password: never echo one back in an error message."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


def reason(exc: BaseException) -> str:
    """The driver's own message, without SQLAlchemy's statement dump and link."""
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]


def _alembic_config(connection: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def migrate(engine: sa.Engine, revision: str = "head") -> None:
    """Bring the database to ``revision`` (the newest by default; a no-op when it is already there)."""
    with engine.begin() as connection:
        command.upgrade(_alembic_config(connection), revision)


def schema_revision(engine: sa.Engine) -> str | None:
    """The Alembic revision the database is at (None: never migrated, e.g. written by pneumo 0.1.0)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    return str(ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head())


class SqlHistory:
    """The repository on a SQLAlchemy engine; the subclasses only build the engine for their database."""

    kind = "sql"

    def __init__(self, engine: sa.Engine, name: str) -> None:
        self.engine = engine
        self._name = name  # for error messages: a path or a redacted URL
        # Writers queue here rather than in the database: SQLite has one writer at a time anyway.
        self.write_lock = threading.Lock()
        try:
            migrate(engine)
        except sa.exc.SQLAlchemyError as exc:
            engine.dispose()
            raise ValueError(f"{name}: cannot open or upgrade the history database ({reason(exc)})") from exc

    def add(self, *, image_sha256: str, file_type: str, model_version: str, result: dict[str, Any],
            heatmap_png: bytes | None, source: str = "upload", dicom: Mapping[str, str | None] | None = None,
            audit: AuditEvent | None = None, model_id: str | None = None,
            model_parent: str | None = None) -> HistoryEntry:
        """Store one analysis; ``audit`` (its analysis id filled in here) commits in the same transaction."""
        if source not in SOURCES:
            raise ValueError(f"unknown history source {source!r}; choose one of {list(SOURCES)}")
        unknown = set(dicom or {}) - set(DICOM_COLUMNS)
        if unknown:
            raise ValueError(f"unknown DICOM history fields {sorted(unknown)}; accepted: {list(DICOM_COLUMNS)}")
        created = utc_now()
        document = json.dumps(result, sort_keys=True)
        uids = {name: (dicom or {}).get(name) for name in DICOM_COLUMNS}
        statement = analyses.insert().values(created=created, image_sha256=image_sha256, file_type=file_type,
                                             model_version=model_version, result=document, heatmap=heatmap_png,
                                             source=source, model_id=model_id, model_parent=model_parent, **uids)
        with self.write_lock, self.engine.begin() as connection:
            entry_id = int(connection.execute(statement.returning(analyses.c.id)).scalar_one())
            if audit is not None:
                insert_event(connection, replace(audit, analysis_id=entry_id))
        return HistoryEntry(entry_id, created, image_sha256, file_type, model_version, json.loads(document),
                            heatmap_png is not None, heatmap_png, source, _uids(uids), model_id, model_parent)

    def get(self, entry_id: int) -> HistoryEntry | None:
        query = sa.select(*_SUMMARY, analyses.c.heatmap).where(analyses.c.id == entry_id)
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        if row is None:
            return None
        heatmap = row.heatmap
        return _entry(row, heatmap is not None, bytes(heatmap) if heatmap is not None else None)

    def recent(self, *, limit: int, offset: int) -> list[HistoryEntry]:
        query = (sa.select(*_SUMMARY, analyses.c.heatmap.is_not(None).label("has_heatmap"))
                 .order_by(analyses.c.id.desc()).limit(int(limit)).offset(int(offset)))
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [_entry(row, bool(row.has_heatmap)) for row in rows]

    def find_dicom(self, sop_instance_uid: str) -> list[HistoryEntry]:
        """Rows of one received DICOM instance (by SOP Instance UID), oldest first."""
        query = (sa.select(*_SUMMARY, analyses.c.heatmap.is_not(None).label("has_heatmap"))
                 .where(analyses.c.sop_instance_uid == sop_instance_uid).order_by(analyses.c.id))
        with self.engine.connect() as connection:
            return [_entry(row, bool(row.has_heatmap)) for row in connection.execute(query).all()]

    def count(self, *, source: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(analyses)
        if source is not None:
            query = query.where(analyses.c.source == source)
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def close(self) -> None:
        self.engine.dispose()


def _uids(values: Mapping[str, Any]) -> dict[str, str] | None:
    kept = {name: str(values[name]) for name in DICOM_COLUMNS if values.get(name) is not None}
    return kept or None


def _entry(row: sa.Row, has_heatmap: bool, heatmap: bytes | None = None) -> HistoryEntry:
    return HistoryEntry(int(row.id), str(row.created), row.image_sha256, row.file_type, row.model_version,
                        json.loads(row.result), has_heatmap, heatmap, row.source, _uids(row._mapping),
                        row.model_id, row.model_parent)
