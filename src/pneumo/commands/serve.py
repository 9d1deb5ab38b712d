"""``pneumo serve``: the REST API and the web page on one port (uvicorn)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pneumo.dicom.settings import DEFAULT_AE_TITLE, MIB, Destination, DicomSettings, TlsFiles
from pneumo.service.oidc import OidcSettings
from pneumo.service.settings import (API_KEY_ENV, DEFAULT_MAX_UPLOAD_BYTES, OIDC_SECRET_ENV, AccessSettings,
                                    ServiceSettings, default_data_dir)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve", help="run the web app and REST API",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description=f"Serve the web page at / and the API at /api/v1 (OpenAPI at /docs and /openapi.json). "
                    "Every route checks the caller's role: accounts and API tokens come from `pneumo users`. "
                    "Without any account it serves loopback only, and refuses any other --host.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000, help="port to listen on")
    p.add_argument("--model", default="default", help="bundle directory, run directory or shipped model name (a site "
                   "bundle from pneumo adapt; back to the shipped one: --model default)")
    p.add_argument("--db", default=None, metavar="URL",
                   help="history database: sqlite:///path/file.sqlite3 or postgresql://user:pass@host/db "
                        "(default: a SQLite file in --data-dir)")
    p.add_argument("--data-dir", default=str(default_data_dir()), help="where the default SQLite history lives")
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_BYTES / 1048576,
                   help="largest accepted upload, in MiB")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="allow browser calls from this origin (repeatable); CORS is closed when none is given")
    p.add_argument("--frame-ancestor", action="append", default=[], metavar="ORIGIN",
                   help="let this origin show the page in a frame (repeatable), e.g. https://huggingface.co for a "
                        "Space; framing is refused when none is given")
    p.add_argument("--workers", type=int, default=2, help="predictions run at once (the rest queue)")
    p.add_argument("--max-queued", type=int, default=ServiceSettings.max_queued, metavar="N",
                   help="uploads that may wait for a worker; more are answered 429 before their body is read")
    p.add_argument("--trusted-host", action="append", default=[], metavar="NAME",
                   help="a Host header to answer besides the loopback names and --host (repeatable): the name "
                        "clients use to reach the server; '*' answers any (behind a proxy that checks it)")
    p.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto",
                   help="classification backend; auto: ONNX Runtime when the bundle holds model.onnx, else torch "
                        "(Grad-CAM always runs on torch)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps")
    _add_dicom_flags(p)
    add_access_flags(p)
    add_oidc_flags(p)
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.set_defaults(func=run)


def _add_dicom_flags(p: argparse.ArgumentParser) -> None:
    dicom = p.add_argument_group("DICOM node", "a Storage SCP in the same process: instances a PACS sends are "
                                 "read, shown in the history, and answered with a Structured Report")
    dicom.add_argument("--dicom-port", type=int, default=None, metavar="P",
                       help="listen for DICOM (C-ECHO, C-STORE) on this port, on --host; off when not given")
    dicom.add_argument("--dicom-ae-title", default=DEFAULT_AE_TITLE, metavar="AET", help="this node's AE title")
    dicom.add_argument("--dicom-allow", default="", metavar="AET@ADDRESS,...",
                       help="who may send: calling AE titles, each pinned to an IP address or network "
                            "(ORTHANC@10.0.0.5, CR_ROOM@10.0.3.0/24); a bare AET is accepted on loopback only. "
                            "Required when --host is not loopback; empty on loopback: anyone local")
    dicom.add_argument("--dicom-forward", default=None, metavar="AET@HOST:PORT",
                       help="send each reading (a Structured Report) here by C-STORE, usually the PACS")
    dicom.add_argument("--dicom-forward-associations", type=int, default=DicomSettings.forward_associations,
                       metavar="N",
                       help="associations a delivery to --dicom-forward opens at once (lower it for a PACS that "
                            "limits associations per AE title)")
    dicom.add_argument("--dicom-gradcam", action="store_true",
                       help="also send the Grad-CAM overlay as a derived Secondary Capture")
    _add_dicom_security_flags(dicom)


def _add_dicom_security_flags(dicom: argparse._ArgumentGroup) -> None:
    dicom.add_argument("--dicom-tls-cert", default=None, metavar="PEM",
                       help="serve DICOM over TLS with this certificate (chain), PEM; needs --dicom-tls-key")
    dicom.add_argument("--dicom-tls-key", default=None, metavar="PEM", help="the TLS certificate's private key")
    dicom.add_argument("--dicom-tls-ca", default=None, metavar="PEM",
                       help="require senders to present a TLS certificate signed by this CA (mutual TLS)")
    dicom.add_argument("--dicom-max-pdu", type=int, default=DicomSettings.max_pdu, metavar="BYTES",
                       help="largest PDU accepted (advertised at association; a longer one closes the connection)")
    dicom.add_argument("--dicom-max-dataset-mb", type=float, default=DicomSettings.max_dataset_bytes / MIB,
                       metavar="MIB", help="largest dataset accepted, after inflating (refused with 0xA700)")
    dicom.add_argument("--dicom-max-image-mb", type=float, default=DicomSettings.max_image_bytes / MIB, metavar="MIB",
                       help="largest image the header may declare, rows x columns x samples x bytes (0xA700)")
    dicom.add_argument("--dicom-max-associations", type=int, default=DicomSettings.max_associations, metavar="N",
                       help="associations accepted at once; more are rejected as transient (local limit)")
    dicom.add_argument("--dicom-memory-mb", type=float, default=DicomSettings.memory_budget_bytes / MIB, metavar="MIB",
                       help="datasets held in memory at once, all associations together; a dataset beyond it gets "
                            "0xA700 (try again later)")
    dicom.add_argument("--dicom-spool-quota-mb", type=float, default=DicomSettings.spool_quota_bytes / MIB,
                       metavar="MIB", help="disk the spool may use; new instances get 0xA700 beyond it")
    dicom.add_argument("--dicom-accept-deflate", action="store_true",
                       help="also offer the deflated transfer syntax (inflated under --dicom-max-dataset-mb)")


def _dicom_flags_given(args: argparse.Namespace) -> list[str]:
    defaults = {"dicom_allow": "", "dicom_forward": None, "dicom_gradcam": False, "dicom_tls_cert": None,
                "dicom_tls_key": None, "dicom_tls_ca": None, "dicom_accept_deflate": False}
    return ["--" + name.replace("_", "-") for name, default in defaults.items() if getattr(args, name) != default]


def _tls_files(args: argparse.Namespace) -> TlsFiles | None:
    if args.dicom_tls_cert is None and args.dicom_tls_key is None:
        if args.dicom_tls_ca is not None:
            raise ValueError("--dicom-tls-ca needs --dicom-tls-cert and --dicom-tls-key")
        return None
    if args.dicom_tls_cert is None or args.dicom_tls_key is None:
        raise ValueError("DICOM TLS needs both --dicom-tls-cert and --dicom-tls-key")
    return TlsFiles(args.dicom_tls_cert, args.dicom_tls_key, args.dicom_tls_ca)


def add_access_flags(parser: argparse.ArgumentParser) -> None:
    access = parser.add_argument_group("sign-in and abuse limits")
    access.add_argument("--session-idle-minutes", type=float, default=AccessSettings.session_idle_minutes,
                        help="a page session ends after this long without a request")
    access.add_argument("--secure-cookies", action=argparse.BooleanOptionalAction,
                        default=AccessSettings.secure_cookies,
                        help="mark the session cookie Secure (when the page is served over HTTPS)")
    access.add_argument("--login-failures-per-account", type=int, default=AccessSettings.login_failures_per_account,
                        metavar="N", help="failed sign-ins per account name within --login-window-s, then 429")
    access.add_argument("--login-failures-per-address", type=int, default=AccessSettings.login_failures_per_address,
                        metavar="N", help="failed sign-ins (and bad tokens) per client address within the window")
    access.add_argument("--login-window-s", type=float, default=AccessSettings.login_window_s,
                        help="the window, in seconds, the failed sign-ins are counted over")
    access.add_argument("--predictions-per-minute", type=int, default=AccessSettings.predictions_per_minute,
                        metavar="N", help="uploads one account may send per minute (0: no limit)")


def add_oidc_flags(parser: argparse.ArgumentParser) -> None:
    sso = parser.add_argument_group("single sign-on (OpenID Connect; pip install 'pneumo[oidc]')",
                                    f"the client secret is read from ${OIDC_SECRET_ENV}, never from a flag")
    sso.add_argument("--oidc-issuer", default=None, metavar="URL", help="the identity provider; off when not given")
    sso.add_argument("--oidc-client-id", default=None, metavar="ID", help="this server's client id at the provider")
    sso.add_argument("--oidc-redirect-url", default=None, metavar="URL",
                     help="this server's callback as registered at the provider: https://HOST/api/v1/oidc/callback")
    sso.add_argument("--oidc-username-claim", default="preferred_username", metavar="CLAIM",
                     help="the ID-token claim that holds the pneumo account name")


def build_oidc_settings(args: argparse.Namespace) -> OidcSettings | None:
    if args.oidc_issuer is None:
        if args.oidc_client_id or args.oidc_redirect_url:
            raise ValueError("--oidc-client-id and --oidc-redirect-url need --oidc-issuer")
        return None
    secret = os.environ.get(OIDC_SECRET_ENV, "")
    if not secret:
        raise ValueError(f"--oidc-issuer needs the client secret in ${OIDC_SECRET_ENV}")
    return OidcSettings(issuer=args.oidc_issuer, client_id=args.oidc_client_id or "", client_secret=secret,
                        redirect_url=args.oidc_redirect_url or "", username_claim=args.oidc_username_claim)


def build_dicom_settings(args: argparse.Namespace) -> DicomSettings | None:
    if args.dicom_port is None:
        given = _dicom_flags_given(args)
        if given:
            raise ValueError(f"{', '.join(given)} need --dicom-port")
        return None
    allow = tuple(a for a in (part.strip() for part in args.dicom_allow.split(",")) if a)
    forward = Destination.parse(args.dicom_forward) if args.dicom_forward else None
    return DicomSettings(port=args.dicom_port, spool_dir=Path(args.data_dir) / "dicom", ae_title=args.dicom_ae_title,
                         host=args.host, allow=allow, forward=forward, gradcam=args.dicom_gradcam,
                         forward_associations=args.dicom_forward_associations, max_pdu=args.dicom_max_pdu,
                         max_dataset_bytes=int(args.dicom_max_dataset_mb * MIB),
                         max_image_bytes=int(args.dicom_max_image_mb * MIB),
                         max_associations=args.dicom_max_associations,
                         memory_budget_bytes=int(args.dicom_memory_mb * MIB),
                         spool_quota_bytes=int(args.dicom_spool_quota_mb * MIB),
                         accept_deflate=args.dicom_accept_deflate, tls=_tls_files(args))


def build_settings(args: argparse.Namespace) -> ServiceSettings:
    return ServiceSettings(model=args.model, db_url=args.db or "", data_dir=args.data_dir,
                           max_upload_bytes=int(args.max_upload_mb * 1048576), cors_origins=tuple(args.cors_origin),
                           frame_ancestors=tuple(args.frame_ancestor),
                           workers=args.workers, max_queued=args.max_queued, host=args.host,
                           trusted_hosts=tuple(args.trusted_host), backend=args.backend, device=args.device,
                           dicom=build_dicom_settings(args), access=build_access_settings(args),
                           oidc=build_oidc_settings(args))


def build_access_settings(args: argparse.Namespace) -> AccessSettings:
    return AccessSettings(session_idle_minutes=args.session_idle_minutes, secure_cookies=args.secure_cookies,
                          login_failures_per_account=args.login_failures_per_account,
                          login_failures_per_address=args.login_failures_per_address,
                          login_window_s=args.login_window_s, predictions_per_minute=args.predictions_per_minute)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from pneumo.service import create_app
    from pneumo.service.auth import open_without_accounts

    settings = build_settings(args)
    app = create_app(settings)  # refuses a network address when there is no account
    context = app.state.service
    database = settings.database_url.split("://")[0]
    print(f"pneumo serve: http://{args.host}:{args.port}/  (API docs: /docs, history: {database})", file=sys.stderr)
    print(f"pneumo serve: model {context.model.describe()}", file=sys.stderr)
    if open_without_accounts(context):
        print("pneumo serve: no accounts: listening on loopback only, everyone here acts as the local clinician; "
              "`pneumo users add NAME --role admin` turns sign-in on", file=sys.stderr)
    if settings.api_key is not None:
        print(f"pneumo serve: {API_KEY_ENV} is deprecated; it acts as one shared integration account "
              "(use `pneumo users token`)", file=sys.stderr)
    if settings.dicom is not None:
        print(f"pneumo serve: DICOM node {settings.dicom.ae_title} on {args.host}:{settings.dicom.port} "
              f"({'TLS' if settings.dicom.tls else 'no TLS'}, allow: {','.join(settings.dicom.allow) or 'any local'}, "
              f"forward: {settings.dicom.forward or 'none'})",
              file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
