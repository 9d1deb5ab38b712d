"""The Storage SCP alone (pynetdicom on both sides): what it accepts, what it refuses and with which status,
and that nothing acknowledged is lost. No Orthanc needed."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest
from pydicom.uid import (CTImageStorage, ComputedRadiographyImageStorage, DigitalXRayImageStorageForProcessing,
                         ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid)
from pynetdicom import AE, evt
from pynetdicom.sop_class import ComprehensiveSRStorage

from .conftest import PATIENT_ID, PATIENT_NAME, dx_instance, encode
from .scu import associate, send_half, store

from pneumo.dicom.report import read_report


def history_rows(client) -> list[dict]:
    return client.get("/api/v1/history?limit=200").json()["items"]


def test_echo_and_a_dx_instance_reach_the_history_with_uids_only(make_node, xray_files, tmp_path):
    client, node = make_node()
    assoc = associate(node.port)
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
    ds = dx_instance(xray_files[0])
    assert store(node.port, [ds]) == [0x0000]
    assert node.wait_idle(60)
    (row,) = history_rows(client)
    assert row["source"] == "dicom" and row["file_type"] == "dicom"
    assert row["dicom"] == {"study_instance_uid": ds.StudyInstanceUID, "series_instance_uid": ds.SeriesInstanceUID,
                            "sop_instance_uid": ds.SOPInstanceUID, "sop_class_uid": ds.SOPClassUID,
                            "calling_ae": "TESTSCU"}
    assert row["label"] in ("NORMAL", "PNEUMONIA") and 0.0 <= row["probability"] <= 1.0
    # The same reading as the Predictor on the same bytes.
    expected = node.predictor.predict(encode(ds))
    assert row["probability"] == pytest.approx(expected.probability, abs=1e-6)
    assert row["label"] == expected.label
    # No patient name or id anywhere in the database file.
    database = (tmp_path / "data" / "history.sqlite3").read_bytes() + (
        tmp_path / "data" / "history.sqlite3-wal").read_bytes()
    assert PATIENT_NAME.encode() not in database and PATIENT_ID.encode() not in database
    assert client.get("/api/v1/status").json()["dicom"]["read"] == 1
    assert not list((tmp_path / "data" / "dicom" / "incoming").iterdir())  # spool emptied once read


@pytest.mark.parametrize("sop_class", [DigitalXRayImageStorageForProcessing, ComputedRadiographyImageStorage,
                                       SecondaryCaptureImageStorage])
def test_dx_for_processing_cr_and_secondary_capture_are_accepted(make_node, xray_files, sop_class):
    client, node = make_node()
    assert store(node.port, [dx_instance(xray_files[1], sop_class=sop_class)]) == [0x0000]
    assert node.wait_idle(60)
    assert history_rows(client)[0]["dicom"]["sop_class_uid"] == sop_class


def test_lateral_views_and_other_body_parts_are_unknown_with_the_reason(make_node, xray_files):
    client, node = make_node()
    lateral = dx_instance(xray_files[0], view="LL")
    hand = dx_instance(xray_files[0], body_part="HAND")
    assert store(node.port, [lateral, hand]) == [0x0000, 0x0000]
    assert node.wait_idle(60)
    rows = {r["dicom"]["sop_instance_uid"]: r for r in history_rows(client)}
    assert rows[lateral.SOPInstanceUID]["label"] == "UNKNOWN"
    assert "lateral view (ViewPosition LL" in rows[lateral.SOPInstanceUID]["result"]["unknown_reason"]
    assert rows[hand.SOPInstanceUID]["label"] == "UNKNOWN"
    assert "BodyPartExamined HAND" in rows[hand.SOPInstanceUID]["result"]["unknown_reason"]
    assert rows[hand.SOPInstanceUID]["probability"] is None


def test_refusals_carry_a_dimse_status_and_leave_no_row(make_node, xray_files):
    client, node = make_node()
    ct = dx_instance(xray_files[0], sop_class=CTImageStorage)
    no_pixels = dx_instance(xray_files[0])
    del no_pixels.PixelData
    truncated = dx_instance(xray_files[0])
    truncated.PixelData = truncated.PixelData[: len(truncated.PixelData) // 3]
    assert store(node.port, [ct, no_pixels, truncated]) == [0x0122, 0xA900, 0xC000]
    # An SOP class nobody knows: its presentation context is refused at association, the rest still works.
    assoc = associate(node.port, ["1.2.826.0.1.3680043.9.9999.1"])
    assert assoc.is_established
    (context,) = [c for c in assoc.rejected_contexts if c.abstract_syntax == "1.2.826.0.1.3680043.9.9999.1"]
    assert context.result != 0x00
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
    assert node.wait_idle(30)
    assert history_rows(client) == []
    assert node.stats.refused == 3


def test_calling_ae_not_on_the_allow_list_is_rejected_at_association(make_node, xray_files):
    client, node = make_node(allow=("MODALITY1", "ORTHANC"))
    assoc = associate(node.port, calling="INTRUDER")
    assert assoc.is_rejected
    assoc = associate(node.port, calling="MODALITY1")
    assert assoc.is_established
    assoc.release()


@pytest.mark.parametrize("then", ["abort", "close"])
def test_a_transfer_cut_off_midway_loses_nothing_acknowledged_and_the_node_stays_up(make_node, xray_files, then):
    client, node = make_node()
    first = dx_instance(xray_files[0])
    cut = dx_instance(xray_files[1], size=None)  # full size: many PDUs
    assoc = associate(node.port, [first.SOPClassUID])
    assert assoc.is_established
    assert assoc.send_c_store(first).Status == 0x0000
    send_half(assoc, cut, then=then)
    assert node.wait_idle(60)
    # The node still answers, and a new transfer works.
    after = dx_instance(xray_files[2])
    assert store(node.port, [after]) == [0x0000]
    assert node.wait_idle(60)
    uids = {r["dicom"]["sop_instance_uid"] for r in history_rows(client)}
    assert uids == {first.SOPInstanceUID, after.SOPInstanceUID}


def test_instances_left_in_the_spool_are_read_on_the_next_start(make_node, xray_files, tmp_path):
    spool = tmp_path / "data" / "dicom" / "incoming"
    spool.mkdir(parents=True)
    ds = dx_instance(xray_files[3])
    (spool / "00000000000000000001-1-000001-in.dcm").write_bytes(encode(ds))
    client, node = make_node()
    assert node.wait_idle(60)
    assert history_rows(client)[0]["dicom"]["sop_instance_uid"] == ds.SOPInstanceUID


@pytest.fixture
def store_scp():
    """A pynetdicom Storage SCP standing in for the PACS: collects what pneumo forwards."""
    received = []
    lock = threading.Lock()

    def on_store(event):
        ds = event.dataset
        ds.file_meta = event.file_meta
        ds.received_over = id(event.assoc)  # which association brought it (not a DICOM attribute)
        with lock:
            received.append(ds)
        return 0x0000

    ae = AE(ae_title="FAKEPACS")
    ae.add_supported_context(ComprehensiveSRStorage, ExplicitVRLittleEndian)
    ae.add_supported_context(SecondaryCaptureImageStorage, ExplicitVRLittleEndian)
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    yield server.server_address[1], received
    server.shutdown()


def test_reports_go_to_the_forward_destination_in_the_source_study(make_node, xray_files, store_scp):
    from pneumo.dicom.settings import Destination

    port, received = store_scp
    client, node = make_node(forward=Destination("FAKEPACS", "127.0.0.1", port), gradcam=True)
    frontal, lateral = dx_instance(xray_files[0]), dx_instance(xray_files[1], view="RL")
    assert store(node.port, [frontal, lateral]) == [0, 0]
    assert node.wait_idle(120)
    reports = {read_report(r)["source_sop_instance_uid"]: r for r in received if r.Modality == "SR"}
    overlays = [r for r in received if r.Modality == "OT"]
    assert set(reports) == {frontal.SOPInstanceUID, lateral.SOPInstanceUID}
    rows = {r["dicom"]["sop_instance_uid"]: r for r in history_rows(client)}
    content = read_report(reports[frontal.SOPInstanceUID])
    assert reports[frontal.SOPInstanceUID].StudyInstanceUID == frontal.StudyInstanceUID
    assert content["probability"] == pytest.approx(rows[frontal.SOPInstanceUID]["probability"], abs=1e-6)
    assert content["finding"] == {"PNEUMONIA": "Pneumonia", "NORMAL": "No pneumonia"}[
        rows[frontal.SOPInstanceUID]["label"]]
    assert content["threshold"] == pytest.approx(rows[frontal.SOPInstanceUID]["result"]["threshold"])
    # The version, then which bundle exactly (name@hash), as the history row records it.
    row = rows[frontal.SOPInstanceUID]
    assert row["model"]["id"] and content["algorithm_version"] == f"{row['model_version']} {row['model']['id']}"
    assert "not a diagnosis" in content["comment"]
    unknown = read_report(reports[lateral.SOPInstanceUID])
    assert unknown["finding"] == "Not assessed" and "lateral" in unknown["reason"] and "probability" not in unknown
    # Grad-CAM: only for the assessed image, marked derived, in the same study, pointing at its source.
    (overlay,) = overlays
    assert list(overlay.ImageType)[:2] == ["DERIVED", "SECONDARY"] and "DERIVED" in overlay.SeriesDescription
    assert overlay.SourceImageSequence[0].ReferencedSOPInstanceUID == frontal.SOPInstanceUID
    assert overlay.StudyInstanceUID == frontal.StudyInstanceUID
    assert rows[frontal.SOPInstanceUID]["has_heatmap"] is True
    assert client.get("/api/v1/status").json()["dicom"]["reports_sent"] == 3


def _node_whose_pacs_is_down(make_node, ds, **settings):
    """A node forwarding to a port where no PACS listens yet, after it read ``ds``: its report waits."""
    from pneumo.dicom.settings import Destination
    from pneumo_testsupport.net import free_port

    port = free_port()
    client, node = make_node(forward=Destination("FAKEPACS", "127.0.0.1", port), **settings)
    assert store(node.port, [ds]) == [0]
    assert node.wait_idle(60)
    assert client.get("/api/v1/status").json()["dicom"]["reports_waiting"] == 1
    return client, node, port


@contextmanager
def _pacs_comes_up(port: int):
    """A Storage SCP on ``port`` from now on; yields the list of what it receives."""
    received = []
    ae = AE(ae_title="FAKEPACS")
    ae.add_supported_context(ComprehensiveSRStorage, ExplicitVRLittleEndian)
    server = ae.start_server(("127.0.0.1", port), block=False,
                             evt_handlers=[(evt.EVT_C_STORE, lambda e: received.append(e.dataset) or 0)])
    try:
        yield received
    finally:
        server.shutdown()


def test_reports_wait_in_the_spool_while_the_pacs_is_down_and_go_when_it_is_back(make_node, xray_files):
    first, second = dx_instance(xray_files[0]), dx_instance(xray_files[1])
    client, node, port = _node_whose_pacs_is_down(make_node, first)
    with _pacs_comes_up(port) as received:
        assert store(node.port, [second]) == [0]
        assert node.wait_idle(60)
    assert sorted(read_report(r)["source_sop_instance_uid"] for r in received) == sorted(
        [first.SOPInstanceUID, second.SOPInstanceUID])
    assert client.get("/api/v1/status").json()["dicom"]["reports_waiting"] == 0


def test_a_delivery_spreads_the_reports_over_several_associations_and_sends_each_once(xray_files, store_scp, tmp_path):
    from pneumo.dicom.forward import Forwarder
    from pneumo.dicom.pipeline import encode as _encode
    from pneumo.dicom.report import ModelInfo, build_report
    from pneumo.dicom.settings import Destination
    from pneumo.dicom.spool import Spool

    port, received = store_scp
    spool = Spool(tmp_path / "spool")
    sources = [dx_instance(xray_files[i % len(xray_files)]) for i in range(7)]
    result = {"label": "NORMAL", "probability": 0.2, "threshold": 0.5}
    for ds in sources:
        spool.put(spool.outgoing, _encode(build_report(ds, result, ModelInfo("pneumo test", "1"))), "sr")
    forwarder = Forwarder(Destination("FAKEPACS", "127.0.0.1", port), "PNEUMO", spool, associations=3)
    assert forwarder.flush() == 7
    assert sorted(read_report(r)["source_sop_instance_uid"] for r in received) == sorted(
        ds.SOPInstanceUID for ds in sources)
    assert len({r.received_over for r in received}) == 3
    assert forwarder.sent == 7 and spool.pending(spool.outgoing) == []


def test_undelivered_reports_are_tried_again_without_waiting_for_a_new_instance(make_node, xray_files):
    ds = dx_instance(xray_files[0])
    client, node, port = _node_whose_pacs_is_down(make_node, ds, retry_seconds=0.3)
    with _pacs_comes_up(port) as received:
        deadline = time.monotonic() + 30
        while not received and time.monotonic() < deadline:
            time.sleep(0.1)
    assert [read_report(r)["source_sop_instance_uid"] for r in received] == [ds.SOPInstanceUID]
    assert client.get("/api/v1/status").json()["dicom"]["reports_waiting"] == 0


def test_both_ends_of_an_association_send_without_delay(make_node):
    from pneumo.dicom.tcp import CONNECTION_HANDLERS

    client, node = make_node()
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", node.port, ae_title="PNEUMO", evt_handlers=CONNECTION_HANDLERS)
    try:
        assert assoc.is_established
        assert assoc.dul.socket.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        (accepted,) = node._server.active_associations
        assert accepted.dul.socket.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        assoc.release()


def test_a_source_without_patient_or_study_attributes_still_gets_a_report(xray_files):
    from pneumo.dicom.report import ModelInfo, build_report

    source = dx_instance(xray_files[0], sop_class=SecondaryCaptureImageStorage)
    for keyword in ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                    "StudyDate", "StudyTime", "ReferringPhysicianName"):
        delattr(source, keyword)
    report = build_report(source, {"label": "PNEUMONIA", "probability": 0.9, "threshold": 0.5},
                          ModelInfo("pneumo test", "1"))
    assert report.PatientID == "" and report.StudyInstanceUID == source.StudyInstanceUID
    assert read_report(report)["source_sop_instance_uid"] == source.SOPInstanceUID
    assert "PatientID" not in source  # the caller's dataset is left as it was


def test_an_out_of_distribution_reading_carries_its_warning_into_the_report(xray_files):
    from pneumo.dicom.report import ModelInfo, build_report

    source = dx_instance(xray_files[0])
    reading = {"label": "NORMAL", "probability": 0.2, "threshold": 0.5, "out_of_distribution": True,
               "ood_reason": "a chest X-ray unlike the training population (feature distance 40.0 ...)"}
    warned = read_report(build_report(source, reading, ModelInfo("pneumo test", "1")))
    assert warned["finding"] == "No pneumonia" and warned["probability"] == pytest.approx(0.2)
    assert warned["ood_warning"].startswith("a chest X-ray unlike the training population")
    plain = read_report(build_report(source, {**reading, "out_of_distribution": False, "ood_reason": None},
                                     ModelInfo("pneumo test", "1")))
    assert "ood_warning" not in plain and plain["finding"] == "No pneumonia"
