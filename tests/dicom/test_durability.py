"""Nothing acknowledged is lost: the reading, the history row and the report are one unit, retried from the spool
when any step fails; a PACS's temporary refusals are retried with backoff and its permanent ones kept and shown;
and no log line, on any of these paths, carries the patient's data."""

from __future__ import annotations

import logging
import threading

import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.sop_class import ComprehensiveSRStorage

from .conftest import PATIENT_ID, PATIENT_NAME, dx_instance
from .scu import store

from pneumo.dicom.report import read_report
from pneumo.dicom.settings import Destination

BIRTH_DATE = "1980-01-01"  # not a DA (YYYYMMDD): pydicom refuses it, and its message quotes it
FAST = {"read_retry_seconds": 0.05, "retry_seconds": 0.2}


def _patient_instance(xray, caplog):
    """An instance with the invalid birth date; the log is watched from here on (pydicom's warning about the
    value when the test sets it is the test's own)."""
    ds = dx_instance(xray, PatientBirthDate=BIRTH_DATE)
    caplog.clear()
    return ds


def _logged_text(caplog) -> str:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(formatter.format(record) for record in caplog.records)


def _assert_no_patient_data(caplog) -> None:
    text = _logged_text(caplog)
    for secret in (PATIENT_NAME, PATIENT_ID, BIRTH_DATE, "Doe", "PID-SECRET"):
        assert secret not in text, f"{secret!r} reached the logs"


@pytest.fixture
def pacs():
    """A Storage SCP standing in for the PACS, whose answers the test scripts: a list of statuses to give in turn
    (then Success); collects what it stored."""
    received, script = [], []
    lock = threading.Lock()

    def on_store(event):
        with lock:
            status = script.pop(0) if script else 0x0000
            if status == 0x0000:
                received.append(event.dataset)
        return status

    ae = AE(ae_title="FAKEPACS")
    ae.add_supported_context(ComprehensiveSRStorage, ExplicitVRLittleEndian)
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    yield Destination("FAKEPACS", "127.0.0.1", server.server_address[1]), received, script
    server.shutdown()


def test_an_invalid_birth_date_is_left_out_of_the_report_and_the_reading_is_not_lost(make_node, xray_files, pacs,
                                                                                    caplog):
    caplog.set_level(logging.DEBUG)
    destination, received, _ = pacs
    client, node = make_node(forward=destination, **FAST)
    ds = _patient_instance(xray_files[0], caplog)
    assert store(node.port, [ds]) == [0x0000]
    assert node.wait_idle(60)
    (report,) = received
    assert read_report(report)["source_sop_instance_uid"] == ds.SOPInstanceUID
    assert report.PatientBirthDate == "" and report.PatientID == PATIENT_ID  # dropped, the rest kept
    assert len(client.get("/api/v1/history").json()["items"]) == 1
    assert node.spool.pending(node.spool.failed) == [] and node.stats.failed == 0
    assert "PatientBirthDate" in _logged_text(caplog)  # the tag is named...
    _assert_no_patient_data(caplog)  # ...never its value


class _FailingFirst:
    """The node's real history, failing its first ``times`` writes with a message that quotes the patient (as a
    database driver quoting the row would)."""

    def __init__(self, history, times: int) -> None:
        self.history, self.times = history, times

    def add(self, **kwargs):
        if self.times:
            self.times -= 1
            raise RuntimeError(f"database is locked while writing {PATIENT_NAME} {PATIENT_ID} {BIRTH_DATE}")
        return self.history.add(**kwargs)


def test_a_failed_history_row_is_retried_from_the_spool_and_the_report_sent_once(make_node, xray_files, pacs,
                                                                               caplog):
    caplog.set_level(logging.DEBUG)
    destination, received, _ = pacs
    client, node = make_node(forward=destination, **FAST)
    node.pipeline.history = _FailingFirst(node.pipeline.history, times=2)
    ds = _patient_instance(xray_files[1], caplog)
    assert store(node.port, [ds]) == [0x0000]
    assert node.wait_idle(60)
    assert [row["dicom"]["sop_instance_uid"] for row in client.get("/api/v1/history").json()["items"]] == [
        ds.SOPInstanceUID]
    assert [read_report(r)["source_sop_instance_uid"] for r in received] == [ds.SOPInstanceUID]
    assert node.stats.retried == 2 and node.stats.failed == 0 and node.stats.read == 1
    assert node.spool.pending(node.spool.incoming) == []
    _assert_no_patient_data(caplog)


def test_a_report_that_never_builds_is_kept_in_failed_after_its_tries(make_node, xray_files, pacs, caplog,
                                                                      monkeypatch):
    import pneumo.dicom.pipeline as pipeline

    caplog.set_level(logging.DEBUG)
    destination, received, _ = pacs

    def broken(source, result, model):
        raise ValueError(f"cannot encode {source.PatientName} born {BIRTH_DATE} ({source.PatientID})")

    monkeypatch.setattr(pipeline, "build_report", broken)
    client, node = make_node(forward=destination, read_attempts=3, **FAST)
    ds = _patient_instance(xray_files[2], caplog)
    assert store(node.port, [ds]) == [0x0000]
    assert node.wait_idle(60)
    (kept,) = node.spool.pending(node.spool.failed)
    assert b"PID-SECRET" in kept.read_bytes()  # the received instance itself, kept for a person to look at
    assert node.stats.retried == 2 and node.stats.failed == 1
    assert client.get("/api/v1/history").json()["items"] == [] and received == []
    assert client.get("/api/v1/status").json()["dicom"]["failed_files"] == 1
    assert "ValueError at test_durability.py" in _logged_text(caplog)
    _assert_no_patient_data(caplog)


def test_temporary_pacs_refusals_are_retried_with_backoff(make_node, xray_files, pacs, caplog):
    caplog.set_level(logging.DEBUG)
    destination, received, script = pacs
    script.extend([0xA700, 0xA702, 0x0110])  # out of resources twice, then a processing failure
    client, node = make_node(forward=destination, **FAST)
    ds = _patient_instance(xray_files[3], caplog)
    assert store(node.port, [ds]) == [0x0000]
    assert node.wait_idle(60)
    deadline = threading.Event()
    for _ in range(200):  # the backoff waits 0.2, 0.4, 0.8 s between the tries
        if received:
            break
        deadline.wait(0.05)
    assert [read_report(r)["source_sop_instance_uid"] for r in received] == [ds.SOPInstanceUID]
    assert script == [] and node.forwarder.refused == 0
    assert node.spool.pending(node.spool.outgoing) == [] and node.spool.pending(node.spool.failed) == []
    _assert_no_patient_data(caplog)


def test_a_permanent_pacs_refusal_is_kept_and_shown(make_node, xray_files, pacs, caplog):
    caplog.set_level(logging.DEBUG)
    destination, received, script = pacs
    script.append(0xA900)
    client, node = make_node(forward=destination, **FAST)
    assert store(node.port, [_patient_instance(xray_files[0], caplog)]) == [0x0000]
    assert node.wait_idle(60)
    dicom = client.get("/api/v1/status").json()["dicom"]
    assert dicom["reports_refused"] == 1 and dicom["failed_files"] == 1
    (refusal,) = dicom["report_refusals"]
    assert refusal["status"] == "0xA900" and refusal["sop_class"] == "Comprehensive SR Storage"
    assert (node.spool.failed / refusal["file"]).exists()
    assert received == []
    _assert_no_patient_data(caplog)


def test_a_failing_c_store_handler_and_a_failing_model_log_no_patient_data(make_node, xray_files, caplog,
                                                                           monkeypatch):
    import pneumo.dicom.scp as scp

    caplog.set_level(logging.DEBUG)
    client, node = make_node(read_attempts=2, **FAST)
    quoting = RuntimeError(f"bad header for {PATIENT_NAME} ({PATIENT_ID}, born {BIRTH_DATE})")
    with monkeypatch.context() as patch:
        patch.setattr(scp, "pixel_refusal", lambda *args: (_ for _ in ()).throw(quoting))
        assert store(node.port, [_patient_instance(xray_files[0], caplog)]) == [0xC000]
    assert "RuntimeError at test_durability.py" in _logged_text(caplog)
    _assert_no_patient_data(caplog)

    def model_fails(*args, **kwargs):
        raise RuntimeError(f"cannot read {PATIENT_NAME} ({PATIENT_ID}, born {BIRTH_DATE})")

    monkeypatch.setattr(node.predictor, "predict_many", model_fails)
    assert store(node.port, [_patient_instance(xray_files[1], caplog)]) == [0x0000]
    assert node.wait_idle(60)
    assert node.stats.retried == 1 and node.stats.failed == 1
    assert len(node.spool.pending(node.spool.failed)) == 1
    _assert_no_patient_data(caplog)
