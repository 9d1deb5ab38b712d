"""PostgreSQL history store (``pip install 'pneumo[postgres]'``): the same schema and queries as SQLite."""

from __future__ import annotations

import sqlalchemy as sa

from pneumo.optional import require_extra
from pneumo.service.history_store import SqlHistory, reason, redact

DRIVER_PREFIX = "postgresql+psycopg://"


class PostgresHistory(SqlHistory):
    kind = "postgresql"

    def __init__(self, url: str) -> None:
        # libpq spellings and SQLAlchemy's are all accepted; psycopg (version 3) is the driver, imported by
        # SQLAlchemy only when the engine first connects, so this module loads without it.
        scheme, _, rest = url.partition("://")
        driver_url = DRIVER_PREFIX + rest
        require_extra("postgres", needed_for="a postgresql:// history URL")
        # pool_pre_ping: a server restart closes the pooled connections; check them instead of failing every
        # later request.
        engine = sa.create_engine(driver_url, pool_pre_ping=True)
        try:
            with engine.connect():
                pass
        except sa.exc.SQLAlchemyError as exc:
            engine.dispose()
            raise ValueError(f"cannot connect to the history database {redact(url)!r} ({reason(exc)})") from exc
        super().__init__(engine, redact(url))
