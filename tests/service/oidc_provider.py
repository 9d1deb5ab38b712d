"""A throwaway OpenID Connect provider for the single sign-on tests: discovery, an authorization endpoint that
approves at once as ``user``, a token endpoint that checks the client and the code, and its JWKS. Signs with
its own RSA key, or (``rogue``) with another key under the same key id, to test that signatures are checked."""

from __future__ import annotations

import secrets
import time
from urllib.parse import urlencode

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import RedirectResponse
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

CLIENT_ID = "pneumo-test"
CLIENT_SECRET = "provider-shared-secret"


class Provider:
    def __init__(self) -> None:
        self.issuer = ""  # set once the server's port is known
        self.user = "clinician-1"
        self.rogue = False  # sign with a key the JWKS does not hold
        self.nonce_override: str | None = None
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
        self.other_key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
        self.codes: dict[str, tuple[str, str]] = {}  # code -> (nonce, user)
        self.app = self._build()

    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.get("/.well-known/openid-configuration")
        def discovery() -> dict:
            return {"issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
                    "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks"}

        @app.get("/authorize")
        def authorize(client_id: str, redirect_uri: str, state: str, nonce: str) -> RedirectResponse:
            if client_id != CLIENT_ID:
                raise HTTPException(400, "unknown client")
            code = secrets.token_urlsafe(16)
            self.codes[code] = (nonce, self.user)
            return RedirectResponse(f"{redirect_uri}?{urlencode({'code': code, 'state': state})}", status_code=303)

        @app.post("/token")
        def token(request: Request, code: str = Form(), grant_type: str = Form()) -> dict:
            import base64

            expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            if request.headers.get("authorization") != expected or grant_type != "authorization_code":
                raise HTTPException(401, "bad client")
            if code not in self.codes:
                raise HTTPException(400, "bad code")
            nonce, user = self.codes.pop(code)
            claims = {"iss": self.issuer, "aud": CLIENT_ID, "sub": user, "preferred_username": user,
                      "iat": int(time.time()), "exp": int(time.time()) + 300, "nonce": self.nonce_override or nonce}
            key = self.other_key if self.rogue else self.key
            return {"access_token": "unused", "token_type": "Bearer",
                    "id_token": jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)}

        @app.get("/jwks")
        def jwks() -> dict:
            return KeySet([self.key]).as_dict(private=False)

        return app
