"""Typed settings for the web service, built once by ``pneumo serve`` (or a test) and passed to ``create_app``."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from pneumo.dicom.settings import DicomSettings
from pneumo.service.oidc import OidcSettings

DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
API_KEY_ENV = "PNEUMO_API_KEY"
OIDC_SECRET_ENV = "PNEUMO_OIDC_CLIENT_SECRET"  # an environment variable, not a flag, so it does not show in ps
# An origin as a Content-Security-Policy source: scheme://host[:port], nothing that could end the directive.
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


@dataclass(frozen=True)
class AccessSettings:
    """Sessions and abuse limits (issue 25).

    ``session_idle_minutes``: a page session ends after this long without a request.
    ``secure_cookies``: mark the session cookie Secure (set it when the page is served over HTTPS).
    ``login_failures_per_account`` / ``login_failures_per_address``: failed logins allowed in
    ``login_window_s``; further attempts are answered 429 until the oldest failure leaves the window.
    ``predictions_per_minute``: uploads one account may send per minute (0: no limit).
    """

    session_idle_minutes: float = 30.0
    secure_cookies: bool = False
    login_failures_per_account: int = 5
    login_failures_per_address: int = 20
    login_window_s: float = 900.0
    predictions_per_minute: int = 120

    def __post_init__(self) -> None:
        if self.session_idle_minutes <= 0:
            raise ValueError(f"session_idle_minutes must be positive, got {self.session_idle_minutes}")
        for name in ("login_failures_per_account", "login_failures_per_address"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.login_window_s <= 0:
            raise ValueError(f"login_window_s must be positive, got {self.login_window_s}")
        if self.predictions_per_minute < 0:
            raise ValueError(f"predictions_per_minute must be 0 (no limit) or more, got {self.predictions_per_minute}")


def default_data_dir() -> Path:
    """Where the history database lives unless told otherwise: ``$XDG_DATA_HOME/pneumo``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "pneumo"


def _api_key_from_env() -> str | None:
    # Read at construction so a key set in the environment can never be silently ignored.
    return os.environ.get(API_KEY_ENV) or None


@dataclass(frozen=True)
class ServiceSettings:
    """Everything the service needs; nothing else is read from the environment after this.

    ``api_key``: the old shared key (deprecated): when set it acts as an ``integration`` account, sent as
    ``X-API-Key`` or ``Authorization: Bearer``. Without it and without accounts in the database the service
    answers as a local clinician, and only on a loopback ``host`` (``create_app`` refuses any other).
    ``access``: sessions and abuse limits.
    ``db_url``: ``sqlite:///path/to/file.sqlite3`` or ``postgresql://user:pass@host/db``; empty means a
    SQLite file ``history.sqlite3`` in ``data_dir``.
    ``frame_ancestors``: origins allowed to show the web page in a frame (a Hugging Face Space shows its app
    inside https://huggingface.co); none means no framing at all (``frame-ancestors 'none'``, ``X-Frame-Options``).
    ``host``: the address the server binds to; with the loopback names and ``trusted_hosts`` it makes the
    Host headers answered (``"*"`` in ``trusted_hosts`` answers any, for a proxy that checks them itself).
    ``max_queued``: uploads allowed to wait for a worker; the next gets 429 before its body is read.
    """

    model: str = "default"
    db_url: str = ""
    data_dir: Path = field(default_factory=default_data_dir)
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    api_key: str | None = field(default_factory=_api_key_from_env)
    cors_origins: tuple[str, ...] = ()
    frame_ancestors: tuple[str, ...] = ()
    # Predictions allowed to run at once in the thread pool; more requests queue without blocking the loop.
    workers: int = 2
    max_queued: int = 8
    host: str = "127.0.0.1"
    trusted_hosts: tuple[str, ...] = ()
    backend: str = "auto"  # see Predictor.load
    device: str = "cpu"
    # The DICOM node in the same process (pneumo serve --dicom-port); None: no DICOM listener.
    dicom: DicomSettings | None = None
    access: AccessSettings = field(default_factory=AccessSettings)
    # Single sign-on (pneumo serve --oidc-issuer ...); None: accounts sign in with their passwords only.
    oidc: OidcSettings | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))
        object.__setattr__(self, "frame_ancestors", tuple(self.frame_ancestors))
        object.__setattr__(self, "trusted_hosts", tuple(self.trusted_hosts))
        for origin in self.frame_ancestors:
            if not _ORIGIN.match(origin):
                raise ValueError(f"frame ancestor {origin!r} is not an origin; give scheme://host[:port], "
                                 "e.g. https://huggingface.co (no path, no wildcard)")
        if self.max_upload_bytes < 1:
            raise ValueError(f"max_upload_bytes must be positive, got {self.max_upload_bytes}")
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.max_queued < 0:
            raise ValueError(f"max_queued must be 0 or more, got {self.max_queued}")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("api_key must not be blank; leave it unset to turn authentication off")

    @property
    def database_url(self) -> str:
        """The history database URL, defaulting to a SQLite file in ``data_dir``."""
        return self.db_url or f"sqlite:///{self.data_dir / 'history.sqlite3'}"
