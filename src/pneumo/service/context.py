"""What every request shares (``app.state.service``): settings, the Predictor, the stores and the limits."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import Depends, Request

from pneumo.dicom.peers import is_loopback
from pneumo.service.accounts import AccountStore
from pneumo.service.audit import AuditTrail
from pneumo.service.history import HistoryRepository
from pneumo.service.metrics import ServiceMetrics
from pneumo.service.oidc import OidcClient
from pneumo.service.reviews import ReviewStore
from pneumo.service.sessions import SessionStore
from pneumo.service.settings import ServiceSettings
from pneumo.service.throttle import SlidingWindow
from pneumo.site.identity import ModelIdentity


@dataclass
class Limits:
    """The abuse limits of one app (see AccessSettings)."""

    failed_logins_by_account: SlidingWindow
    failed_logins_by_address: SlidingWindow
    predictions_by_account: SlidingWindow | None  # None: no limit

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> "Limits":
        access = settings.access
        per_minute = access.predictions_per_minute
        return cls(SlidingWindow(access.login_failures_per_account, access.login_window_s),
                   SlidingWindow(access.login_failures_per_address, access.login_window_s),
                   SlidingWindow(per_minute, 60.0) if per_minute else None)


@dataclass
class ServiceContext:
    """The one loaded Predictor and which model it is, the history, reviews, accounts, sessions and audit trail
    on its database, and the counters /metrics shows."""

    settings: ServiceSettings
    predictor: Any
    history: HistoryRepository
    bundle_dir: Path | None
    accounts: AccountStore
    sessions: SessionStore
    audit: AuditTrail
    limits: Limits
    reviews: ReviewStore
    model: ModelIdentity
    metrics: ServiceMetrics
    oidc: OidcClient | None = None  # single sign-on, when configured
    dicom: Any = None  # the DICOM node (pneumo.dicom.node.DicomNode) when one runs in this process
    # Set once the deprecation of PNEUMO_API_KEY has been logged, so it is logged once per server.
    legacy_key_noticed: threading.Event = field(default_factory=threading.Event)
    _limiter: anyio.CapacityLimiter | None = field(default=None, repr=False)

    @property
    def loopback_only(self) -> bool:
        return is_loopback(self.settings.host)

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        # Created on first use: an anyio limiter needs a running event loop.
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.settings.workers)
        return self._limiter


def get_context(request: Request) -> ServiceContext:
    return request.app.state.service


Context = Annotated[ServiceContext, Depends(get_context)]
