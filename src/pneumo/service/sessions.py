"""Server-side page sessions: a random id in an HttpOnly cookie, its SHA-256 in the database.

Each login makes a new id (and drops the one the browser came with), so an id planted before login
(session fixation) never becomes a signed-in session. A session ends at logout, after ``idle_seconds``
without a request, or when its account is disabled. Each holds a CSRF token the page must echo in a header
on every state-changing request.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass

import sqlalchemy as sa

from pneumo.service.accounts import Account, account_from_row
from pneumo.service.clock import utc_now
from pneumo.service.history_schema import accounts, sessions

# last_seen is rewritten at most this often, so a burst of page requests is not a burst of writes.
_TOUCH_EVERY_S = 15.0


@dataclass(frozen=True)
class Session:
    account: Account
    csrf_token: str


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()


class SessionStore:
    def __init__(self, engine: sa.Engine, write_lock: threading.Lock, idle_seconds: float) -> None:
        self.engine = engine
        self._write_lock = write_lock
        self.idle_seconds = idle_seconds

    def start(self, account: Account, *, replacing: str | None) -> tuple[str, str]:
        """A new session for ``account``: (session id, CSRF token). ``replacing`` (the id the browser sent,
        if any) is deleted, and so are sessions idle past the timeout."""
        session_id, csrf_token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = time.time()
        with self._write_lock, self.engine.begin() as connection:
            if replacing:
                connection.execute(sessions.delete().where(sessions.c.id_sha256 == _digest(replacing)))
            connection.execute(sessions.delete().where(sessions.c.last_seen < now - self.idle_seconds))
            connection.execute(sessions.insert().values(id_sha256=_digest(session_id), account_id=account.id,
                                                        csrf_token=csrf_token, created=utc_now(), last_seen=now))
        return session_id, csrf_token

    def find(self, session_id: str) -> Session | None:
        """The live session with this id (its account enabled, not idle too long), else None."""
        digest = _digest(session_id)
        query = (sa.select(accounts, sessions.c.csrf_token, sessions.c.last_seen)
                 .join(sessions, sessions.c.account_id == accounts.c.id).where(sessions.c.id_sha256 == digest))
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        if row is None or row.disabled:
            return None
        now = time.time()
        if now - row.last_seen > self.idle_seconds:
            self.end(session_id)
            return None
        if now - row.last_seen > _TOUCH_EVERY_S:
            with self._write_lock, self.engine.begin() as connection:
                connection.execute(sessions.update().where(sessions.c.id_sha256 == digest).values(last_seen=now))
        return Session(account_from_row(row), row.csrf_token)

    def end(self, session_id: str) -> None:
        with self._write_lock, self.engine.begin() as connection:
            connection.execute(sessions.delete().where(sessions.c.id_sha256 == _digest(session_id)))
