"""Issue 28, "quiet by default": an open /health names nothing an attacker could use, /model shows no
internal path, only trusted Host headers are answered, cross-site state changes are refused, the history is
private to its owner, and a full worker queue answers 429 before reading the upload."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest
from starlette.types import Message

from pneumo.bundle import read_meta, write_meta
from pneumo.service.guards import QueueLimitMiddleware

from .test_api import assert_json_error, post_image


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_health_without_a_key_names_no_dicom_peer(make_client, tmp_path):
    from pneumo.dicom.settings import Destination, DicomSettings

    dicom = DicomSettings(port=0, spool_dir=tmp_path / "data" / "dicom", ae_title="PNEUMO_NODE",
                          allow=("TRUSTED_PACS",), forward=Destination.parse("ARCHIVE@10.20.30.40:11112"))
    client = make_client(dicom=dicom)
    text = client.get("/api/v1/health").text
    for secret in ("PNEUMO_NODE", "TRUSTED_PACS", "ARCHIVE", "10.20.30.40", "11112", "allow", "dicom", "sqlite"):
        assert secret not in text
    # The details are still there for whoever may see them (here auth is off, as for predictions).
    assert client.get("/api/v1/status").json()["dicom"]["allow"] == ["TRUSTED_PACS"]


def test_model_card_shows_no_internal_path(make_client, tiny_bundle):
    directory, meta = read_meta(tiny_bundle)
    meta.calibration = {"source": "/srv/hospital/data/kermany", "split": "val"}
    meta.metrics = {"data_root": "../shared/data/kermany", "note": "PA/AP views", "windows": "C:\\data\\x"}
    write_meta(directory, meta)
    body = make_client().get("/api/v1/model").json()
    assert body["calibration"] == {"source": "kermany", "split": "val"}
    assert body["metrics"] == {"data_root": "kermany", "note": "PA/AP views", "windows": "x"}


@pytest.mark.parametrize("host, status", [("127.0.0.1:8000", 200), ("localhost", 200), ("[::1]:8000", 200),
                                          ("evil.example", 400), ("127.0.0.1.evil.example", 400), ("", 400)])
def test_only_trusted_host_headers_are_answered(client, host, status):
    response = client.get("/api/v1/health", headers={"Host": host})
    assert response.status_code == status, response.text
    if status == 400:
        assert "--trusted-host" in assert_json_error(response, 400)


def test_trusted_hosts_are_configurable(make_client):
    # Off loopback the server needs accounts or a key (it refuses to start open on a network).
    named = make_client(trusted_hosts=("pneumo.hospital.example",), host="0.0.0.0", api_key="ward-key")
    assert named.get("/api/v1/health", headers={"Host": "pneumo.hospital.example:8000"}).status_code == 200
    assert named.get("/api/v1/health", headers={"Host": "0.0.0.0"}).status_code == 400  # a wildcard is no name
    bound = make_client(host="10.1.2.3", api_key="ward-key")
    assert bound.get("/api/v1/health", headers={"Host": "10.1.2.3:8000"}).status_code == 200
    anything = make_client(trusted_hosts=("*",))
    assert anything.get("/api/v1/health", headers={"Host": "whatever.example"}).status_code == 200


def test_cross_site_posts_are_refused_before_any_work(client, xray_jpeg):
    refused = post_image(client, xray_jpeg, headers={"Origin": "https://evil.example"})
    assert "cross-origin POST" in assert_json_error(refused, 403)
    assert_json_error(post_image(client, xray_jpeg, headers={"Origin": "null"}), 403)
    assert client.get("/api/v1/history").json()["total"] == 0
    # The server's own page (same origin as the Host), and clients that send no Origin, are served.
    assert post_image(client, xray_jpeg, headers={"Origin": "http://127.0.0.1"}).status_code == 200
    assert post_image(client, xray_jpeg).status_code == 200
    # Reading is not state-changing: a foreign Origin gets the answer but, CORS being closed, no browser access.
    assert client.get("/api/v1/health", headers={"Origin": "https://evil.example"}).status_code == 200


def test_configured_cors_origin_may_post(make_client, xray_jpeg):
    client = make_client(cors_origins=("https://pacs.hospital.example",))
    assert post_image(client, xray_jpeg, headers={"Origin": "https://pacs.hospital.example"}).status_code == 200
    assert_json_error(post_image(client, xray_jpeg, headers={"Origin": "https://evil.example"}), 403)


def test_history_files_are_private(make_client, xray_jpeg, tmp_path):
    client = make_client(data_dir=tmp_path / "new" / "data")
    assert post_image(client, xray_jpeg).status_code == 200
    database = tmp_path / "new" / "data" / "history.sqlite3"
    assert _mode(database) == 0o600
    for companion in (database.with_name("history.sqlite3-wal"), database.with_name("history.sqlite3-shm")):
        assert companion.exists() and _mode(companion) == 0o600
    assert _mode(database.parent) == 0o700 and _mode(database.parent.parent) == 0o700


def test_existing_history_file_is_made_private(make_client, tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    database = folder / "history.sqlite3"
    database.touch(mode=0o644)
    database.chmod(0o644)
    make_client(db_url=f"sqlite:///{database}")
    assert _mode(database) == 0o600


def test_full_queue_answers_429_before_the_body_is_read():
    release = asyncio.Event()
    started = asyncio.Event()

    async def slow_app(scope, receive, send):
        started.set()
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    guard = QueueLimitMiddleware(slow_app, path="/api/v1/predict", limit=1)
    scope = {"type": "http", "method": "POST", "path": "/api/v1/predict", "headers": []}

    async def scenario() -> tuple[list[Message], bool, list[Message]]:
        first_sent: list[Message] = []
        second_sent: list[Message] = []
        body_read = False

        async def never_read() -> Message:
            nonlocal body_read
            body_read = True
            return {"type": "http.request", "body": b"x" * 1000, "more_body": False}

        async def record(into: list[Message], message: Message) -> None:
            into.append(message)

        first = asyncio.create_task(guard(scope, never_read, lambda m: record(first_sent, m)))
        await started.wait()
        await guard(scope, never_read, lambda m: record(second_sent, m))
        release.set()
        await first
        return second_sent, body_read, first_sent

    second, body_read, first = asyncio.run(scenario())
    assert second[0]["status"] == 429 and not body_read
    assert b"busy" in second[1]["body"] and (b"retry-after", b"1") in second[0]["headers"]
    assert first[0]["status"] == 200 and guard.admitted == 0  # the slot is given back


def test_queue_limit_is_wired_from_the_settings(make_client, xray_jpeg):
    import threading

    client = make_client(workers=1, max_queued=0)
    predictor = client.app.state.service.predictor
    real_explain, inside, release = predictor.explain, threading.Event(), threading.Event()

    def blocked_explain(source, **options):
        inside.set()
        release.wait(10)
        return real_explain(source, **options)

    predictor.explain = blocked_explain
    results: list[int] = []
    worker = threading.Thread(target=lambda: results.append(post_image(client, xray_jpeg).status_code))
    worker.start()
    try:
        assert inside.wait(10)
        busy = post_image(client, xray_jpeg)
        assert "--max-queued" in assert_json_error(busy, 429)
    finally:
        release.set()
        worker.join(10)
    assert results == [200]
    assert post_image(client, xray_jpeg).status_code == 200  # the slot came back
