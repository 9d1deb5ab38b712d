"""Every error leaves the service as ``{"error": {"status": N, "message": "..."}}``, never a traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

log = logging.getLogger("pneumo.service")


class ApiError(HTTPException):
    """An error with a status and a message meant for the caller (raised by the service's own code)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=status, detail=message, headers=headers)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "message": message}}, status_code=status, headers=headers)


def describe_validation(exc: RequestValidationError) -> str:
    """Turn pydantic's error list into one sentence a person can act on."""
    parts = []
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ())]
        where, name = (loc[0], ".".join(loc[1:])) if len(loc) > 1 else ("request", ".".join(loc))
        kind = {"body": "form field", "query": "query parameter", "path": "path parameter",
                "header": "header"}.get(where, where)
        if error.get("type") == "missing":
            parts.append(f"missing {kind} {name!r}")
        else:
            parts.append(f"{kind} {name!r}: {error.get('msg', 'invalid value')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        message = describe_validation(exc)
        if request.url.path.endswith("/predict") and "'file'" in message:
            message += " (send the image as multipart/form-data in the field 'file': JPEG, PNG or DICOM)"
        return error_response(422, message)

    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        # The details go to the server log only; the caller learns nothing about the internals.
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal server error; the details are in the server log")

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected_error)
