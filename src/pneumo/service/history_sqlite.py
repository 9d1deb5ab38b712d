"""The default history store: one SQLite file in WAL mode, private to its owner."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import sqlalchemy as sa

from pneumo.service.history_store import SqlHistory

log = logging.getLogger("pneumo.service")


def private_sqlite_file(path: Path) -> None:
    """Make ``path`` (and its WAL and shared-memory files, which SQLite creates with the database's mode)
    readable by its owner only: 0600, in folders created 0700. A folder that already exists is not
    changed (it may be shared, like /tmp); one that others can read is named in a warning."""
    missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=0o700)
        os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask
    if not missing and path.parent.stat().st_mode & 0o077:
        log.warning("history folder %s is readable by other users; only the database files in it are private",
                    path.parent)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    for owned in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if owned.exists():
            os.chmod(owned, 0o600)


class SqliteHistory(SqlHistory):
    """One SQLite file in WAL mode: readers never wait for the writer, and a crash loses no committed row."""

    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        private_sqlite_file(self.path)
        engine = sa.create_engine(f"sqlite:///{self.path}",
                                  connect_args={"check_same_thread": False, "timeout": 10.0})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")  # a review must name an analysis that exists
            cursor.close()

        super().__init__(engine, str(self.path))

    def journal_mode(self) -> str:
        with self.engine.connect() as connection:
            return str(connection.exec_driver_sql("PRAGMA journal_mode").scalar_one())
