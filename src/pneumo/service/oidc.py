"""Single sign-on with the hospital's OpenID Connect provider (``pip install 'pneumo[oidc]'``).

The authorization code flow: ``/api/v1/oidc/login`` sends the browser to the provider with a random ``state``
(also set in a short-lived cookie, so a callback started in another browser is refused) and ``nonce``; the
provider sends it back to ``/api/v1/oidc/callback`` with a code, which the server exchanges for an ID token
(client secret, server to server), whose signature (the provider's JWKS), issuer, audience, expiry and nonce
are checked with joserfc (authlib's JOSE library). The ``username_claim`` names an existing, enabled pneumo
account; that account signs in, with its role. The provider proves who someone is; pneumo decides what they
may do.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from pneumo.optional import require

STATE_TTL_S = 600.0  # a sign-in must come back from the provider within this long


@dataclass(frozen=True)
class OidcSettings:
    """``issuer``: the provider's URL (its ``/.well-known/openid-configuration`` is read at first use);
    ``redirect_url``: this server's callback as the provider knows it (``https://pneumo.../api/v1/oidc/callback``);
    ``username_claim``: the ID-token claim holding the pneumo account name."""

    issuer: str
    client_id: str
    client_secret: str
    redirect_url: str
    username_claim: str = "preferred_username"
    scope: str = "openid profile"

    def __post_init__(self) -> None:
        for name in ("issuer", "client_id", "client_secret", "redirect_url"):
            if not getattr(self, name):
                raise ValueError(f"OpenID Connect needs {name}; it is empty")
        for name in ("issuer", "redirect_url"):
            if not getattr(self, name).startswith(("https://", "http://")):
                raise ValueError(f"OpenID Connect {name} {getattr(self, name)!r} is not an http(s) URL")


class OidcError(Exception):
    """The sign-in cannot be trusted; the message says why (never a token)."""


class OidcClient:
    """One provider: discovery, the authorization URL, and the code exchanged for checked ID-token claims."""

    def __init__(self, settings: OidcSettings) -> None:
        self.settings = settings
        self._httpx = require("httpx", extra="oidc", needed_for="OpenID Connect sign-in")
        self._jwt = require("joserfc.jwt", extra="oidc", needed_for="OpenID Connect sign-in")
        self._jwk = require("joserfc.jwk", extra="oidc", needed_for="OpenID Connect sign-in")
        self._jose_errors = require("joserfc.errors", extra="oidc", needed_for="OpenID Connect sign-in")
        self._metadata: dict[str, Any] | None = None
        self._pending: dict[str, tuple[str, float]] = {}  # state -> (nonce, deadline)
        self._lock = threading.Lock()

    def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            url = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
            self._metadata = self._get_json(url)
        return self._metadata

    def start(self) -> tuple[str, str]:
        """(state, the provider's authorization URL) for one sign-in."""
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        now = time.monotonic()
        with self._lock:
            self._pending = {s: v for s, v in self._pending.items() if v[1] > now}
            self._pending[state] = (nonce, now + STATE_TTL_S)
        query = urlencode({"response_type": "code", "client_id": self.settings.client_id, "scope": self.settings.scope,
                           "redirect_uri": self.settings.redirect_url, "state": state, "nonce": nonce})
        return state, f"{self.metadata()['authorization_endpoint']}?{query}"

    def finish(self, state: str, code: str) -> str:
        """The account name the provider vouches for, after every check; OidcError otherwise."""
        with self._lock:
            nonce, deadline = self._pending.pop(state, (None, 0.0))
        if nonce is None or deadline < time.monotonic():
            raise OidcError("unknown or expired sign-in state; start again")
        claims = self._id_token_claims(code, nonce)
        name = claims.get(self.settings.username_claim)
        if not isinstance(name, str) or not name:
            raise OidcError(f"the ID token has no {self.settings.username_claim!r} claim")
        return name

    def _id_token_claims(self, code: str, nonce: str) -> dict[str, Any]:
        meta = self.metadata()
        response = self._httpx.post(meta["token_endpoint"], timeout=10.0,
                                    auth=(self.settings.client_id, self.settings.client_secret),
                                    data={"grant_type": "authorization_code", "code": code,
                                          "redirect_uri": self.settings.redirect_url})
        if response.status_code != 200:
            raise OidcError(f"the provider refused the code (HTTP {response.status_code})")
        id_token = response.json().get("id_token")
        if not id_token:
            raise OidcError("the provider sent no ID token")
        try:
            keys = self._jwk.KeySet.import_key_set(self._get_json(meta["jwks_uri"]))
            token = self._jwt.decode(id_token, keys, algorithms=["RS256", "ES256"])
            self._jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": meta["issuer"]}, aud={"essential": True, "value": self.settings.client_id},
                exp={"essential": True}, nonce={"essential": True, "value": nonce}).validate(token.claims)
        except (self._jose_errors.JoseError, ValueError) as exc:  # each means: do not trust this token
            raise OidcError(f"the ID token failed its checks ({type(exc).__name__})") from exc
        return token.claims

    def _get_json(self, url: str) -> dict[str, Any]:
        response = self._httpx.get(url, timeout=10.0)
        if response.status_code != 200:
            raise OidcError(f"{url} answered HTTP {response.status_code}")
        return response.json()
