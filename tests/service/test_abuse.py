"""Abuse limits: failed sign-ins throttled per account and per address, uploads limited per account."""

from __future__ import annotations

from fastapi.testclient import TestClient

from pneumo.service.settings import AccessSettings
from pneumo.service.throttle import SlidingWindow

from .accounts_support import PASSWORD


def login(client: TestClient, name: str, password: str):
    return client.post("/api/v1/login", json={"name": name, "password": password})


def test_brute_force_on_one_account_is_stopped_even_with_the_right_password(make_client, accounts):
    client = make_client(access=AccessSettings(login_failures_per_account=3, login_failures_per_address=100))
    for guess in ("password1234", "letmein12345", "qwertyuiop12"):
        assert login(client, "clinician-1", guess).status_code == 401
    throttled = login(client, "clinician-1", PASSWORD)
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) >= 1
    assert "set-cookie" not in throttled.headers
    assert login(client, "viewer-1", PASSWORD).status_code == 200  # other accounts are not locked out


def test_guessing_across_accounts_from_one_address_is_stopped(make_client, accounts):
    client = make_client(access=AccessSettings(login_failures_per_account=100, login_failures_per_address=4))
    for name in ("admin-1", "viewer-1", "clinician-1", "nobody-at-all"):
        assert login(client, name, "wrong password!").status_code == 401
    assert login(client, "viewer-1", PASSWORD).status_code == 429
    # Bad API tokens count against the address too: guessing tokens is guessing passwords.
    assert client.get("/api/v1/history", headers={"Authorization": "Bearer pnm_guess"}).status_code == 429


def test_uploads_are_limited_per_account(make_client, accounts, xray_png):
    client = make_client(access=AccessSettings(predictions_per_minute=2))

    def upload(role: str):
        return client.post("/api/v1/predict", params={"heatmap": "false"}, headers=accounts[role].bearer,
                           files={"file": ("x.png", xray_png, "image/png")})

    assert [upload("integration").status_code for _ in range(2)] == [200, 200]
    refused = upload("integration")
    assert refused.status_code == 429 and "integration-1" in refused.json()["error"]["message"]
    assert upload("clinician").status_code == 200  # another account has its own budget
    assert client.get("/api/v1/history", headers=accounts["viewer"].bearer).json()["total"] == 3


def test_sliding_window_forgets_events_older_than_its_window():
    now = [1000.0]
    window = SlidingWindow(limit=2, window_s=60.0, clock=lambda: now[0])
    assert window.take("a") == 0.0 and window.take("a") == 0.0
    assert window.take("a") == 60.0
    assert window.retry_after("b") == 0.0
    now[0] += 30.0
    assert window.retry_after("a") == 30.0
    now[0] += 30.0
    assert window.take("a") == 0.0


def test_limits_must_be_sensible():
    import pytest

    for bad in ({"login_failures_per_account": 0}, {"session_idle_minutes": 0}, {"predictions_per_minute": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            AccessSettings(**bad)
