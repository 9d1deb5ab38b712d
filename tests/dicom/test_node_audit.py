"""Each instance the DICOM node reads leaves one ``predict`` audit row, naming the AE title that sent it."""

from __future__ import annotations

from .conftest import PATIENT_ID, PATIENT_NAME, dx_instance
from .scu import store


def test_each_arrival_is_audited_with_the_sending_ae_title(make_node, xray_files):
    client, node = make_node()
    assert store(node.port, [dx_instance(xray_files[0]), dx_instance(xray_files[1])]) == [0x0000, 0x0000]
    assert node.wait_idle(60)
    ids = sorted(item["id"] for item in client.get("/api/v1/history").json()["items"])
    rows = [row for row in client.app.state.service.audit.rows(limit=100) if row["action"] == "predict"]
    assert [(row["actor"], row["analysis_id"]) for row in rows] == [("dicom:TESTSCU", i) for i in ids]
    assert PATIENT_NAME not in str(rows) and PATIENT_ID not in str(rows)
