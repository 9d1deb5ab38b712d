"""Single sign-on against a local OpenID Connect provider the test starts: the provider's code becomes a page
session of the matching account; a forged state, a bad signature, a wrong nonce or an unknown account do not."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import uvicorn

from pneumo.service.oidc import OidcSettings
from pneumo_testsupport.net import free_port

from .oidc_provider import CLIENT_ID, CLIENT_SECRET, Provider


@pytest.fixture
def provider():
    provider = Provider()
    port = free_port()
    provider.issuer = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(uvicorn.Config(provider.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield provider
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def sso_client(make_client, provider, accounts):
    settings = OidcSettings(issuer=provider.issuer, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                            redirect_url="http://127.0.0.1/api/v1/oidc/callback")
    return make_client(oidc=settings)


def sign_in_by_provider(client) -> "httpx.Response":
    """Follow the redirects by hand: pneumo -> provider -> pneumo's callback, as a browser would."""
    to_provider = client.get("/api/v1/oidc/login", follow_redirects=False)
    assert to_provider.status_code == 303
    back = httpx.get(to_provider.headers["location"], follow_redirects=False)
    assert back.status_code == 303
    callback = back.headers["location"].removeprefix("http://127.0.0.1")
    return client.get(callback, follow_redirects=False)


def test_the_provider_signs_in_the_matching_account(sso_client):
    assert sso_client.get("/api/v1/session").json()["single_sign_on"] is True
    landed = sign_in_by_provider(sso_client)
    assert landed.status_code == 303 and landed.headers["location"] == "/"
    assert "httponly" in landed.headers["set-cookie"].lower()
    session = sso_client.get("/api/v1/session").json()
    assert (session["name"], session["role"], session["via"]) == ("clinician-1", "clinician", "session")
    assert sso_client.get("/api/v1/history").status_code == 200


def test_a_callback_from_another_browser_is_refused(sso_client, provider):
    to_provider = sso_client.get("/api/v1/oidc/login", follow_redirects=False)
    back = httpx.get(to_provider.headers["location"], follow_redirects=False)
    sso_client.cookies.clear()  # the victim's browser never started this sign-in
    refused = sso_client.get(back.headers["location"].removeprefix("http://127.0.0.1"), follow_redirects=False)
    assert refused.status_code == 401
    assert sso_client.get("/api/v1/session").json()["signed_in"] is False


@pytest.mark.parametrize("tamper", ["rogue", "nonce"])
def test_an_id_token_failing_its_checks_signs_no_one_in(sso_client, provider, tamper):
    if tamper == "rogue":
        provider.rogue = True
    else:
        provider.nonce_override = "replayed-nonce"
    refused = sign_in_by_provider(sso_client)
    assert refused.status_code == 401 and "failed its checks" in refused.json()["error"]["message"]
    assert sso_client.get("/api/v1/session").json()["signed_in"] is False


def test_a_provider_user_without_an_account_signs_no_one_in(sso_client, provider):
    provider.user = "someone-else"
    assert sign_in_by_provider(sso_client).status_code == 401
    provider.user = "integration-1"  # tokens only, never the page
    assert sign_in_by_provider(sso_client).status_code == 401


def test_without_single_sign_on_its_routes_say_so(client):
    response = client.get("/api/v1/oidc/login", follow_redirects=False)
    assert response.status_code == 404 and "not configured" in response.json()["error"]["message"]
