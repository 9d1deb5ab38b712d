"""Page sessions and API tokens: fixation, CSRF on each state-changing request, idle timeout, logout, revoked
and expired tokens, disabled accounts."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from pneumo.service.auth import SESSION_COOKIE
from pneumo.service.history_schema import api_tokens
from pneumo.service.settings import AccessSettings

from .accounts_support import PASSWORD, store_for


def sign_in(client: TestClient, name: str) -> str:
    response = client.post("/api/v1/login", json={"name": name, "password": PASSWORD})
    assert response.status_code == 200, response.text
    cookie = response.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower() and "path=/" in cookie.lower()
    return response.json()["csrf_token"]


def post_png(client: TestClient, png: bytes, headers: dict[str, str] | None = None):
    return client.post("/api/v1/predict", params={"heatmap": "false"}, headers=headers or {},
                       files={"file": ("x.png", png, "image/png")})


def who(client: TestClient, cookie: str | None = None) -> str | None:
    cookies = {SESSION_COOKIE: cookie} if cookie is not None else None
    fresh = TestClient(client.app, base_url="http://127.0.0.1", cookies=cookies)
    return fresh.get("/api/v1/session").json()["name"]


def test_login_issues_a_new_session_id_and_drops_a_planted_one(make_client, accounts):
    client = make_client()
    response = client.post("/api/v1/login", json={"name": "clinician-1", "password": PASSWORD},
                           headers={"Cookie": f"{SESSION_COOKIE}=planted-by-an-attacker"})
    assert response.status_code == 200
    issued = response.cookies[SESSION_COOKIE]
    assert issued != "planted-by-an-attacker" and len(issued) >= 40
    assert who(client, issued) == "clinician-1"
    assert who(client, "planted-by-an-attacker") is None


def test_login_over_an_existing_session_replaces_it(make_client, accounts):
    client = make_client()
    sign_in(client, "viewer-1")
    before = client.cookies[SESSION_COOKIE]
    sign_in(client, "clinician-1")
    after = client.cookies[SESSION_COOKIE]
    assert after != before
    assert who(client, before) is None  # the old id is gone on the server, not just in this browser
    assert who(client, after) == "clinician-1"


def test_predict_needs_the_csrf_token_of_the_session(make_client, accounts, xray_png):
    client = make_client()
    csrf = sign_in(client, "clinician-1")
    for headers in ({}, {"X-CSRF-Token": "guess"}, {"X-CSRF-Token": csrf[:-1]}):
        response = post_png(client, xray_png, headers)
        assert response.status_code == 403 and "CSRF" in response.json()["error"]["message"]
    assert client.get("/api/v1/history").json()["total"] == 0  # nothing was analysed
    assert post_png(client, xray_png, {"X-CSRF-Token": csrf}).status_code == 200


def test_logout_needs_the_csrf_token_then_ends_the_session(make_client, accounts):
    client = make_client()
    csrf = sign_in(client, "viewer-1")
    session_id = client.cookies[SESSION_COOKIE]
    assert client.post("/api/v1/logout").status_code == 403
    assert who(client, session_id) == "viewer-1"  # a forged logout did nothing
    assert client.post("/api/v1/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
    assert who(client, session_id) is None
    assert client.get("/api/v1/history").status_code == 401


def test_a_cross_site_login_post_is_refused(make_client, accounts):
    client = make_client()
    response = client.post("/api/v1/login", json={"name": "viewer-1", "password": PASSWORD},
                           headers={"Origin": "https://evil.example"})
    assert response.status_code == 403 and "set-cookie" not in response.headers


def test_an_idle_session_ends(make_client, accounts):
    client = make_client(access=AccessSettings(session_idle_minutes=0.5 / 60))  # half a second
    sign_in(client, "viewer-1")
    assert client.get("/api/v1/history").status_code == 200
    time.sleep(0.7)
    assert client.get("/api/v1/history").status_code == 401


def test_a_revoked_token_is_refused_at_once(make_client, make_settings, accounts):
    client = make_client()
    headers = accounts["clinician"].bearer
    assert client.get("/api/v1/history", headers=headers).status_code == 200
    history, store = store_for(make_settings().database_url)
    try:
        assert store.revoke_tokens("clinician-1", token_id=None, by="test") == 1
    finally:
        history.close()
    refused = client.get("/api/v1/history", headers=headers)
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]
    assert accounts["clinician"].token not in refused.text


def test_an_expired_token_is_refused(make_client, make_settings, accounts):
    client = make_client()
    history, _ = store_for(make_settings().database_url)
    try:
        with history.engine.begin() as connection:
            connection.execute(api_tokens.update().values(expires="2020-01-01T00:00:00.000Z"))
    finally:
        history.close()
    assert client.get("/api/v1/history", headers=accounts["viewer"].bearer).status_code == 401


def test_a_token_expiry_is_checked_against_the_clock(make_settings, accounts):
    history, store = store_for(make_settings().database_url)
    try:
        _, token, expires = store.issue_token("viewer-1", days=1, by="test")
        assert store.account_for_token(token).name == "viewer-1"
        with history.engine.begin() as connection:
            connection.execute(api_tokens.update().where(api_tokens.c.expires == expires)
                               .values(expires="2000-01-01T00:00:00.000Z"))
        assert store.account_for_token(token) is None
        with pytest.raises(ValueError, match="out of range"):
            store.issue_token("viewer-1", days=0, by="test")
    finally:
        history.close()


def test_a_disabled_account_loses_password_session_and_tokens(make_client, make_settings, accounts):
    client = make_client()
    sign_in(client, "clinician-1")
    assert client.get("/api/v1/history").status_code == 200
    history, store = store_for(make_settings().database_url)
    try:
        store.disable("clinician-1", by="test")
    finally:
        history.close()
    assert client.get("/api/v1/history").status_code == 401  # the session
    assert client.get("/api/v1/history", headers=accounts["clinician"].bearer).status_code == 401  # the token
    fresh = TestClient(client.app, base_url="http://127.0.0.1")
    assert fresh.post("/api/v1/login", json={"name": "clinician-1", "password": PASSWORD}).status_code == 401


def test_tokens_and_session_ids_are_stored_hashed(make_settings, make_client, accounts):
    client = make_client()
    sign_in(client, "viewer-1")
    history, _ = store_for(make_settings().database_url)
    try:
        with history.engine.connect() as connection:
            dump = " ".join(str(row) for table in ("api_tokens", "sessions", "accounts")
                            for row in connection.execute(sa.text(f"SELECT * FROM {table}")))
    finally:
        history.close()
    assert client.cookies[SESSION_COOKIE] not in dump
    assert PASSWORD not in dump and "$argon2id$" in dump
    for account in accounts.values():
        assert account.token not in dump
