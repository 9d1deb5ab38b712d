"""The body limit is enforced while streaming: the server stops reading soon after the limit."""

from __future__ import annotations

import asyncio
import json

import pytest

from pneumo.service.uploads import BodyLimitMiddleware, BodyTooLarge


def run_middleware(chunks: list[bytes], limit: int, headers: list[tuple[bytes, bytes]] = ()):
    """Drive the middleware with an app that reads the whole body; return (reads, sent messages, error)."""
    reads = 0
    sent: list[dict] = []

    async def receive():
        nonlocal reads
        reads += 1
        index = reads - 1
        return {"type": "http.request", "body": chunks[index], "more_body": index < len(chunks) - 1}

    async def send(message):
        sent.append(message)

    async def app(scope, receive, send):
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = BodyLimitMiddleware(app, max_body_bytes=limit, file_limit=limit)
    scope = {"type": "http", "method": "POST", "path": "/api/v1/predict", "headers": list(headers)}
    try:
        asyncio.run(middleware(scope, receive, send))
    except BodyTooLarge as exc:
        return reads, sent, exc
    return reads, sent, None


def test_stops_reading_once_over_the_limit():
    chunks = [b"x" * 1000] * 100  # 100 kB offered against a 2.5 kB limit
    reads, sent, error = run_middleware(chunks, limit=2500)
    assert isinstance(error, BodyTooLarge) and error.status_code == 413
    assert reads == 3, "the body must be cut off at the first chunk past the limit, not drained"
    assert not sent


def test_declared_content_length_over_the_limit_is_refused_before_reading():
    reads, sent, error = run_middleware([b"x" * 10], limit=100, headers=[(b"content-length", b"5000")])
    assert error is None and reads == 0
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"]["status"] == 413


@pytest.mark.parametrize("total", [0, 999, 1000])
def test_bodies_within_the_limit_pass(total):
    reads, sent, error = run_middleware([b"y" * total], limit=1000)
    assert error is None and sent[0]["status"] == 200


def test_real_server_cuts_off_a_large_streamed_upload(live_server):
    import httpx

    base = live_server(max_upload_bytes=100_000)
    sent = 0
    boundary = "b0undary"

    def body():
        nonlocal sent
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.png\"\r\n"
               "Content-Type: image/png\r\n\r\n").encode() + b"\x89PNG\r\n\x1a\n"
        for _ in range(400):  # 400 x 64 KiB = 25 MiB offered
            sent += 65536
            yield b"\0" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    try:
        response = httpx.post(f"{base}/api/v1/predict", content=body(), timeout=30,
                              headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    except httpx.TransportError:
        response = None  # the server may close the connection while the client is still sending
    if response is not None:
        assert response.status_code == 413
        assert response.json()["error"]["status"] == 413
    assert httpx.get(f"{base}/api/v1/history").json()["total"] == 0
