"""Sign-in, sign-out and who-am-I for the page; the audit trail and the account list for admins."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from pneumo.service.accounts import Account
from pneumo.service.auth import (NO_ACCOUNT_ACTOR, SESSION_COOKIE, CurrentPrincipal, Principal, client_address,
                                 open_without_accounts, record_action)
from pneumo.service.audit import AuditEvent
from pneumo.service.context import Context, ServiceContext
from pneumo.service.errors import ApiError

SQL_INT_MAX = 2**63 - 1
router = APIRouter(prefix="/api/v1")


class Credentials(BaseModel):
    # Bounded, so a megabyte "password" costs no argon2 time and no memory.
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


def throttled(context: ServiceContext, name: str, address: str) -> float:
    limits = context.limits
    return max(limits.failed_logins_by_account.retry_after(name) if name else 0.0,
               limits.failed_logins_by_address.retry_after(address))


def failed_login(context: ServiceContext, name: str, address: str, reason: str,
                 message: str = "wrong name or password, or the account is disabled") -> ApiError:
    """Count and record a failed sign-in; the error to raise (``message``: what the caller may learn)."""
    if name:
        context.limits.failed_logins_by_account.hit(name)
    context.limits.failed_logins_by_address.hit(address)
    known = bool(name) and context.accounts.get(name) is not None
    # An unknown name is not written down: people type their password into the name field.
    context.audit.record(AuditEvent(actor=name if known else NO_ACCOUNT_ACTOR, action="login", address=address,
                                    outcome="failed", detail=reason if known else "no such account"))
    return ApiError(401, message)


def set_session_cookie(response: Response, context: ServiceContext, session_id: str) -> None:
    response.set_cookie(SESSION_COOKIE, session_id, httponly=True, samesite="strict", path="/",
                        secure=context.settings.access.secure_cookies)


@router.post("/login", summary="Sign in to the page: a new session cookie and its CSRF token")
def login(credentials: Credentials, request: Request, response: Response, context: Context) -> dict[str, Any]:
    address = client_address(request) or "unknown"
    wait = throttled(context, credentials.name, address)
    if wait:
        raise ApiError(429, f"too many failed sign-ins for this name or from {address}; retry in {wait:.0f} s",
                       {"Retry-After": str(int(wait) + 1)})
    account = context.accounts.check_password(credentials.name, credentials.password)
    if account is None:
        raise failed_login(context, credentials.name, address, "wrong password or disabled")
    if account.role == "integration":
        raise failed_login(context, credentials.name, address, "integration accounts use API tokens")
    # Always a fresh id, and the one the browser came with is dropped: no session fixation.
    session_id, csrf_token = context.sessions.start(account, replacing=request.cookies.get(SESSION_COOKIE))
    set_session_cookie(response, context, session_id)
    context.audit.record(AuditEvent(actor=account.name, role=account.role, action="login", address=address))
    return {"name": account.name, "role": account.role, "csrf_token": csrf_token}


@router.post("/logout", summary="Sign out: the session ends on the server and its cookie is cleared")
def logout(request: Request, response: Response, context: Context, principal: CurrentPrincipal) -> dict[str, Any]:
    session_id = request.cookies.get(SESSION_COOKIE)
    if principal is None or principal.via != "session" or not session_id:
        raise ApiError(400, "no page session to end (API tokens are revoked with `pneumo users revoke-token`)")
    context.sessions.end(session_id)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                           secure=context.settings.access.secure_cookies)
    record_action(request, "logout")
    return {"signed_out": True}


@router.get("/session", summary="Who is signed in (and the CSRF token of a page session)")
def session(context: Context, principal: CurrentPrincipal) -> dict[str, Any]:
    signed_in: Principal | None = principal
    return {"signed_in": signed_in is not None, "name": signed_in.name if signed_in else None,
            "role": signed_in.role if signed_in else None, "via": signed_in.via if signed_in else None,
            "csrf_token": signed_in.csrf_token if signed_in else None,
            "sign_in_required": not open_without_accounts(context), "single_sign_on": context.oidc is not None}


@router.get("/audit", summary="The audit trail, oldest first (admins)")
def audit(context: Context, request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
          offset: Annotated[int, Query(ge=0, le=SQL_INT_MAX)] = 0, actor: str | None = None,
          analysis_id: Annotated[int | None, Query(ge=1, le=SQL_INT_MAX)] = None) -> dict[str, Any]:
    items = context.audit.rows(limit=limit, offset=offset, actor=actor, analysis_id=analysis_id)
    total = context.audit.count(actor=actor, analysis_id=analysis_id)
    record_action(request, "audit.read", detail=f"{len(items)} events")
    return {"items": items, "total": total, "limit": limit, "offset": offset}


def _account_json(account: Account) -> dict[str, Any]:
    return {"name": account.name, "role": account.role, "disabled": account.disabled,
            "page_login": account.has_password, "created": account.created}


@router.get("/accounts", summary="Accounts and their roles (admins); never a password or token")
def accounts(context: Context) -> dict[str, Any]:
    return {"items": [_account_json(account) for account in context.accounts.list()]}
