"""The audit trail: one row per action with the actor's name, readable by admins only, committed with the
action it records, exported by the CLI, and free of images, patient identifiers, passwords and tokens."""

from __future__ import annotations

import csv
import io
import json
import logging

import pytest

from pneumo.cli import main
from pneumo.service import history_store as history_module
from pneumo.service.audit import AuditEvent
from pneumo.service.history import open_history

from .accounts_support import PASSWORD
from .conftest import PATIENT_ID, PATIENT_NAME


def events(client, admin, **params) -> list[dict]:
    response = client.get("/api/v1/audit", headers=admin.bearer, params={"limit": 1000, **params})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def test_clinician_acts_and_the_admin_reads_it_with_the_clinician_name(make_client, accounts, xray_png):
    client = make_client()
    clinician, admin = accounts["clinician"], accounts["admin"]
    predicted = client.post("/api/v1/predict", headers=clinician.bearer, files={"file": ("x.png", xray_png, "image/png")})
    assert predicted.status_code == 200
    entry_id = predicted.json()["id"]
    assert client.get(f"/api/v1/history/{entry_id}", headers=clinician.bearer).status_code == 200
    denied = client.get("/api/v1/audit", headers=clinician.bearer)
    assert denied.status_code == 403 and "actor" not in denied.text

    mine = events(client, admin, actor="clinician-1")
    assert [(e["action"], e["analysis_id"], e["role"], e["outcome"]) for e in mine] == [
        ("predict", entry_id, "clinician", "ok"), ("view", entry_id, "clinician", "ok")]
    assert all(e["address"] == "testclient" and e["created"].endswith("Z") for e in mine)
    assert [e["action"] for e in events(client, admin, analysis_id=entry_id)] == ["predict", "view"]


def test_logins_failures_and_logouts_are_recorded_without_secrets(make_client, accounts, caplog):
    caplog.set_level(logging.DEBUG)
    client = make_client()
    assert client.post("/api/v1/login", json={"name": "viewer-1", "password": "not the password"}).status_code == 401
    # A password typed into the name field must not be kept.
    assert client.post("/api/v1/login", json={"name": PASSWORD[:20], "password": "x"}).status_code == 401
    signed_in = client.post("/api/v1/login", json={"name": "viewer-1", "password": PASSWORD})
    client.post("/api/v1/logout", headers={"X-CSRF-Token": signed_in.json()["csrf_token"]})
    client.get("/api/v1/history", headers={"Authorization": "Bearer pnm_not-a-real-token"})
    rows = events(client, accounts["admin"])
    logins = [(e["actor"], e["action"], e["outcome"]) for e in rows if e["action"] in ("login", "logout", "token.rejected")]
    assert logins == [("viewer-1", "login", "failed"), ("unknown account", "login", "failed"),
                      ("viewer-1", "login", "ok"), ("viewer-1", "logout", "ok"),
                      ("unknown account", "token.rejected", "failed")]
    everything = json.dumps(rows) + caplog.text
    for secret in (PASSWORD, PASSWORD[:20], "not the password", "pnm_not-a-real-token",
                   *(account.token for account in accounts.values()), signed_in.json()["csrf_token"]):
        assert secret not in everything


def test_no_image_or_patient_identifier_reaches_the_audit(make_client, accounts, xray_dicom, caplog):
    caplog.set_level(logging.DEBUG)
    client = make_client()
    response = client.post("/api/v1/predict", headers=accounts["integration"].bearer,
                           files={"file": ("Doe_Jane.dcm", xray_dicom, "application/dicom")})
    assert response.status_code == 200
    client.get(f"/api/v1/history/{response.json()['id']}", headers=accounts["integration"].bearer)
    text = json.dumps(events(client, accounts["admin"])) + caplog.text
    for private in (PATIENT_NAME, PATIENT_ID, "Doe_Jane", response.json()["image_sha256"]):
        assert private not in text
    assert len(text) < 20_000  # no image in there


def test_the_audit_row_commits_with_the_prediction_or_not_at_all(make_settings, monkeypatch):
    history = open_history(make_settings().database_url)
    try:
        def broken_insert(connection, event):
            raise RuntimeError("disk full while writing the audit row")

        monkeypatch.setattr(history_module, "insert_event", broken_insert)
        with pytest.raises(RuntimeError, match="disk full"):
            history.add(image_sha256="a" * 64, file_type="png", model_version="m", result={"label": "NORMAL"},
                        heatmap_png=None, audit=AuditEvent(actor="clinician-1", action="predict"))
        assert history.count() == 0  # no analysis without its audit row
    finally:
        history.close()


def test_unknown_actions_are_refused():
    with pytest.raises(ValueError, match="unknown audit action 'delete'"):
        AuditEvent(actor="x", action="delete")


def test_pneumo_audit_export_as_csv_and_json(make_client, make_settings, accounts, xray_png, capsys, tmp_path):
    client = make_client()
    client.post("/api/v1/predict", headers=accounts["clinician"].bearer, files={"file": ("x.png", xray_png, "image/png")})
    db = make_settings().database_url
    capsys.readouterr()
    assert main(["audit", "export", "--db", db]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert ("clinician-1", "predict", "1") in [(r["actor"], r["action"], r["analysis_id"]) for r in rows]
    assert main(["audit", "export", "--db", db, "--format", "json", "--output", str(tmp_path / "a.json")]) == 0
    exported = json.loads((tmp_path / "a.json").read_text())
    assert len(exported) == len(rows) + 1  # the first export is itself recorded
    assert exported[-1]["action"] == "export" and exported[-1]["actor"] == "cli"


def test_account_changes_are_recorded(make_settings, capsys, monkeypatch):
    db = make_settings().database_url
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["users", "add", "dr-house", "--role", "clinician", "--db", db]) == 0
    assert main(["users", "token", "dr-house", "--db", db, "--expires-days", "7"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert token.startswith("pnm_")
    assert main(["users", "revoke-token", "dr-house", "--db", db]) == 0
    assert main(["users", "disable", "dr-house", "--db", db]) == 0
    capsys.readouterr()
    assert main(["audit", "export", "--db", db, "--format", "json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert [e["action"] for e in exported] == ["account.add", "token.issue", "token.revoke", "account.disable"]
    assert token not in json.dumps(exported) and PASSWORD not in json.dumps(exported)


def test_accounts_sessions_and_audit_on_postgresql(make_client, make_settings, postgres_url, xray_png):
    from .accounts_support import add_accounts

    made = add_accounts(postgres_url, ("clinician", "admin"))
    client = make_client(db_url=postgres_url)
    entry_id = client.post("/api/v1/predict", headers=made["clinician"].bearer,
                           files={"file": ("x.png", xray_png, "image/png")}).json()["id"]
    signed_in = client.post("/api/v1/login", json={"name": "clinician-1", "password": PASSWORD})
    assert signed_in.status_code == 200
    assert client.get(f"/api/v1/history/{entry_id}").status_code == 200  # by the page session
    rows = events(client, made["admin"], actor="clinician-1")
    assert [(e["action"], e["analysis_id"]) for e in rows] == [("predict", entry_id), ("login", None),
                                                                ("view", entry_id)]
