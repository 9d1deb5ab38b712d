"""Uploads: the size limit enforced while the body streams in, and the file type sniffed from its bytes.

The limit is checked twice: on the raw request body as each chunk arrives (so a 2 GB upload is cut off
after the first ~20 MB, before the multipart parser spools it to disk), and on the file part itself.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from fastapi import UploadFile
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pneumo.data.decode import sniff_format
from pneumo.service.errors import ApiError, error_response

# Multipart boundaries and part headers around the file; generous, so a file just under the limit passes.
MULTIPART_OVERHEAD = 64 * 1024
ACCEPTED_FORMATS = ("jpeg", "png", "dicom")
_CHUNK = 1 << 20


def too_large_message(limit: int) -> str:
    size = f"{limit / 1048576:.3g} MB" if limit >= 1048576 else f"{limit / 1024:.3g} KB"
    return f"upload is larger than the {size} limit ({limit} bytes); send a smaller image"


class BodyTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large_message(limit))


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_body_bytes``: up front from Content-Length, else while streaming."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, file_limit: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.file_limit = file_limit  # the limit people configured, for the message

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await error_response(413, too_large_message(self.file_limit))(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    # An HTTPException: FastAPI's body parsing re-raises it and the error handler answers 413.
                    raise BodyTooLarge(self.file_limit)
            return message

        await self.app(scope, limited_receive, send)


@dataclass(frozen=True)
class Upload:
    data: bytes
    sha256: str
    file_type: str


async def read_upload(upload: UploadFile, limit: int) -> Upload:
    """Read the file part in chunks, hashing as it goes; refuse it past ``limit`` or if it is not an image."""
    digest = hashlib.sha256()
    chunks: list[bytes] = []
    size = 0
    while chunk := await upload.read(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise ApiError(413, too_large_message(limit))
        digest.update(chunk)
        chunks.append(chunk)
    data = b"".join(chunks)
    if not data:
        raise ApiError(400, "the uploaded file is empty (0 bytes)")
    kind = sniff_format(data[:256])
    if kind not in ACCEPTED_FORMATS:
        # The declared content type and the file name are not trusted; only the bytes decide.
        found = "unrecognised content" if kind == "unknown" else f"{kind.upper()} content"
        raise ApiError(415, f"unsupported file type: {found}; send a JPEG, PNG or DICOM image")
    return Upload(data=data, sha256=digest.hexdigest(), file_type=kind)
