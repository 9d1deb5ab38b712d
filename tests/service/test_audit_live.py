"""Measured from outside, over real HTTP to a running server: a clinician token predicts and views but is refused
the audit trail; an admin token reads the audit rows of those actions, under the clinician's name."""

from __future__ import annotations

import httpx


def test_clinician_and_admin_tokens_against_a_live_server(live_server, accounts, xray_png):
    base = live_server()
    clinician, admin = accounts["clinician"].bearer, accounts["admin"].bearer
    with httpx.Client(base_url=base, timeout=30.0) as http:
        predicted = http.post("/api/v1/predict", headers=clinician, files={"file": ("x.png", xray_png, "image/png")})
        assert predicted.status_code == 200, predicted.text
        entry_id = predicted.json()["id"]
        assert http.get(f"/api/v1/history/{entry_id}", headers=clinician).status_code == 200
        refused = http.get("/api/v1/audit", headers=clinician)
        assert refused.status_code == 403 and "clinician role may not GET /api/v1/audit" in refused.text
        assert http.get("/api/v1/history", headers=admin).status_code == 403  # no clinical data for admins
        rows = http.get("/api/v1/audit", headers=admin, params={"analysis_id": entry_id}).json()["items"]
    assert [(r["actor"], r["role"], r["action"], r["analysis_id"], r["address"]) for r in rows] == [
        ("clinician-1", "clinician", "predict", entry_id, "127.0.0.1"),
        ("clinician-1", "clinician", "view", entry_id, "127.0.0.1")]
