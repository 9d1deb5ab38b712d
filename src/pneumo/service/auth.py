"""Who is calling, and may they: the dependency every route runs (``authorize``), checked against
:data:`pneumo.service.roles.ROUTE_ROLES`.

A caller is identified, in this order, by ``Authorization: Bearer TOKEN`` (an account's API token),
``X-API-Key`` (the old shared ``PNEUMO_API_KEY``), or the page's session cookie. With no account in the
database and no old key, a server on loopback answers everyone as the local clinician ``local``.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from pneumo.service.accounts import Account
from pneumo.service.audit import AuditEvent
from pneumo.service.context import ServiceContext, get_context
from pneumo.service.errors import ApiError
from pneumo.service.guards import STATE_CHANGING
from pneumo.service.roles import PUBLIC, roles_for

SESSION_COOKIE = "pneumo_session"
CSRF_HEADER = "X-CSRF-Token"
LEGACY_KEY_ACTOR = "PNEUMO_API_KEY"  # the audit's name for callers holding the old shared key
LOCAL_ACTOR = "local"  # the audit's name for callers of a loopback server without accounts
NO_ACCOUNT_ACTOR = "unknown account"  # a failed login under a name that is no account (the name is not kept)
log = logging.getLogger("pneumo.service")

bearer = HTTPBearer(auto_error=False, description="an API token from `pneumo users token NAME`")
legacy_key = APIKeyHeader(name="X-API-Key", auto_error=False,
                          description="deprecated: the shared PNEUMO_API_KEY, acting as an integration account")


@dataclass(frozen=True)
class Principal:
    """The caller of one request. ``via``: token, legacy-key, session or local."""

    name: str
    role: str
    via: str
    csrf_token: str | None = None  # sessions only


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


def audit_event(request: Request, action: str, *, analysis_id: int | None = None, outcome: str = "ok",
                detail: str | None = None) -> AuditEvent:
    """An event for this request's caller (set by ``authorize``), to record or to commit with an action."""
    principal: Principal | None = getattr(request.state, "principal", None)
    return AuditEvent(actor=principal.name if principal else NO_ACCOUNT_ACTOR,
                      role=principal.role if principal else None, action=action, analysis_id=analysis_id,
                      address=client_address(request), outcome=outcome, detail=detail)


def record_action(request: Request, action: str, *, analysis_id: int | None = None, detail: str | None = None) -> None:
    """Record in the audit trail that this request's caller did ``action`` (one call, for any route)."""
    get_context(request).audit.record(audit_event(request, action, analysis_id=analysis_id, detail=detail))


def open_without_accounts(context: ServiceContext) -> bool:
    """No account and no old key: a loopback server answers everyone (checked per request, so the first
    account added with ``pneumo users add`` closes a running server at once)."""
    return (context.settings.api_key is None and context.loopback_only
            and not context.accounts.any_enabled())


def _from_account(account: Account, via: str, csrf_token: str | None = None) -> Principal:
    return Principal(account.name, account.role, via, csrf_token)


def _legacy(context: ServiceContext) -> Principal:
    if not context.legacy_key_noticed.is_set():
        context.legacy_key_noticed.set()
        log.warning("PNEUMO_API_KEY is deprecated: it acts as one shared integration account. Create accounts "
                    "with `pneumo users add` and tokens with `pneumo users token`, then unset it")
    return Principal(LEGACY_KEY_ACTOR, "integration", "legacy-key")


def _matches_legacy_key(context: ServiceContext, presented: str) -> bool:
    expected = context.settings.api_key
    # Constant-time comparison, so response timing does not leak how much of a guess was right.
    return expected is not None and secrets.compare_digest(presented.encode(), expected.encode())


def _reject_token(request: Request, context: ServiceContext, message: str) -> ApiError:
    address = client_address(request) or "unknown"
    wait = context.limits.failed_logins_by_address.retry_after(address)
    if wait:
        return ApiError(429, f"too many failed sign-ins from {address}; retry in {wait:.0f} s",
                        {"Retry-After": str(int(wait) + 1)})
    context.limits.failed_logins_by_address.hit(address)
    context.audit.record(AuditEvent(actor=NO_ACCOUNT_ACTOR, action="token.rejected", address=address,
                                    outcome="failed", detail=message))
    return ApiError(401, message, {"WWW-Authenticate": "Bearer"})


def identify(request: Request, context: ServiceContext, token: str | None, key: str | None) -> Principal | None:
    """The caller, or None when the request carries no credential (401 when it carries a bad one)."""
    if token is not None:
        account = context.accounts.account_for_token(token)
        if account is None:
            raise _reject_token(request, context, "invalid, expired or revoked API token (Authorization: Bearer)")
        return _from_account(account, "token")
    if key is not None and context.settings.api_key is not None:
        if not _matches_legacy_key(context, key):
            raise _reject_token(request, context, "wrong API key (X-API-Key header)")
        return _legacy(context)
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        session = context.sessions.find(session_id)
        if session is not None:
            return _from_account(session.account, "session", session.csrf_token)
    if open_without_accounts(context):
        return Principal(LOCAL_ACTOR, "clinician", "local")
    return None


def _check_csrf(request: Request, principal: Principal) -> None:
    # Cookies go with every request the browser sends; a header only with the page's own fetches.
    if principal.via != "session" or request.method not in STATE_CHANGING:
        return
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent or not secrets.compare_digest(sent.encode(), (principal.csrf_token or "").encode()):
        raise ApiError(403, f"missing or wrong CSRF token: a signed-in page must send the {CSRF_HEADER} header "
                            "it got at sign-in; reload the page")


def authorize(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
              key: Annotated[str | None, Security(legacy_key)]) -> Principal | None:
    """Run on every route: identify the caller and check the route's roles; 401, 403 or 429 otherwise."""
    context = get_context(request)
    path = request.scope["route"].path
    allowed = roles_for(request.method, path)
    if allowed is None:
        raise ApiError(403, f"{request.method} {path} is in no role's permissions (pneumo.service.roles)")
    token = credentials.credentials if credentials is not None else None
    principal = identify(request, context, token, key)
    request.state.principal = principal
    if allowed is PUBLIC:
        return principal
    if principal is None:
        raise ApiError(401, "missing credentials: sign in on the page, or send Authorization: Bearer TOKEN "
                            "(`pneumo users token NAME` makes one)", {"WWW-Authenticate": "Bearer"})
    if principal.role not in allowed:
        raise ApiError(403, f"the {principal.role} role may not {request.method} {path}; "
                            f"allowed: {', '.join(sorted(allowed))}")
    _check_csrf(request, principal)
    return principal


CurrentPrincipal = Annotated[Principal | None, Depends(authorize)]
