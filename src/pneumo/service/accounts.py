"""Accounts and API tokens in the history database.

Passwords are hashed with argon2id (argon2-cffi: memory-hard, salted, its parameters stored in the hash, so
``verify`` keeps working when the defaults change). An API token is 32 random bytes shown once; only its
SHA-256 is stored (a token is high-entropy, so a fast hash is enough and lookup is one indexed query). Every
change is written with its audit event in the same transaction.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from pneumo.service.audit import AuditEvent, insert_event
from pneumo.service.clock import utc_now, utc_text
from pneumo.service.history_schema import ROLES, accounts, api_tokens

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD_CHARS = 12
TOKEN_PREFIX = "pnm_"
MAX_TOKEN_DAYS = 3650
# Verified when the name is unknown, so a wrong name costs as long as a wrong password (no user enumeration).
_DUMMY_PASSWORD = "not-a-password-of-anyone"


@dataclass(frozen=True)
class Account:
    id: int
    name: str
    role: str
    disabled: bool
    has_password: bool
    created: str


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise ValueError(f"account name {name!r} is not allowed; use 1-64 letters, digits, '.', '_', '@' or '-', "
                         "starting with a letter or digit")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {list(ROLES)}")
    return role


def account_from_row(row: sa.Row) -> Account:
    return Account(int(row.id), row.name, row.role, bool(row.disabled), row.password_hash is not None,
                   str(row.created))


class AccountStore:
    """Add, list and disable accounts; check passwords; issue, check and revoke API tokens."""

    def __init__(self, engine: sa.Engine, write_lock: threading.Lock, hasher: PasswordHasher | None = None) -> None:
        self.engine = engine
        self._write_lock = write_lock
        self.hasher = hasher or PasswordHasher()
        self._dummy_hash = self.hasher.hash(_DUMMY_PASSWORD)

    def add(self, name: str, role: str, password: str | None, *, by: str) -> Account:
        check_name(name)
        check_role(role)
        if password is not None and len(password) < MIN_PASSWORD_CHARS:
            raise ValueError(f"the password has {len(password)} characters; use at least {MIN_PASSWORD_CHARS}")
        if self.get(name) is not None:
            raise ValueError(f"an account named {name!r} already exists")
        password_hash = self.hasher.hash(password) if password is not None else None
        event = AuditEvent(actor=by, action="account.add", detail=f"{name} as {role}")
        with self._write_lock, self.engine.begin() as connection:
            connection.execute(accounts.insert().values(name=name, role=role, password_hash=password_hash,
                                                        disabled=False, created=utc_now()))
            insert_event(connection, event)
        return self._require(name)

    def get(self, name: str) -> Account | None:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(accounts).where(accounts.c.name == name)).first()
        return account_from_row(row) if row is not None else None

    def _require(self, name: str) -> Account:
        account = self.get(name)
        if account is None:
            raise ValueError(f"no account named {name!r}; `pneumo users list` shows them")
        return account

    def list(self) -> list[Account]:
        with self.engine.connect() as connection:
            return [account_from_row(row) for row in connection.execute(sa.select(accounts).order_by(accounts.c.name))]

    def any_enabled(self) -> bool:
        query = sa.select(accounts.c.id).where(accounts.c.disabled.is_(False)).limit(1)
        with self.engine.connect() as connection:
            return connection.execute(query).first() is not None

    def disable(self, name: str, *, by: str) -> Account:
        """Disable the account: its password, tokens and sessions stop working at once."""
        account = self._require(name)
        event = AuditEvent(actor=by, action="account.disable", detail=name)
        with self._write_lock, self.engine.begin() as connection:
            connection.execute(accounts.update().where(accounts.c.id == account.id).values(disabled=True))
            insert_event(connection, event)
        return self._require(name)

    def check_password(self, name: str, password: str) -> Account | None:
        """The enabled account with this name and password, else None (same cost whichever part was wrong)."""
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(accounts).where(accounts.c.name == name)).first()
        stored = row.password_hash if row is not None and row.password_hash else self._dummy_hash
        try:
            self.hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None or not row.password_hash or row.disabled:
            return None
        return account_from_row(row)

    def issue_token(self, name: str, *, days: int, by: str) -> tuple[int, str, str]:
        """A new token for ``name``: (token id, the token, its expiry). The token is not stored anywhere."""
        if not 1 <= days <= MAX_TOKEN_DAYS:
            raise ValueError(f"token lifetime {days} days is out of range; choose 1 to {MAX_TOKEN_DAYS}")
        account = self._require(name)
        if account.disabled:
            raise ValueError(f"account {name!r} is disabled; no token is issued for it")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        expires = utc_text(datetime.now(timezone.utc) + timedelta(days=days))
        with self._write_lock, self.engine.begin() as connection:
            statement = api_tokens.insert().values(account_id=account.id, token_sha256=token_digest(token),
                                                   created=utc_now(), expires=expires)
            token_id = int(connection.execute(statement.returning(api_tokens.c.id)).scalar_one())
            insert_event(connection, AuditEvent(actor=by, action="token.issue",
                                                detail=f"token {token_id} for {name}, expires {expires}"))
        return token_id, token, expires

    def revoke_tokens(self, name: str, *, token_id: int | None, by: str) -> int:
        """Revoke one token of ``name`` (or all of them when ``token_id`` is None); returns how many."""
        account = self._require(name)
        condition = (api_tokens.c.account_id == account.id) & api_tokens.c.revoked.is_(None)
        if token_id is not None:
            condition &= api_tokens.c.id == token_id
        which = f"token {token_id}" if token_id is not None else "all tokens"
        with self._write_lock, self.engine.begin() as connection:
            revoked = connection.execute(api_tokens.update().where(condition).values(revoked=utc_now())).rowcount
            insert_event(connection, AuditEvent(actor=by, action="token.revoke", detail=f"{which} of {name}"))
        if token_id is not None and not revoked:
            raise ValueError(f"{name!r} has no valid token with id {token_id}")
        return int(revoked)

    def account_for_token(self, token: str) -> Account | None:
        """The enabled account holding this unrevoked, unexpired token, else None."""
        query = (sa.select(accounts, api_tokens.c.expires).join(api_tokens, api_tokens.c.account_id == accounts.c.id)
                 .where(api_tokens.c.token_sha256 == token_digest(token), api_tokens.c.revoked.is_(None)))
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        if row is None or row.disabled or row.expires <= utc_now():
            return None  # ISO 8601 UTC texts of one format compare in time order
        return account_from_row(row)

    def tokens(self, name: str) -> list[dict[str, object]]:
        """The tokens of ``name`` (id, created, expires, revoked): never the token itself."""
        account = self._require(name)
        query = (sa.select(api_tokens.c.id, api_tokens.c.created, api_tokens.c.expires, api_tokens.c.revoked)
                 .where(api_tokens.c.account_id == account.id).order_by(api_tokens.c.id))
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]
