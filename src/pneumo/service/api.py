"""The REST API under ``/api/v1``: predict, health, model card, history."""

from __future__ import annotations

import re
from functools import partial
from pathlib import PurePath
from time import perf_counter
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, File, Path as PathParam, Query, Request, UploadFile
from pydantic import BaseModel

from pneumo import DISCLAIMER, __version__
from pneumo.service.analysis import analyse
from pneumo.service.auth import CurrentPrincipal, audit_event, record_action
from pneumo.service.context import Context
from pneumo.service.errors import ApiError
from pneumo.service.reviews import Review
from pneumo.service.uploads import read_upload

API_PREFIX = "/api/v1"
SQL_INT_MAX = 2**63 - 1  # larger ids/offsets overflow the database driver (a 500); refuse them as 422
INTENDED_USE = (
    "Second reader for trained clinicians reviewing frontal (PA/AP) chest radiographs: flags images that may "
    "show pneumonia and shows which regions drove the model's output. The reference models are trained on "
    "paediatric films (ages 1-5) from one centre; performance on adults, lateral views and other hospitals' "
    "scanners is unknown unless the model card reports it. Never a substitute for a radiologist's read."
)
MODEL_CARD_FILES = ("MODEL_CARD.md", "model_card.md")
_PATH = re.compile(r"^(~|\.{1,2}[/\\]|/|[A-Za-z]:[/\\])")


class ErrorDetail(BaseModel):
    status: int
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody} for code in codes}


def check_prediction_rate(context: Context, principal: CurrentPrincipal) -> None:
    window = context.limits.predictions_by_account
    # Per account: the local caller of a loopback server without accounts is no account.
    if window is None or principal is None or principal.via == "local":
        return
    wait = window.take(principal.name)
    if wait:
        raise ApiError(429, f"{principal.name} sent more than {window.limit} uploads in a minute (the "
                            f"--predictions-per-minute limit); retry in {wait:.0f} s",
                       {"Retry-After": str(int(wait) + 1)})


router = APIRouter(prefix=API_PREFIX)


@router.post("/predict", responses=_errors(400, 401, 403, 413, 415, 422, 429, 500),
             summary="Analyse one chest X-ray (JPEG, PNG or DICOM)")
async def predict(
    file: Annotated[UploadFile, File(description="the image: JPEG, PNG or DICOM (type sniffed from the bytes)")],
    context: Context,
    request: Request,
    principal: CurrentPrincipal,
    heatmap: Annotated[bool, Query(description="compute the Grad-CAM overlay (slower)")] = True,
) -> dict[str, Any]:
    """Label (NORMAL, PNEUMONIA or UNKNOWN), calibrated probability, decision threshold, the reason for
    UNKNOWN, model version, timings, the Grad-CAM overlay as base64 PNG (null for UNKNOWN), and the id
    of the history row. No patient identifier, DICOM tag or file name is stored."""
    started = perf_counter()
    check_prediction_rate(context, principal)
    upload = await read_upload(file, context.settings.max_upload_bytes)
    queued = perf_counter()
    work = partial(analyse, context.predictor, context.history, upload, with_heatmap=heatmap, model=context.model,
                   audit=audit_event(request, "predict"))
    body = await anyio.to_thread.run_sync(work, limiter=context.limiter)
    body["timing_ms"]["upload"] = round((queued - started) * 1000.0, 3)
    body["timing_ms"]["request"] = round((perf_counter() - started) * 1000.0, 3)
    context.metrics.prediction(body, "upload", perf_counter() - started)
    body["disclaimer"] = DISCLAIMER
    return body


@router.get("/health", summary="Liveness and the model version (nothing else: it needs no key)")
def health(context: Context) -> dict[str, Any]:
    # Open to anyone who reaches the port, so it names no host, port, AE title, path or limit.
    return {"status": "ok", "model_version": context.predictor.meta.version}


@router.get("/status", responses=_errors(401),
            summary="What runs where: auth, database, limits, the DICOM node")
def status(context: Context, principal: CurrentPrincipal) -> dict[str, Any]:
    return {"status": "ok", "pneumo_version": __version__, "model_version": context.predictor.meta.version,
            "model": context.model.to_dict(),
            "auth": "off" if principal is not None and principal.via == "local" else "on",
            "database": context.history.kind,
            "max_upload_bytes": context.settings.max_upload_bytes, "workers": context.settings.workers,
            "max_queued": context.settings.max_queued,
            "dicom": context.dicom.summary() if context.dicom is not None else None}


@router.get("/model", summary="Model card: architecture, classes, threshold, calibration, metrics, intended use")
def model_card(context: Context) -> dict[str, Any]:
    meta = context.predictor.meta
    card_text = None
    for name in MODEL_CARD_FILES:
        if context.bundle_dir is not None and (context.bundle_dir / name).is_file():
            card_text = (context.bundle_dir / name).read_text(encoding="utf-8", errors="replace")
            break
    return without_paths({
        "arch": meta.arch, "version": meta.version, "identity": context.model.to_dict(),
        "description": meta.description, "created": meta.created,
        "classes": meta.classes, "class_names": list(meta.class_names), "image_size": meta.preprocess.image_size,
        "threshold": meta.threshold, "temperature": meta.temperature, "metrics": meta.metrics,
        "calibration": meta.calibration, "gate": meta.gate,
        "gate_status": getattr(context.predictor, "gate_status", None), "data_fingerprint": meta.data_fingerprint,
        "pneumo_version": meta.pneumo_version, "intended_use": INTENDED_USE, "disclaimer": DISCLAIMER,
        "model_card": card_text,
    })


def without_paths(value: Any) -> Any:
    """``value`` with every filesystem path (absolute, ``~``, ``./``, ``../`` or a drive) cut to its last
    part: the bundle records where its data lay on the training machine, which is no one's business."""
    if isinstance(value, dict):
        return {key: without_paths(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_paths(item) for item in value]
    if isinstance(value, str) and _PATH.match(value):
        return PurePath(value.replace("\\", "/")).name
    return value


@router.get("/history", responses=_errors(401, 403, 422), summary="Earlier analyses, newest first")
def history_list(context: Context, request: Request, limit: Annotated[int, Query(ge=1, le=200)] = 20,
                 offset: Annotated[int, Query(ge=0, le=SQL_INT_MAX)] = 0) -> dict[str, Any]:
    items = context.history.recent(limit=limit, offset=offset)
    latest = context.reviews.latest([item.id for item in items])
    record_action(request, "list", detail=f"{len(items)} items from offset {offset}")
    return {"items": [with_review(item.summary(), latest.get(item.id)) for item in items],
            "total": context.history.count(), "limit": limit, "offset": offset}


@router.get("/history/{entry_id}", responses=_errors(401, 403, 404, 422),
            summary="One earlier analysis, with its heatmap")
def history_item(entry_id: Annotated[int, PathParam(ge=1, le=SQL_INT_MAX)], context: Context,
                 request: Request) -> dict[str, Any]:
    entry = context.history.get(entry_id)
    if entry is None:
        raise ApiError(404, f"no analysis with id {entry_id} in the history")
    # Committed before the answer leaves: a result seen is a result recorded.
    record_action(request, "view", analysis_id=entry_id)
    trail = context.reviews.trail(entry_id)
    return {**with_review(entry.to_dict(), trail[-1] if trail else None), "reviews": [r.to_dict() for r in trail]}


def with_review(item: dict[str, Any], review: Review | None) -> dict[str, Any]:
    """A history item with the review that counts (the latest; null when nobody reviewed it)."""
    return {**item, "review": review.to_dict() if review is not None else None}
