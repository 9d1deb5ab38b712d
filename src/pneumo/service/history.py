"""History of analyses: a small repository with one SQL schema, SQLite by default, PostgreSQL by URL.

A row holds only what is needed to review an earlier result: when, the SHA-256 of the image bytes,
the sniffed file type, the result JSON, the model version and the heatmap PNG. No patient identifier,
no DICOM tag and no file name is ever stored.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

SQLITE_PREFIX = "sqlite:///"
POSTGRES_PREFIXES = ("postgresql://", "postgres://", "postgresql+psycopg://")

_COLUMNS = "id, created, image_sha256, file_type, model_version, result"


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

    def summary(self) -> dict[str, Any]:
        """JSON for a history listing: everything but the heatmap image."""
        return {"id": self.id, "created": self.created, "image_sha256": self.image_sha256,
                "file_type": self.file_type, "model_version": self.model_version,
                "label": self.result.get("label"), "probability": self.result.get("probability"),
                "has_heatmap": self.has_heatmap, "result": self.result}

    def to_dict(self) -> dict[str, Any]:
        """JSON for one entry, with the heatmap as base64 PNG (or null)."""
        data = self.summary()
        data["heatmap"] = base64.b64encode(self.heatmap_png).decode("ascii") if self.heatmap_png else None
        return data


class HistoryRepository(Protocol):
    """What the service needs from a history store; SQLite and PostgreSQL implement it."""

    kind: str

    def add(self, *, image_sha256: str, file_type: str, model_version: str, result: dict[str, Any],
            heatmap_png: bytes | None) -> HistoryEntry: ...

    def get(self, entry_id: int) -> HistoryEntry | None: ...

    def recent(self, *, limit: int, offset: int) -> list[HistoryEntry]: ...

    def count(self) -> int: ...

    def close(self) -> None: ...


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def open_history(url: str) -> HistoryRepository:
    """Open (and create if needed) the history store named by ``url``."""
    if url.startswith(SQLITE_PREFIX):
        path = url[len(SQLITE_PREFIX):]
        if not path or path == ":memory:":
            raise ValueError(f"database URL {url!r} names no file; use sqlite:///path/to/history.sqlite3")
        return SqliteHistory(Path(path))
    if url.startswith(POSTGRES_PREFIXES):
        from pneumo.service.history_postgres import PostgresHistory

        return PostgresHistory(url)
    raise ValueError(f"unsupported database URL {_redact(url)!r}; use sqlite:///path/to/file.sqlite3 or "
                     "postgresql://user:password@host:5432/dbname")


def _redact(url: str) -> str:
    # Never echo a password back in an error message.
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


class SqlHistory:
    """The shared SQL; subclasses supply a connection, the placeholder style and the DDL."""

    kind = "sql"
    placeholder = "?"

    def __init__(self) -> None:
        # One connection shared by the thread pool; the lock keeps statements from interleaving.
        self._lock = threading.Lock()

    # -- dialect hooks -------------------------------------------------------------------------------
    def _execute(self, sql: str, params: tuple = ()) -> list[tuple]:
        raise NotImplementedError

    def _insert(self, params: tuple) -> int:
        raise NotImplementedError

    # -- repository ----------------------------------------------------------------------------------
    def _sql(self, text: str) -> str:
        return text.replace("?", self.placeholder)

    def add(self, *, image_sha256: str, file_type: str, model_version: str, result: dict[str, Any],
            heatmap_png: bytes | None) -> HistoryEntry:
        created = utc_now()
        document = json.dumps(result, sort_keys=True)
        with self._lock:
            entry_id = self._insert((created, image_sha256, file_type, model_version, document, heatmap_png))
        return HistoryEntry(entry_id, created, image_sha256, file_type, model_version, json.loads(document),
                            heatmap_png is not None, heatmap_png)

    def get(self, entry_id: int) -> HistoryEntry | None:
        with self._lock:
            rows = self._execute(self._sql(f"SELECT {_COLUMNS}, heatmap FROM analyses WHERE id = ?"), (entry_id,))
        if not rows:
            return None
        *head, heatmap = rows[0]
        return _entry(head, heatmap is not None, bytes(heatmap) if heatmap is not None else None)

    def recent(self, *, limit: int, offset: int) -> list[HistoryEntry]:
        sql = self._sql(f"SELECT {_COLUMNS}, heatmap IS NOT NULL FROM analyses ORDER BY id DESC LIMIT ? OFFSET ?")
        with self._lock:
            rows = self._execute(sql, (int(limit), int(offset)))
        return [_entry(row[:-1], bool(row[-1])) for row in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._execute("SELECT COUNT(*) FROM analyses")[0][0])


def _entry(row, has_heatmap: bool, heatmap: bytes | None = None) -> HistoryEntry:
    entry_id, created, sha, file_type, version, document = row
    return HistoryEntry(int(entry_id), str(created), sha, file_type, version, json.loads(document), has_heatmap,
                        heatmap)


class SqliteHistory(SqlHistory):
    """One SQLite file in WAL mode: readers never wait for the writer, and a crash loses no committed row."""

    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS analyses ("
                " id INTEGER PRIMARY KEY AUTOINCREMENT,"
                " created TEXT NOT NULL,"
                " image_sha256 TEXT NOT NULL,"
                " file_type TEXT NOT NULL,"
                " model_version TEXT NOT NULL,"
                " result TEXT NOT NULL,"
                " heatmap BLOB)")
        except sqlite3.Error as exc:
            raise ValueError(f"{self.path}: cannot open the history database ({exc})") from exc

    def _execute(self, sql: str, params: tuple = ()) -> list[tuple]:
        return self._db.execute(sql, params).fetchall()

    def _insert(self, params: tuple) -> int:
        cursor = self._db.execute(
            "INSERT INTO analyses (created, image_sha256, file_type, model_version, result, heatmap)"
            " VALUES (?, ?, ?, ?, ?, ?)", params)
        return int(cursor.lastrowid)

    def journal_mode(self) -> str:
        with self._lock:
            return str(self._db.execute("PRAGMA journal_mode").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
