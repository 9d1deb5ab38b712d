"""Timestamps as the service stores them: UTC, ISO 8601 with milliseconds and a ``Z``."""

from __future__ import annotations

from datetime import datetime, timezone


def utc_now() -> str:
    return utc_text(datetime.now(timezone.utc))


def utc_text(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
