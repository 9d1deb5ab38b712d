"""``pneumo serve``: flags map onto ServiceSettings and the app is handed to uvicorn."""

from __future__ import annotations

import io

import uvicorn

from pneumo.cli import build_parser, main
from pneumo.commands.serve import build_settings


def test_flags_map_onto_settings(tiny_bundle, tmp_path):
    args = build_parser().parse_args([
        "serve", "--model", str(tiny_bundle), "--db", f"sqlite:///{tmp_path}/h.sqlite3", "--port", "8123",
        "--max-upload-mb", "1.5", "--cors-origin", "https://a.example", "--cors-origin", "https://b.example",
        "--workers", "3"])
    settings = build_settings(args)
    assert settings.model == str(tiny_bundle)
    assert settings.database_url == f"sqlite:///{tmp_path}/h.sqlite3"
    assert settings.max_upload_bytes == int(1.5 * 1048576)
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert settings.workers == 3
    assert (args.host, args.port) == ("127.0.0.1", 8123)


def test_host_and_queue_flags_map_onto_settings(tmp_path):
    args = build_parser().parse_args(["serve", "--data-dir", str(tmp_path), "--host", "10.0.0.5", "--trusted-host",
                                      "pneumo.ward.example", "--trusted-host", "pneumo", "--max-queued", "3"])
    settings = build_settings(args)
    assert settings.host == "10.0.0.5"
    assert settings.trusted_hosts == ("pneumo.ward.example", "pneumo")
    assert settings.max_queued == 3


def test_defaults_are_loopback_and_20_mb(tmp_path):
    args = build_parser().parse_args(["serve", "--data-dir", str(tmp_path)])
    settings = build_settings(args)
    assert args.host == "127.0.0.1" and args.port == 8000 and args.model == "default"
    assert settings.max_upload_bytes == 20 * 1048576
    assert settings.database_url == f"sqlite:///{tmp_path / 'history.sqlite3'}"
    assert settings.cors_origins == ()
    assert settings.host == "127.0.0.1" and settings.trusted_hosts == () and settings.max_queued == 8


def test_run_refuses_a_network_address_without_accounts(monkeypatch, tiny_bundle, tmp_path, capsys):
    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    code = main(["serve", "--model", str(tiny_bundle), "--data-dir", str(tmp_path), "--host", "0.0.0.0", "--port", "9"])
    assert code == 2 and not calls
    assert "refusing to serve on 0.0.0.0 without accounts" in capsys.readouterr().err


def test_run_on_loopback_without_accounts_says_so(monkeypatch, tiny_bundle, tmp_path, capsys):
    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    assert main(["serve", "--model", str(tiny_bundle), "--data-dir", str(tmp_path), "--port", "9"]) == 0
    assert calls[0][1]["host"] == "127.0.0.1"
    assert "no accounts: listening on loopback only" in capsys.readouterr().err


def test_run_builds_the_app_on_a_network_once_an_account_exists(monkeypatch, tiny_bundle, tmp_path, capsys):
    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    assert main(["users", "add", "ward-admin", "--role", "admin", "--data-dir", str(tmp_path)]) == 0
    code = main(["serve", "--model", str(tiny_bundle), "--data-dir", str(tmp_path), "--host", "0.0.0.0", "--port", "9"])
    assert code == 0
    app, kw = calls[0]
    assert (kw["host"], kw["port"]) == ("0.0.0.0", 9)
    assert "/api/v1/predict" in app.openapi()["paths"]
    assert "no accounts" not in capsys.readouterr().err


def test_bad_model_is_a_clean_cli_error(tmp_path, capsys):
    code = main(["serve", "--model", str(tmp_path / "missing"), "--data-dir", str(tmp_path)])
    assert code == 2
    assert "not found" in capsys.readouterr().err


def test_sign_in_and_abuse_flags_map_onto_access_settings(tmp_path):
    args = build_parser().parse_args(["serve", "--data-dir", str(tmp_path), "--session-idle-minutes", "5",
                                      "--secure-cookies", "--login-failures-per-account", "3",
                                      "--login-failures-per-address", "9", "--login-window-s", "60",
                                      "--predictions-per-minute", "0"])
    access = build_settings(args).access
    assert (access.session_idle_minutes, access.secure_cookies, access.login_failures_per_account,
            access.login_failures_per_address, access.login_window_s, access.predictions_per_minute) == (
        5.0, True, 3, 9, 60.0, 0)


def test_single_sign_on_flags_need_the_secret_from_the_environment(tmp_path, monkeypatch):
    import pytest

    argv = ["serve", "--data-dir", str(tmp_path), "--oidc-issuer", "https://idp.hospital.example",
            "--oidc-client-id", "pneumo", "--oidc-redirect-url", "https://pneumo.hospital.example/api/v1/oidc/callback"]
    monkeypatch.delenv("PNEUMO_OIDC_CLIENT_SECRET", raising=False)
    with pytest.raises(ValueError, match="PNEUMO_OIDC_CLIENT_SECRET"):
        build_settings(build_parser().parse_args(argv))
    monkeypatch.setenv("PNEUMO_OIDC_CLIENT_SECRET", "s3cret")
    oidc = build_settings(build_parser().parse_args(argv)).oidc
    assert (oidc.issuer, oidc.client_id, oidc.client_secret, oidc.username_claim) == (
        "https://idp.hospital.example", "pneumo", "s3cret", "preferred_username")
    with pytest.raises(ValueError, match="need --oidc-issuer"):
        build_settings(build_parser().parse_args(["serve", "--data-dir", str(tmp_path), "--oidc-client-id", "x"]))
