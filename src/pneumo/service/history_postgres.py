"""PostgreSQL history store (``pip install 'pneumo[postgres]'``), the same schema and queries as SQLite."""

from __future__ import annotations

from pneumo.service.history import SqlHistory, _redact


class PostgresHistory(SqlHistory):
    kind = "postgresql"
    placeholder = "%s"

    def __init__(self, url: str) -> None:
        super().__init__()
        try:
            import psycopg
        except ImportError as exc:
            raise ValueError("a postgresql:// history URL needs psycopg: pip install 'pneumo[postgres]'") from exc
        self._psycopg = psycopg
        # psycopg understands libpq URLs only; accept the SQLAlchemy-style spelling too.
        self._url = url.replace("postgresql+psycopg://", "postgresql://", 1)
        self._db = self._connect()
        with self._lock:
            self._execute(
                "CREATE TABLE IF NOT EXISTS analyses ("
                " id BIGSERIAL PRIMARY KEY,"
                " created TEXT NOT NULL,"
                " image_sha256 TEXT NOT NULL,"
                " file_type TEXT NOT NULL,"
                " model_version TEXT NOT NULL,"
                " result TEXT NOT NULL,"
                " heatmap BYTEA)")

    def _connect(self):
        try:
            return self._psycopg.connect(self._url, autocommit=True, connect_timeout=10)
        except self._psycopg.Error as exc:
            raise ValueError(f"cannot connect to the history database {_redact(self._url)!r} ({exc})") from exc

    def _run(self, sql: str, params: tuple, fetch: bool) -> list[tuple]:
        # A server restart closes the connection; reconnect once instead of failing every later request.
        if self._db.closed:
            self._db = self._connect()
        with self._db.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if fetch else []

    def _execute(self, sql: str, params: tuple = ()) -> list[tuple]:
        return self._run(sql, params, fetch=sql.lstrip().upper().startswith("SELECT"))

    def _insert(self, params: tuple) -> int:
        rows = self._run(
            "INSERT INTO analyses (created, image_sha256, file_type, model_version, result, heatmap)"
            " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id", params, fetch=True)
        return int(rows[0][0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
