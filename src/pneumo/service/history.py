"""History of analyses: one repository on one schema, SQLite by default, PostgreSQL by URL.

The modules, each importing only those below it (no cycle): :mod:`history_store` (the repository on any
SQLAlchemy engine, its entries and the migrations), :mod:`history_sqlite` and :mod:`history_postgres` (the two
engines), and this one, which picks an engine by URL. Opening a database migrates it to the current schema first
(Alembic), so a file or server written by an older release upgrades in place on first start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Protocol

from pneumo.service.audit import AuditEvent
from pneumo.service.history_postgres import PostgresHistory
from pneumo.service.history_sqlite import SqliteHistory, private_sqlite_file
from pneumo.service.history_store import (HistoryEntry, SqlHistory, head_revision, migrate, redact,
                                          schema_revision)

SQLITE_PREFIX = "sqlite:///"
POSTGRES_PREFIXES = ("postgresql://", "postgres://", "postgresql+psycopg://")

__all__ = ["HistoryEntry", "HistoryRepository", "PostgresHistory", "SqlHistory", "SqliteHistory", "head_revision",
           "migrate", "open_history", "private_sqlite_file", "schema_revision"]


class HistoryRepository(Protocol):
    """What the service (and the DICOM node) need from a history store."""

    kind: str

    def add(self, *, image_sha256: str, file_type: str, model_version: str, result: dict[str, Any],
            heatmap_png: bytes | None, source: str = "upload", dicom: Mapping[str, str | None] | None = None,
            audit: AuditEvent | None = None, model_id: str | None = None,
            model_parent: str | None = None) -> HistoryEntry: ...

    def get(self, entry_id: int) -> HistoryEntry | None: ...

    def recent(self, *, limit: int, offset: int) -> list[HistoryEntry]: ...

    def count(self, *, source: str | None = None) -> int: ...

    def close(self) -> None: ...


def open_history(url: str) -> SqlHistory:
    """Open the history store named by ``url``, creating or upgrading its schema first."""
    if url.startswith(SQLITE_PREFIX):
        path = url[len(SQLITE_PREFIX):]
        if not path or path == ":memory:":
            raise ValueError(f"database URL {url!r} names no file; use sqlite:///path/to/history.sqlite3")
        return SqliteHistory(Path(path))
    if url.startswith(POSTGRES_PREFIXES):
        return PostgresHistory(url)
    raise ValueError(f"unsupported database URL {redact(url)!r}; use sqlite:///path/to/file.sqlite3 or "
                     "postgresql://user:password@host:5432/dbname")
