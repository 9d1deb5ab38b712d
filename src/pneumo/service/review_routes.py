"""``POST /api/v1/history/{id}/review``: the reading clinician's conclusion on one result (the page and
integrations alike), stored with who and when, audited in the same transaction, and counted for /metrics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path as PathParam, Request
from pydantic import BaseModel, Field

from pneumo.service.auth import CurrentPrincipal, audit_event
from pneumo.service.context import Context
from pneumo.service.errors import ApiError
from pneumo.service.history_schema import REVIEW_LABELS
from pneumo.service.reviews import MAX_NOTE_CHARS, UnknownAnalysis

SQL_INT_MAX = 2**63 - 1
router = APIRouter(prefix="/api/v1")


class ReviewBody(BaseModel):
    label: str = Field(description=f"one of {', '.join(REVIEW_LABELS)}", max_length=32)
    note: str | None = Field(default=None, max_length=MAX_NOTE_CHARS, description="optional free text")


@router.post("/history/{entry_id}/review", summary="Record the reading clinician's conclusion on one result")
def review(entry_id: Annotated[int, PathParam(ge=1, le=SQL_INT_MAX)], body: ReviewBody, context: Context,
           request: Request, principal: CurrentPrincipal) -> dict[str, Any]:
    """Stores the review (a later one supersedes it; the trail is kept) and returns it with the whole trail."""
    if body.label not in REVIEW_LABELS:
        raise ApiError(422, f"unknown review label {body.label!r}; choose one of {list(REVIEW_LABELS)}")
    entry = context.history.get(entry_id)
    if entry is None:
        raise ApiError(404, f"no analysis with id {entry_id} in the history")
    source = "page" if principal is not None and principal.via == "session" else "api"
    try:
        stored = context.reviews.add(entry_id, body.label, reviewer=principal.name if principal else "unknown",
                                     role=principal.role if principal else None, source=source, note=body.note,
                                     audit=audit_event(request, "review", analysis_id=entry_id,
                                                       detail=f"label {body.label}"))
    except UnknownAnalysis as exc:
        raise ApiError(404, str(exc)) from exc
    context.metrics.review(body.label, source, entry.result.get("label"), entry.model_id or entry.model_version)
    return {"review": stored.to_dict(), "reviews": [r.to_dict() for r in context.reviews.trail(entry_id)]}
