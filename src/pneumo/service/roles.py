"""Which role may call which route: the one table every request is checked against.

``admin`` manages accounts and reads the audit trail, but sees no single result; ``clinician`` predicts, reads
and reviews results; ``integration`` (a PACS bridge, a script, a Prometheus scraper) predicts and reads results
with an API token; ``viewer`` only reads. Reviews (the reading clinician's conclusion) come from clinicians and
admins (an admin entering a RIS's conclusions); the site's figures are for them too. A route missing from the
table is refused to everyone (403), so a new route cannot go out unguarded: add it here, and to the table in
docs/service.md.
"""

from __future__ import annotations

from pneumo.service.history_schema import ROLES

PUBLIC: frozenset[str] = frozenset({"public"})  # answered without signing in (nothing private in them)
SIGNED_IN = frozenset(ROLES)
READERS = frozenset({"clinician", "integration", "viewer"})
PREDICTORS = frozenset({"clinician", "integration"})
ADMINS = frozenset({"admin"})
REVIEWERS = frozenset({"admin", "clinician"})
SCRAPERS = frozenset({"admin", "integration"})  # /metrics: counts only, read by a monitoring account's token

# (method, route path as declared) -> roles allowed. HEAD is checked as GET.
ROUTE_ROLES: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/"): PUBLIC,  # the page itself: it asks to sign in before it shows anything
    ("GET", "/api/v1/health"): PUBLIC,  # liveness for a load balancer: status and model version only
    ("GET", "/api/v1/session"): PUBLIC,  # who is signed in (nobody, when not)
    ("POST", "/api/v1/login"): PUBLIC,
    ("GET", "/api/v1/oidc/login"): PUBLIC,  # single sign-on: off to the identity provider
    ("GET", "/api/v1/oidc/callback"): PUBLIC,  # and back: the provider's code becomes a session
    ("POST", "/api/v1/logout"): SIGNED_IN,
    ("GET", "/api/v1/status"): SIGNED_IN,
    ("GET", "/api/v1/model"): SIGNED_IN,
    ("GET", "/openapi.json"): SIGNED_IN,
    ("GET", "/docs"): SIGNED_IN,
    ("POST", "/api/v1/predict"): PREDICTORS,
    ("GET", "/api/v1/history"): READERS,
    ("GET", "/api/v1/history/{entry_id}"): READERS,  # the result with its Grad-CAM image
    ("POST", "/api/v1/history/{entry_id}/review"): REVIEWERS,
    ("GET", "/api/v1/site/report"): REVIEWERS,  # figures over the whole history, no single result
    ("GET", "/metrics"): SCRAPERS,
    ("GET", "/api/v1/audit"): ADMINS,
    ("GET", "/api/v1/accounts"): ADMINS,
}
# Static files (the page's script and style, Swagger UI's bundle): code only, no data, served to anyone.
PUBLIC_MOUNTS = ("/static", "/docs-assets")


def roles_for(method: str, path: str) -> frozenset[str] | None:
    """The roles allowed on this route, or None when it is not in the table."""
    return ROUTE_ROLES.get(("GET" if method == "HEAD" else method, path))
