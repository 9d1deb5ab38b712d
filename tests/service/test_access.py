"""Every route of the API and the page, walked with each role (by API token and by page session) and with no
credential, against the route x role table in docs/service.md: no role gets an answer it should not see."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount

from pneumo.service.history_schema import ROLES
from pneumo.service.roles import ROUTE_ROLES, PUBLIC

from .accounts_support import PASSWORD

DOC = Path(__file__).resolve().parents[2] / "docs" / "service.md"
CALLERS = ("nobody", *ROLES)
PRIVATE_WORDS = ("image_sha256", '"heatmap"', '"actor"', '"page_login"')  # in results, audit rows, accounts
ROW = re.compile(r"^\| `(GET|POST) (\S+)` \| (yes|no) \| (yes|no) \| (yes|no) \| (yes|no) \| (yes|no) \|$")


def documented_table() -> dict[tuple[str, str], set[str]]:
    """(method, path) -> callers allowed, from the route x role table of docs/service.md."""
    table = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line.strip())
        if match:
            method, path, *cells = match.groups()
            table[(method, path)] = {caller for caller, cell in zip(CALLERS, cells) if cell == "yes"}
    assert len(table) >= 15, "the route x role table in docs/service.md was not found"
    return table


def app_routes(routes, prefix: str = "") -> set[tuple[str, str]]:
    """Every (method, path) the app answers: its routes, its included routers' (FastAPI keeps those as
    branches with the router and its prefix) and its mounts as ``/prefix/*``."""
    found = set()
    for route in routes:
        if isinstance(route, Mount):
            found.add(("GET", f"{prefix}{route.path}/*"))
        elif isinstance(route, APIRoute):
            found.update((method, prefix + route.path) for method in route.methods if method != "HEAD")
        elif hasattr(route, "original_router"):
            found |= app_routes(route.original_router.routes, prefix + route.include_context.prefix)
        else:
            raise AssertionError(f"a route of an unknown kind: {route!r}")
    return found


def test_the_documented_table_is_the_code_table_and_covers_every_route(client):
    table = documented_table()
    assert app_routes(client.app.routes) == set(table), "a route is missing from docs/service.md, or one is stale"
    for (method, path), roles in ROUTE_ROLES.items():
        expected = table[(method, path)]
        if roles is PUBLIC:
            assert expected == set(CALLERS), (method, path)
        else:
            assert expected == set(roles), (method, path)


def call(client: TestClient, method: str, path: str, entry_id: int, headers: dict[str, str], png: bytes):
    url = path.replace("{entry_id}", str(entry_id)).replace("/static/*", "/static/app.js")
    url = url.replace("/docs-assets/*", "/docs-assets/swagger-ui.css")
    if url == "/api/v1/predict":
        return client.post(url, params={"heatmap": "false"}, headers=headers, files={"file": ("x.png", png, "image/png")})
    if url == "/api/v1/login":
        # In a client of its own: the session it makes must not become the walking caller's.
        fresh = TestClient(client.app, base_url="http://127.0.0.1")
        return fresh.post(url, json={"name": "viewer-1", "password": PASSWORD}, headers=headers)
    if method == "POST":
        return client.post(url, headers=headers)
    return client.get(url, headers=headers)


def walk(client: TestClient, caller: str, headers: dict[str, str], entry_id: int, png: bytes) -> list[str]:
    wrong = []
    # Logout last: for a page session it ends the session the other calls use.
    for (method, path), allowed in sorted(documented_table().items(), key=lambda item: item[0][1] == "/api/v1/logout"):
        response = call(client, method, path, entry_id, headers, png)
        denied = response.status_code in (401, 403)
        if caller in allowed and denied:
            wrong.append(f"{caller} refused {response.status_code} on {method} {path}: {response.text[:120]}")
        if caller not in allowed and not denied:
            wrong.append(f"{caller} answered {response.status_code} on {method} {path}: {response.text[:120]}")
        if caller not in allowed and any(word in response.text for word in PRIVATE_WORDS):
            wrong.append(f"{caller} saw data on {method} {path}: {response.text[:120]}")
    return wrong


@pytest.fixture
def walked_app(make_client, accounts, xray_png):
    client = make_client()
    first = client.post("/api/v1/predict", headers=accounts["clinician"].bearer,
                        files={"file": ("x.png", xray_png, "image/png")})
    assert first.status_code == 200, first.text
    return client, first.json()["id"]


def test_every_route_with_each_role_by_token_and_with_none(walked_app, accounts, xray_png):
    client, entry_id = walked_app
    wrong = walk(client, "nobody", {}, entry_id, xray_png)
    for role, account in accounts.items():
        wrong += walk(client, role, account.bearer, entry_id, xray_png)
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("role", ["admin", "clinician", "viewer"])
def test_every_route_with_each_role_by_page_session(walked_app, accounts, xray_png, role):
    client, entry_id = walked_app
    page = TestClient(client.app, base_url="http://127.0.0.1")
    signed_in = page.post("/api/v1/login", json={"name": accounts[role].name, "password": PASSWORD})
    assert signed_in.status_code == 200, signed_in.text
    csrf = {"X-CSRF-Token": signed_in.json()["csrf_token"]}
    assert not walk(page, role, csrf, entry_id, xray_png)
    assert page.get("/api/v1/session").json()["signed_in"] is False  # the walk ended with logout


def test_integration_accounts_cannot_sign_in_on_the_page(make_client, accounts):
    client = make_client()
    response = client.post("/api/v1/login", json={"name": "integration-1", "password": PASSWORD})
    assert response.status_code == 401
    assert "set-cookie" not in response.headers


def test_old_api_key_acts_as_an_integration_account(make_client, accounts, xray_png, caplog):
    client = make_client(api_key="ward-7-shared-key")
    key = {"X-API-Key": "ward-7-shared-key"}
    wrong = walk(client, "integration", key, 1, xray_png)
    assert not wrong, "\n".join(wrong)
    assert client.get("/api/v1/session", headers=key).json()["name"] == "PNEUMO_API_KEY"
    notices = [r for r in caplog.records if "PNEUMO_API_KEY is deprecated" in r.getMessage()]
    assert len(notices) == 1  # once per server, not once per request


def test_without_accounts_loopback_answers_as_the_local_clinician_until_one_is_added(make_client, make_settings,
                                                                                    xray_png):
    from .accounts_support import add_accounts

    client = make_client()
    assert client.get("/api/v1/session").json() | {"csrf_token": None} == {
        "signed_in": True, "name": "local", "role": "clinician", "via": "local", "csrf_token": None,
        "sign_in_required": False, "single_sign_on": False}
    assert client.post("/api/v1/predict", files={"file": ("x.png", xray_png, "image/png")}).status_code == 200
    assert client.get("/api/v1/audit").status_code == 403  # the local clinician is no admin
    add_accounts(make_settings().database_url, ("admin",))  # the running server closes at once
    assert client.get("/api/v1/history").status_code == 401
    assert client.get("/api/v1/session").json()["sign_in_required"] is True


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::"])
def test_a_network_address_without_accounts_is_refused(make_settings, host):
    from pneumo.service import create_app

    with pytest.raises(ValueError, match=f"refusing to serve on {re.escape(host)} without accounts"):
        create_app(make_settings(host=host))


def test_a_network_address_with_accounts_starts_and_requires_them(make_client, accounts):
    client = make_client(host="0.0.0.0")
    assert client.get("/api/v1/history").status_code == 401
    assert client.get("/api/v1/history", headers=accounts["viewer"].bearer).status_code == 200
