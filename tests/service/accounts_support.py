"""Accounts for the service tests: one per role, each with a password and an API token, in the database a
test app is about to open."""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher

from pneumo.service.accounts import AccountStore
from pneumo.service.history import open_history
from pneumo.service.history_schema import ROLES

# Cheap argon2 parameters, for speed: the hash stores its parameters, so the server verifies these as they are.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class TestAccount:
    __test__ = False  # not a test class for pytest
    name: str
    role: str
    token: str

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def add_accounts(database_url: str, roles: tuple[str, ...] = ROLES) -> dict[str, TestAccount]:
    """An account named ``{role}-1`` per role, with PASSWORD and a 1-day token; keyed by role."""
    history = open_history(database_url)
    try:
        store = AccountStore(history.engine, history.write_lock, FAST_HASHER)
        made = {}
        for role in roles:
            name = f"{role}-1"
            store.add(name, role, PASSWORD, by="test")
            _, token, _ = store.issue_token(name, days=1, by="test")
            made[role] = TestAccount(name, role, token)
        return made
    finally:
        history.close()


def store_for(database_url: str):
    """(history, AccountStore) on a database, for a test to change accounts while a server runs."""
    history = open_history(database_url)
    return history, AccountStore(history.engine, history.write_lock, FAST_HASHER)
