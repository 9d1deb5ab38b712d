"""Reviews: the reading clinician's conclusion on a result, through the API (roles, trail, audit, listing),
from a RIS CSV (matched by analysis id and by SOP Instance UID, bad lines named by number), and the model that
answered in every row."""

from __future__ import annotations

import logging

import pytest

from pneumo.cli import main
from pneumo.service.history import open_history
from pneumo.service.reviews import ReviewStore

from .test_audit import events

NOTE = "left lower lobe consolidation, see prior of 2026-10-03"


@pytest.fixture
def predicted(make_client, accounts, xray_png):
    client = make_client()
    answer = client.post("/api/v1/predict", params={"heatmap": "false"}, headers=accounts["clinician"].bearer,
                         files={"file": ("x.png", xray_png, "image/png")})
    assert answer.status_code == 200, answer.text
    return client, answer.json()


def review(client, account, entry_id, label, note=None):
    return client.post(f"/api/v1/history/{entry_id}/review", headers=account.bearer,
                       json={"label": label, **({"note": note} if note else {})})


def test_review_round_trip_with_roles_trail_and_audit(predicted, accounts, caplog):
    client, body = predicted
    entry_id = body["id"]
    caplog.set_level(logging.DEBUG)
    first = review(client, accounts["clinician"], entry_id, "PNEUMONIA_VIRAL", NOTE)
    assert first.status_code == 200, first.text
    assert first.json()["review"] | {"id": 0, "created": ""} == {
        "id": 0, "created": "", "analysis_id": entry_id, "reviewer": "clinician-1", "role": "clinician",
        "label": "PNEUMONIA_VIRAL", "note": NOTE, "source": "api"}
    for role in ("viewer", "integration"):
        assert review(client, accounts[role], entry_id, "NORMAL").status_code == 403
    second = review(client, accounts["admin"], entry_id, "NORMAL")
    assert second.status_code == 200
    assert [r["label"] for r in second.json()["reviews"]] == ["PNEUMONIA_VIRAL", "NORMAL"]  # the trail is kept
    # The latest counts, in the entry and in the listing; readers see it.
    entry = client.get(f"/api/v1/history/{entry_id}", headers=accounts["viewer"].bearer).json()
    assert entry["review"]["label"] == "NORMAL" and entry["review"]["reviewer"] == "admin-1"
    assert [r["reviewer"] for r in entry["reviews"]] == ["clinician-1", "admin-1"]
    listed = client.get("/api/v1/history", headers=accounts["clinician"].bearer).json()["items"]
    assert listed[0]["review"]["label"] == "NORMAL"
    audited = [(e["actor"], e["action"], e["analysis_id"]) for e in events(client, accounts["admin"], action=None)
               if e["action"] == "review"]
    assert audited == [("clinician-1", "review", entry_id), ("admin-1", "review", entry_id)]
    everything = caplog.text + str(events(client, accounts["admin"]))
    assert "consolidation" not in everything  # the note is shown to readers, never logged or audited


def test_bad_reviews_are_refused(predicted, accounts):
    client, body = predicted
    clinician = accounts["clinician"]
    bad = review(client, clinician, body["id"], "MAYBE")
    assert bad.status_code == 422 and "NOT_ASSESSABLE" in bad.text
    assert review(client, clinician, body["id"] + 1000, "NORMAL").status_code == 404
    assert review(client, clinician, body["id"], "NORMAL", "x" * 3000).status_code == 422
    assert client.get(f"/api/v1/history/{body['id']}", headers=clinician.bearer).json()["reviews"] == []


def test_every_row_names_the_model_that_answered(predicted, accounts, tiny_bundle):
    client, body = predicted
    assert body["model"]["id"].startswith(f"{tiny_bundle.name}@") and body["model"]["parent"] is None
    row = client.get(f"/api/v1/history/{body['id']}", headers=accounts["viewer"].bearer).json()
    assert row["model"] == {"id": body["model"]["id"], "parent": None, "version": body["model_version"]}
    status = client.get("/api/v1/status", headers=accounts["viewer"].bearer).json()
    assert status["model"]["id"] == body["model"]["id"]


def _dicom_row(history) -> int:
    return history.add(image_sha256="d" * 64, file_type="dicom", model_version="m", source="dicom",
                       result={"label": "PNEUMONIA", "probability": 0.8, "threshold": 0.5}, heatmap_png=None,
                       dicom={"sop_instance_uid": "1.2.840.99.1", "study_instance_uid": "1.2.840.99"}).id


def test_import_reviews_from_a_ris_csv(make_settings, tmp_path, capsys):
    url = make_settings().database_url
    history = open_history(url)
    try:
        upload = history.add(image_sha256="a" * 64, file_type="png", model_version="m", heatmap_png=None,
                             result={"label": "NORMAL", "probability": 0.1, "threshold": 0.5}).id
        dicom = _dicom_row(history)
    finally:
        history.close()
    csv_file = tmp_path / "ris.csv"
    csv_file.write_text("analysis_id,sop_instance_uid,label,note,reviewer\n"
                        f"{upload},,normal,,dr-a\n"  # line 2: by analysis id, lower case forgiven
                        f',1.2.840.99.1,Pneumonia bacterial,"{NOTE}",\n'  # line 3: by SOP UID, --reviewer
                        "999999,,NORMAL,,\n"  # line 4: no such analysis
                        ",1.2.840.99.77,NORMAL,,\n"  # line 5: no such instance
                        f"{upload},,perhaps,,\n"  # line 6: bad label
                        ",,NORMAL,,\n"  # line 7: no key
                        f"abc,,NORMAL,,\n")  # line 8: a malformed id
    code = main(["site", "import-reviews", "--db", url, str(csv_file), "--reviewer", "ris"])
    out = capsys.readouterr().out
    assert code == 1  # invalid lines were found
    assert "2 lines matched (2 analyses reviewed), 2 unmatched, 3 invalid" in out
    for line in ("line 4: unmatched", "line 5: unmatched", "line 6: invalid", "line 7: invalid", "line 8: invalid"):
        assert line in out
    assert "1.2.840.99" not in out and "consolidation" not in out
    history = open_history(url)
    try:
        latest = ReviewStore(history.engine, history.write_lock).latest()
        assert {k: (r.label, r.reviewer, r.source) for k, r in latest.items()} == {
            upload: ("NORMAL", "dr-a", "import"), dicom: ("PNEUMONIA_BACTERIAL", "ris", "import")}
    finally:
        history.close()
