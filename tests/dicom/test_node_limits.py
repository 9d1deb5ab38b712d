"""The node's own limits over real associations: DICOM TLS (with and without client certificates), the spool
quota, deflate off by default, and a multi-frame instance refused from its header."""

from __future__ import annotations

import shutil
import time
import socket
import ssl
import subprocess

import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian, DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian
from pynetdicom import AE

from .conftest import dx_instance
from .scu import associate, store


def _self_signed(folder, name: str):
    """A self-signed certificate for 127.0.0.1 and its key, made with the openssl CLI (P-256: quick to make)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", f"/CN={name}",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def _tls_store(port: int, ds, server_cert, client=None) -> int:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(server_cert))
    if client is not None:
        context.load_cert_chain(*map(str, client))
    ae = AE(ae_title="TLSSCU")
    ae.add_requested_context(ds.SOPClassUID, ExplicitVRLittleEndian)
    ae.acse_timeout = ae.network_timeout = 10
    assoc = ae.associate("127.0.0.1", port, ae_title="PNEUMO", tls_args=(context, "127.0.0.1"))
    if not assoc.is_established:
        return -2
    try:
        return int(assoc.send_c_store(ds).Status)
    finally:
        assoc.release()


def test_dicom_tls_serves_tls_only_and_a_silent_peer_blocks_no_one(make_node, xray_files, tmp_path):
    from pneumo.dicom.settings import TlsFiles

    cert, key = _self_signed(tmp_path, "node")
    client, node = make_node(tls=TlsFiles(cert, key))
    silent = socket.create_connection(("127.0.0.1", node.port))  # connects, never says a word
    try:
        assert _tls_store(node.port, dx_instance(xray_files[0]), cert) == 0x0000
    finally:
        silent.close()
    plain = associate(node.port)
    assert not plain.is_established
    assert node.wait_idle(60)
    assert client.get("/api/v1/status").json()["dicom"]["tls"] is True


def test_with_a_ca_only_senders_with_a_certificate_it_signed_get_in(make_node, xray_files, tmp_path):
    from pneumo.dicom.settings import TlsFiles

    cert, key = _self_signed(tmp_path, "node")
    sender = _self_signed(tmp_path, "sender")
    stranger = _self_signed(tmp_path, "stranger")
    client, node = make_node(tls=TlsFiles(cert, key, ca=sender[0]))
    ds = dx_instance(xray_files[1])
    assert _tls_store(node.port, ds, cert) == -2  # no client certificate
    assert _tls_store(node.port, ds, cert, client=stranger) == -2  # one the CA did not sign
    assert _tls_store(node.port, ds, cert, client=sender) == 0x0000


def test_the_spool_quota_answers_out_of_resources_and_the_node_recovers(make_node, xray_files, tmp_path):
    kept = tmp_path / "data" / "dicom" / "failed" / "00000000000000000001-1-000001-in.dcm"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(bytes(100_000))  # an instance kept for a person to look at, still on the disk
    client, node = make_node(spool_quota_bytes=200_000)  # room for one 256 px instance (130 KB) beside it
    ds = dx_instance(xray_files[0])
    assert store(node.port, [ds]) == [0xA700]
    assert node.stats.refused == 1 and node.spool.pending(node.spool.incoming) == []
    kept.unlink()  # the person cleaned up: the sender's next try gets in
    assert store(node.port, [ds]) == [0x0000]
    assert node.wait_idle(60)
    assert [r["dicom"]["sop_instance_uid"] for r in client.get("/api/v1/history").json()["items"]] == [
        ds.SOPInstanceUID]


def test_deflate_is_not_offered_unless_asked_for(make_node):
    client, node = make_node()
    assoc = associate(node.port)
    assoc.release()
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(DigitalXRayImageStorageForPresentation, DeflatedExplicitVRLittleEndian)
    ae.add_requested_context(DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", node.port, ae_title="PNEUMO")
    try:
        accepted = {c.transfer_syntax[0] for c in assoc.accepted_contexts}
        assert accepted == {ExplicitVRLittleEndian}
    finally:
        assoc.release()


def test_a_multi_frame_instance_is_refused_from_its_header(make_node, xray_files):
    client, node = make_node()
    ds = dx_instance(xray_files[0], size=64)
    ds.NumberOfFrames = 2
    ds.PixelData = ds.PixelData * 2
    assert store(node.port, [ds]) == [0xA900]
    assert node.wait_idle(30) and client.get("/api/v1/history").json()["items"] == []


def _sized(ds, side: int):
    """``ds`` with its pixels tiled up to ``side`` x ``side`` (16 bits)."""
    import numpy as np

    pixels = np.frombuffer(ds.PixelData, np.uint16).reshape(ds.Rows, ds.Columns)
    tiled = np.tile(pixels, (side // ds.Rows + 1, side // ds.Columns + 1))[:side, :side]
    ds.Rows, ds.Columns, ds.PixelData = side, side, np.ascontiguousarray(tiled).tobytes()
    return ds


def test_datasets_in_memory_share_one_budget_across_associations(make_node, xray_files):
    from .scu import send_half

    client, node = make_node(max_dataset_bytes=4 << 20, memory_budget_bytes=5 << 20)
    slow = _sized(dx_instance(xray_files[0]), 1300)  # 1300 px, 16 bits: 3.4 MB
    assoc = associate(node.port, [slow.SOPClassUID])
    send_half(assoc, slow, then="hold", fraction=0.9)  # a sender that stalls with 3 MB of its dataset sent
    deadline = time.monotonic() + 30
    while node.guard.budget.used < 3_000_000 and time.monotonic() < deadline:  # 3 MB, not 3 MiB: 0.9 x 3.4 MB
        time.sleep(0.05)
    other = _sized(dx_instance(xray_files[1]), 1300)
    assert store(node.port, [other]) == [0xA700]  # no room beside the stalled one: try again later
    assoc.dul.socket.close()  # the stalled sender goes away: its bytes are given back
    assoc.kill()
    deadline = time.monotonic() + 30
    while node.guard.budget.used and time.monotonic() < deadline:
        time.sleep(0.05)
    assert node.guard.budget.used == 0
    assert store(node.port, [other]) == [0x0000]
