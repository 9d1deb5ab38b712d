"""The DICOM node against hostile peers (``dicom_network.py``): every send gets a DIMSE failure status or a
refused association, never Success; nothing of it reaches the history; the node stays up and a good C-STORE
afterwards succeeds. Also: a spoofed AE title from an address not allowed, and more associations than allowed."""

from __future__ import annotations

import logging

import pytest

pytest.importorskip("pynetdicom", reason="the DICOM node needs the dicom extra: pip install 'pneumo[dicom]'")

from pydicom.uid import ExplicitVRLittleEndian  # noqa: E402

from conftest import node_starter  # noqa: E402  the shared tests/conftest.py

from pneumo_testsupport.dicom_network import (PATIENT_ID, PATIENT_NAME, REFUSED, associate, corpus,  # noqa: E402
                                             explicit_le, good_dx, store_encoded)

MIB = 1 << 20


@pytest.fixture
def start_node(tmp_path, session_bundle):
    """pneumo with its DICOM node on a free loopback port and small limits; returns (client, node)."""
    with node_starter(session_bundle, tmp_path / "data", max_dataset_bytes=4 * MIB, max_image_bytes=4 * MIB,
                      max_pdu=64 << 10) as start:
        yield start


def _good_store_succeeds(node) -> bool:
    ds = good_dx()
    return store_encoded("127.0.0.1", node.port, ds, explicit_le(ds), ExplicitVRLittleEndian) == 0x0000


@pytest.mark.parametrize("deflate", [False, True], ids=["deflate off (default)", "deflate on"])
def test_every_hostile_send_is_refused_and_the_node_stays_up(start_node, caplog, deflate):
    caplog.set_level(logging.DEBUG)
    client, node = start_node(accept_deflate=deflate)
    outcomes = {}
    for hostile in corpus(deflate_inflated=64 * MIB, dataset_bytes=5 * MIB, frames=128, side=2000):
        outcomes[hostile.name] = hostile.send("127.0.0.1", node.port)
        assert outcomes[hostile.name] in hostile.expected, (hostile.name, hex(outcomes[hostile.name]))
    if deflate:  # offered, so inflated under the cap and refused as too large
        assert outcomes["deflate bomb"] == 0xA700
    else:
        assert outcomes["deflate bomb"] == REFUSED
    assert _good_store_succeeds(node)
    assert node.wait_idle(60)
    rows = client.get("/api/v1/history").json()["items"]
    assert len(rows) == 1  # only the good instance
    assert node.spool.pending(node.spool.failed) == []
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert PATIENT_NAME not in text and PATIENT_ID not in text


def test_a_spoofed_ae_title_from_an_address_not_allowed_is_rejected(start_node):
    client, node = start_node(allow=("ORTHANC@127.0.0.2",))
    ds = good_dx()
    # The right AE title from the wrong address: rejected at association (127.0.0.1 is not 127.0.0.2).
    spoofed = associate("127.0.0.1", node.port, calling="ORTHANC", bind="127.0.0.1")
    assert spoofed.is_rejected
    assert store_encoded("127.0.0.1", node.port, ds, explicit_le(ds), ExplicitVRLittleEndian, calling="ORTHANC",
                         bind="127.0.0.1") == REFUSED
    # Another AE title from the right address: rejected too.
    assert associate("127.0.0.1", node.port, calling="OTHER", bind="127.0.0.2").is_rejected
    # The pair that is allowed works.
    assert store_encoded("127.0.0.1", node.port, ds, explicit_le(ds), ExplicitVRLittleEndian, calling="ORTHANC",
                         bind="127.0.0.2") == 0x0000
    assert node.stats.refused == 3


def test_associations_over_the_limit_are_rejected_as_transient(start_node):
    client, node = start_node(max_associations=2)
    held = [associate("127.0.0.1", node.port) for _ in range(2)]
    assert all(assoc.is_established for assoc in held)
    extra = associate("127.0.0.1", node.port)
    assert extra.is_rejected
    assert extra.acceptor.primitive.result == 0x02  # rejected transient: the sender may try again later
    for assoc in held:
        assoc.release()
    assert _good_store_succeeds(node)
