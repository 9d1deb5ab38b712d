"""``create_app(settings)``: the FastAPI application that serves the API and the offline web page."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pneumo import DISCLAIMER, __version__
from pneumo.bundle import BundleError, resolve_model
from pneumo.dicom.peers import is_loopback
from pneumo.optional import require_extra
from pneumo.service import account_routes, oidc_routes, review_routes, site_routes
from pneumo.service.accounts import AccountStore
from pneumo.service.api import API_PREFIX, router
from pneumo.service.audit import AuditEvent, AuditTrail, DicomArrivalAudit
from pneumo.service.auth import authorize
from pneumo.service.context import Limits, ServiceContext
from pneumo.service.errors import install_error_handlers
from pneumo.service.guards import HostOriginGuard, QueueLimitMiddleware, trusted_host_names
from pneumo.service.history import SqlHistory, open_history
from pneumo.service.metrics import ServiceMetrics
from pneumo.service.oidc import OidcClient
from pneumo.service.reviews import ReviewStore
from pneumo.service.sessions import SessionStore
from pneumo.service.settings import ServiceSettings
from pneumo.service.uploads import MULTIPART_OVERHEAD, BodyLimitMiddleware
from pneumo.site.identity import ModelIdentity, identify

STATIC_DIR = Path(__file__).parent / "static"
log = logging.getLogger("pneumo.service")

# The page loads nothing from elsewhere; the heatmap and preview are data:/blob: URLs.
PAGE_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


def page_csp(frame_ancestors: tuple[str, ...] = ()) -> str:
    """The page's policy; ``frame_ancestors`` (checked origins) replace ``'none'`` when the page is to be framed."""
    if not frame_ancestors:
        return PAGE_CSP
    return PAGE_CSP.replace("frame-ancestors 'none'", f"frame-ancestors {' '.join(frame_ancestors)}")


class SecurityHeadersMiddleware:
    """nosniff and no-referrer everywhere; a strict CSP on the web page (Swagger UI's ``/docs`` page has an
    inline script, so not there). With ``frame_ancestors``, the CSP lets those origins frame the page and
    ``X-Frame-Options`` (which cannot name another origin) is left out."""

    def __init__(self, app: ASGIApp, frame_ancestors: tuple[str, ...] = ()) -> None:
        self.app = app
        self.csp = page_csp(frame_ancestors)
        self.deny_frames = not frame_ancestors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        strict = path == "/" or path.startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
                if strict:
                    headers.setdefault("Content-Security-Policy", self.csp)
                    if self.deny_frames:
                        headers.setdefault("X-Frame-Options", "DENY")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _add_offline_docs(app: FastAPI) -> None:
    """The OpenAPI schema at ``/openapi.json`` and its page at ``/docs`` (routes of their own, so the role
    check runs on them too), with Swagger UI served from the installed package, so it works offline
    (FastAPI's default page loads it from a CDN)."""
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs-assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/openapi.json", include_in_schema=False)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="pneumo API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png")


def load_predictor(settings: ServiceSettings) -> Any:
    from pneumo.inference.predictor import Predictor

    return Predictor.load(settings.model, backend=settings.backend, device=settings.device)


def build_dicom_node(settings: ServiceSettings, predictor: Any, history: Any, model: ModelIdentity,
                     metrics: ServiceMetrics) -> Any:
    """The DICOM node sharing this app's Predictor and history (started and stopped with the app); each
    arrival it records leaves an audit row in the same transaction."""
    require_extra("dicom", needed_for="--dicom-port")
    from pneumo.dicom.node import DicomNode
    return DicomNode(settings.dicom, predictor, DicomArrivalAudit(history, model, metrics))


def create_app(settings: ServiceSettings, *, predictor: Any | None = None) -> FastAPI:
    """Load the model once and open the history store, then wire routes, errors, limits and the page.

    ``predictor`` lets a caller that already holds a loaded Predictor share it instead of loading again.
    """
    if predictor is None:
        predictor = load_predictor(settings)
    bundle_dir: Path | None = getattr(predictor, "bundle_dir", None)
    if bundle_dir is None:
        try:
            bundle_dir = resolve_model(settings.model)
        except BundleError:
            bundle_dir = None  # an ONNX file given directly: no bundle directory, no MODEL_CARD.md
    history = open_history(settings.database_url)
    context = build_context(settings, predictor, history, bundle_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if context.dicom is not None:
            context.dicom.start()
        try:
            yield
        finally:
            if context.dicom is not None:
                context.dicom.stop()
            history.close()

    # Every route runs ``authorize`` (the role table in pneumo.service.roles); FastAPI's own /openapi.json
    # and /docs would not, so they are replaced by routes that do.
    app = FastAPI(title="pneumo", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None, dependencies=[Depends(authorize)],
                  description=f"Pneumonia detection on chest X-rays, with Grad-CAM. {DISCLAIMER}")
    app.state.service = context
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(account_routes.router)
    app.include_router(oidc_routes.router)
    app.include_router(review_routes.router)
    app.include_router(site_routes.router)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _add_offline_docs(app)

    _add_middleware(app, settings)
    log.info("pneumo service ready: model %s, history %s", context.model.describe(), history.kind)
    return app


def _add_middleware(app: FastAPI, settings: ServiceSettings) -> None:
    # add_middleware wraps: the last added runs first. CORS outermost so even a 413 carries its headers; the
    # host, origin and queue guards before the body limit, so what they refuse is never read.
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_upload_bytes + MULTIPART_OVERHEAD,
                       file_limit=settings.max_upload_bytes)
    app.add_middleware(QueueLimitMiddleware, path=f"{API_PREFIX}/predict", limit=settings.workers + settings.max_queued)
    app.add_middleware(HostOriginGuard, hosts=trusted_host_names(settings.host, settings.trusted_hosts),
                       origins=settings.cors_origins)
    app.add_middleware(SecurityHeadersMiddleware, frame_ancestors=settings.frame_ancestors)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "X-API-Key", "X-CSRF-Token", "Content-Type"])


def build_context(settings: ServiceSettings, predictor: Any, history: SqlHistory,
                  bundle_dir: Path | None) -> ServiceContext:
    """The stores on the history's database; refuses a server on a network address without accounts."""
    audit = AuditTrail(history.engine, history.write_lock)
    accounts = AccountStore(history.engine, history.write_lock)
    if settings.api_key is None and not is_loopback(settings.host) and not accounts.any_enabled():
        history.close()
        raise ValueError(f"refusing to serve on {settings.host} without accounts: anyone on the network could "
                         "read the history. Add one with `pneumo users add NAME --role ROLE --db URL`, or "
                         "listen on 127.0.0.1")
    sessions = SessionStore(history.engine, history.write_lock, settings.access.session_idle_minutes * 60.0)
    model = identify(bundle_dir, predictor.meta)
    metrics = ServiceMetrics(model)
    node = build_dicom_node(settings, predictor, history, model, metrics) if settings.dicom is not None else None
    audit.record(AuditEvent(actor="pneumo serve", action="model.load", detail=f"model {model.describe()}"))
    return ServiceContext(settings=settings, predictor=predictor, history=history, bundle_dir=bundle_dir,
                          accounts=accounts, sessions=sessions, audit=audit, limits=Limits.from_settings(settings),
                          reviews=ReviewStore(history.engine, history.write_lock), model=model, metrics=metrics,
                          oidc=OidcClient(settings.oidc) if settings.oidc is not None else None, dicom=node)
