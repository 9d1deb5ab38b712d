"""Security of the service: API key on predict and history, upload limit, content sniffing, and no
request path that reaches files outside the service's own folders."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from pathlib import Path

import anyio
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from pneumo.service import ServiceSettings, create_app
from pneumo.service.settings import AccessSettings

from pneumo_testsupport.corpus import xray_like

KEY = "s3cret-key-for-tests"


def png_bytes(side: int = 64, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(xray_like(np.random.default_rng(seed), side, side)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def secured(session_bundle: Path, tmp_path_factory: pytest.TempPathFactory):
    # Many wrong keys from one test client: the per-address sign-in throttle (tested on its own) is raised.
    settings = ServiceSettings(model=str(session_bundle), data_dir=tmp_path_factory.mktemp("secured"), api_key=KEY,
                               max_upload_bytes=40_000, access=AccessSettings(login_failures_per_address=10_000))
    with TestClient(create_app(settings), raise_server_exceptions=False, base_url="http://127.0.0.1") as client:
        yield client


def predict(client: TestClient, data: bytes, headers: dict | None = None, name: str = "x.png",
            content_type: str = "image/png"):
    return client.post("/api/v1/predict", params={"heatmap": "false"}, headers=headers or {},
                       files={"file": (name, data, content_type)})


# --- API key -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [{}, {"X-API-Key": ""}, {"X-API-Key": "wrong"}, {"X-API-Key": KEY + "x"},
                                     {"X-API-Key": KEY[:-1]}, {"X-API-Key": KEY.upper()},
                                     {"Authorization": f"Bearer {KEY}"}, {"X-Api-Key-Other": KEY},
                                     {"X-API-Key": "é".encode() * 10}])
def test_missing_or_wrong_key_is_401_everywhere(secured: TestClient, headers: dict) -> None:
    responses = [predict(secured, png_bytes(), headers), secured.get("/api/v1/history", headers=headers),
                 secured.get("/api/v1/history/1", headers=headers)]
    for response in responses:
        assert response.status_code == 401, (response.request.url, response.text)
        assert response.json()["error"]["message"] and KEY not in response.text


def test_key_in_the_query_string_is_not_accepted(secured: TestClient) -> None:
    assert secured.get("/api/v1/history", params={"X-API-Key": KEY, "api_key": KEY}).status_code == 401


def test_right_key_opens_predict_and_history(secured: TestClient) -> None:
    headers = {"X-API-Key": KEY}
    created = predict(secured, png_bytes(), headers)
    assert created.status_code == 200, created.text
    entry = secured.get(f"/api/v1/history/{created.json()['id']}", headers=headers)
    assert entry.status_code == 200 and entry.json()["id"] == created.json()["id"]
    assert secured.get("/api/v1/history", headers=headers).json()["total"] >= 1


def test_rejected_requests_leave_no_history(secured: TestClient) -> None:
    headers = {"X-API-Key": KEY}
    before = secured.get("/api/v1/history", headers=headers).json()["total"]
    for _ in range(3):
        assert predict(secured, png_bytes(), {"X-API-Key": "wrong"}).status_code == 401
        assert predict(secured, b"<html></html>", headers).status_code == 415
    assert secured.get("/api/v1/history", headers=headers).json()["total"] == before


# --- upload limit and content sniffing ------------------------------------------------------------------

def test_upload_over_the_limit_is_413(secured: TestClient) -> None:
    big = png_bytes(side=400)  # well over the 40 kB limit of this app
    assert len(big) > 40_000
    response = predict(secured, big, {"X-API-Key": KEY})
    assert response.status_code == 413 and "limit" in response.json()["error"]["message"]


def test_streamed_body_over_the_limit_is_cut_off(secured: TestClient) -> None:
    """No Content-Length (chunked): the limit holds while the body streams in."""
    boundary = "pneumoboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode()

    def body():
        yield head + png_bytes()[:16]
        for _ in range(200):  # 200 x 64 kB = 12.8 MB, far past the limit
            yield b"\0" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    response = secured.post("/api/v1/predict", content=body(), headers={
        "X-API-Key": KEY, "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 413, response.text[:300]


def test_declared_content_length_over_the_limit_is_refused_up_front(secured: TestClient) -> None:
    response = secured.post("/api/v1/predict", content=b"x" * 10, headers={
        "X-API-Key": KEY, "Content-Type": "multipart/form-data; boundary=b", "Content-Length": str(10**12)})
    assert response.status_code in (400, 413), response.text[:300]


@pytest.mark.parametrize("data,name,content_type,status", [
    (b"<!DOCTYPE html><script>alert(1)</script>", "x.png", "image/png", 415),
    (b"GIF89a" + b"\0" * 100, "x.jpeg", "image/jpeg", 415),
    (b"%PDF-1.4\n", "x.dcm", "application/dicom", 415),
    (b"MZ\x90\x00" + b"\0" * 200, "x.png", "image/png", 415),
    (b"", "x.png", "image/png", 400),
    ("png-as-jpeg", "x.jpeg", "image/jpeg", 200),  # the bytes decide, not the name or declared type
    ("png-as-text", "x.txt", "text/plain", 200),
])
def test_content_is_sniffed_not_trusted(secured: TestClient, data, name: str, content_type: str,
                                        status: int) -> None:
    payload = png_bytes() if isinstance(data, str) else data
    response = predict(secured, payload, {"X-API-Key": KEY}, name=name, content_type=content_type)
    assert response.status_code == status, response.text[:300]
    if status == 200:
        assert response.json()["file_type"] == "png"


# --- paths ----------------------------------------------------------------------------------------------

TRAVERSALS = [
    "/static/../pyproject.toml", "/static/../../pyproject.toml", "/static/../../../../etc/passwd",
    "/static/..%2f..%2fpyproject.toml", "/static/%2e%2e/%2e%2e/pyproject.toml", "/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/static//etc/passwd", "/static/%2fetc%2fpasswd", "/static/....//....//etc/passwd", "/static/..\\..\\pyproject.toml",
    "/static/%252e%252e/%252e%252e/etc/passwd", "/static/app.js/../../settings.py", "/static/%00../../etc/passwd",
    "/api/v1/history/../../etc/passwd", "/api/v1/history/..%2f..%2fetc%2fpasswd", "/api/v1/history/%2e%2e",
    "/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/api/v1/../../../etc/passwd", "//etc/passwd",
    "/api/v1/history/../x", "/api/v1/history/..%2fx", "/api/v1/history/%2e%2e%2fx", "/api/v1/history/1/../../x",
]
SECRETS = ("root:x:", "[project]", "[build-system]", "ServiceSettings", "import ")


def raw_get(app, raw_path: str) -> tuple[int, bytes]:
    """Send ``raw_path`` to the ASGI app exactly as written (an HTTP client would normalise ``..``)."""
    from urllib.parse import unquote

    path, _, query = raw_path.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": unquote(path), "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
             "headers": [(b"host", b"127.0.0.1"), (b"x-api-key", KEY.encode())], "server": ("127.0.0.1", 80),
             "client": ("127.0.0.1", 1)}
    sent: list[dict] = []
    requested = False

    async def receive():
        # The body once, then block like a client that stays connected: a receive that kept answering at
        # once would starve FileResponse, which polls receive() for a disconnect while it streams.
        nonlocal requested
        if requested:
            await anyio.sleep_forever()
        requested = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    anyio.run(app, scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


@pytest.mark.parametrize("raw_path", TRAVERSALS)
def test_no_path_reads_outside_the_service_folders(secured: TestClient, raw_path: str) -> None:
    status, body = raw_get(secured.app, raw_path)
    assert status in (400, 401, 403, 404, 405, 422), (raw_path, status, body[:200])
    text = body.decode("latin-1")
    assert not any(secret in text for secret in SECRETS), (raw_path, text[:300])
    if text.startswith("{"):
        assert "error" in json.loads(text) or "detail" in json.loads(text)


def test_static_files_still_served(secured: TestClient) -> None:
    """The traversal checks above mean something only if the static route works at all."""
    status, body = raw_get(secured.app, "/static/app.js")
    assert status == 200 and len(body) > 100


# --- file system access ------------------------------------------------------------------------------------

UPLOAD_NAMES = ["../../etc/passwd", "../../../../tmp/pneumo-pwned.png", "/etc/passwd", "..\\..\\win.ini",
                "%2e%2e%2f%2e%2e%2fpneumo-pwned.png", "x/../../../pneumo-pwned.png", "~/.ssh/id_rsa",
                "a" * 4096 + ".png", "CON", ".", ""]
_opened: list[str] | None = None  # filled by the audit hook while a test records


def _audit(event: str, args: tuple) -> None:
    if _opened is not None and event == "open" and isinstance(args[0], (str, bytes)):
        _opened.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # audit hooks cannot be removed: it records only inside ``recording_opens``


@contextlib.contextmanager
def recording_opens():
    global _opened
    _opened = []
    try:
        yield _opened
    finally:
        _opened = None


def test_request_input_never_opens_a_file_outside_the_service_folders(session_bundle: Path, tmp_path: Path) -> None:
    """Every file opened while hostile names and paths are served lies in the data folder, the static folder
    or the model bundle (recorded with a Python audit hook, so any ``open`` anywhere in the process counts)."""
    from pneumo.service.app import STATIC_DIR

    data_dir = tmp_path / "data"
    settings = ServiceSettings(model=str(session_bundle), data_dir=data_dir, api_key=KEY)
    allowed = [data_dir.resolve(), STATIC_DIR.resolve(), session_bundle.resolve()]
    headers = {"X-API-Key": KEY}
    with TestClient(create_app(settings), raise_server_exceptions=False, base_url="http://127.0.0.1") as client:
        # Warm every route once first, so lazy imports (which open .py files) happen outside the recording.
        assert predict(client, png_bytes(), headers).status_code == 200
        assert client.get("/api/v1/history/1", headers=headers).status_code == 200
        assert raw_get(client.app, "/static/app.js")[0] == 200
        with recording_opens() as opened:
            for index, name in enumerate(UPLOAD_NAMES):
                response = predict(client, png_bytes(seed=index + 1), headers, name=name)
                if name == "":  # a part without a file name is a plain form field, not a file
                    assert response.status_code == 422 and response.json()["error"]["message"]
                    continue
                assert response.status_code == 200, (name[:40], response.text[:300])
                row = client.get(f"/api/v1/history/{response.json()['id']}", headers=headers)
                assert row.status_code == 200
                if len(name) > 4:  # the file name is never stored or echoed
                    assert name not in response.text and name not in row.text
            for raw_path in TRAVERSALS:
                assert raw_get(client.app, raw_path)[0] != 200, raw_path
            assert raw_get(client.app, "/static/app.js")[0] == 200  # proof that the recording sees opens
    assert str(STATIC_DIR / "app.js") in opened, opened
    outside = sorted({path for path in opened
                      if not any(Path(path).resolve().is_relative_to(root) for root in allowed)})
    assert not outside, f"files opened outside the service folders: {outside}"
    assert sorted(p.name for p in data_dir.iterdir()) <= ["history.sqlite3", "history.sqlite3-shm",
                                                          "history.sqlite3-wal"]
    assert not list(Path("/tmp").glob("pneumo-pwned*")) and not list(tmp_path.rglob("*pwned*"))
