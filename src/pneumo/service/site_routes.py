"""The site's own figures on the page (``GET /api/v1/site/report``) and for Prometheus (``GET /metrics``)."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request, Response

from pneumo.service.auth import record_action
from pneumo.service.context import Context
from pneumo.service.metrics import CONTENT_TYPE
from pneumo.service.site_data import site_report

router = APIRouter()


@router.get("/api/v1/site/report", summary="The site's figures: agreement with reviewers, local accuracy, drift")
async def report(context: Context, request: Request) -> dict[str, Any]:
    """What `pneumo site report --format json` prints, for the history this server keeps."""
    body = await anyio.to_thread.run_sync(site_report, context.history.engine)
    record_action(request, "site.report")
    return {**body, "serving": context.model.to_dict()}


@router.get("/metrics", include_in_schema=False)
def metrics(context: Context) -> Response:
    """Prometheus text format: this server's counters since it started (see pneumo.service.metrics)."""
    return Response(context.metrics.exposition(), media_type=CONTENT_TYPE)
