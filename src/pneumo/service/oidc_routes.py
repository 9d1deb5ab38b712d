"""The two routes of single sign-on: off to the provider, and back with a code that becomes a page session."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse

from pneumo.service.account_routes import failed_login, set_session_cookie, throttled
from pneumo.service.auth import SESSION_COOKIE, client_address
from pneumo.service.audit import AuditEvent
from pneumo.service.context import Context, ServiceContext
from pneumo.service.errors import ApiError
from pneumo.service.oidc import OidcClient, OidcError

STATE_COOKIE = "pneumo_oidc_state"
router = APIRouter(prefix="/api/v1/oidc")


def _client(context: ServiceContext) -> OidcClient:
    if context.oidc is None:
        raise ApiError(404, "single sign-on is not configured on this server (pneumo serve --oidc-issuer ...)")
    return context.oidc


@router.get("/login", summary="Sign in with the hospital's identity provider (a redirect to it)")
def oidc_login(context: Context) -> RedirectResponse:
    state, url = _client(context).start()
    response = RedirectResponse(url, status_code=303)
    # Lax, not Strict: the browser comes back from the provider's site, and must bring this cookie along.
    response.set_cookie(STATE_COOKIE, state, httponly=True, samesite="lax", max_age=600, path="/api/v1/oidc",
                        secure=context.settings.access.secure_cookies)
    return response


@router.get("/callback", summary="Where the provider sends the browser back: the code becomes a session")
def oidc_callback(request: Request, context: Context, code: Annotated[str, Query(max_length=4096)],
                  state: Annotated[str, Query(max_length=256)]) -> RedirectResponse:
    client = _client(context)
    address = client_address(request) or "unknown"
    wait = throttled(context, "", address)
    if wait:
        raise ApiError(429, f"too many failed sign-ins from {address}; retry in {wait:.0f} s",
                       {"Retry-After": str(int(wait) + 1)})
    # The state must be the one this browser was given: a callback link sent by someone else is refused.
    if not secrets.compare_digest(request.cookies.get(STATE_COOKIE, "").encode(), state.encode()):
        reason = "single sign-on started in another browser"
        raise failed_login(context, "", address, reason, f"{reason}; start again from the page")
    try:
        name = client.finish(state, code)
    except OidcError as exc:
        raise failed_login(context, "", address, f"single sign-on: {exc}", f"single sign-on refused: {exc}") from exc
    account = context.accounts.get(name)
    if account is None or account.disabled or account.role == "integration":
        reason = "single sign-on for no enabled person's account"
        raise failed_login(context, name, address, reason, f"{reason}: ask an admin for one")
    session_id, _ = context.sessions.start(account, replacing=request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/", status_code=303)
    set_session_cookie(response, context, session_id)
    response.delete_cookie(STATE_COOKIE, path="/api/v1/oidc")
    context.audit.record(AuditEvent(actor=account.name, role=account.role, action="login", address=address,
                                    detail="single sign-on"))
    return response
