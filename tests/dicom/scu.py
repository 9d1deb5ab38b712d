"""A small C-STORE SCU for the tests (pynetdicom), including transfers cut off half-way."""

from __future__ import annotations

import io
import time

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.sop_class import Verification
from pydicom.uid import ExplicitVRLittleEndian

# A-ABORT-RQ: PDU type 7, length 4, reserved, source 0 (service user), reason 0 (PS3.8 9.3.8)
A_ABORT = b"\x07\x00\x00\x00\x00\x04\x00\x00\x00\x00"


def associate(port: int, sop_classes=(), *, calling: str = "TESTSCU", called: str = "PNEUMO", max_pdu: int = 16384):
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    for sop_class in sop_classes:
        ae.add_requested_context(sop_class, ExplicitVRLittleEndian)
    ae.maximum_pdu_size = max_pdu
    return ae.associate("127.0.0.1", port, ae_title=called)


def store(port: int, datasets: list[Dataset], **kwargs) -> list[int]:
    """C-STORE each dataset over one association; the DIMSE status of each (-1: no answer)."""
    assoc = associate(port, sorted({str(ds.SOPClassUID) for ds in datasets}), **kwargs)
    assert assoc.is_established, "the node refused the association"
    try:
        statuses = []
        for ds in datasets:
            status = assoc.send_c_store(ds)
            statuses.append(int(status.Status) if status and "Status" in status else -1)
        return statuses
    finally:
        assoc.release()


def send_half(assoc, ds: Dataset, *, then: str, fraction: float = 0.5) -> None:
    """Send the first half (``fraction``) of a C-STORE's PDUs straight onto the association's socket, then either
    an A-ABORT (``then="abort"``), nothing at all before the connection drops (``then="close"``: a truncated
    transfer), or nothing, leaving the connection open (``then="hold"``: a slow sender)."""
    context = next(c for c in assoc.accepted_contexts if c.abstract_syntax == ds.SOPClassUID)
    request = C_STORE()
    request.MessageID = 99
    request.AffectedSOPClassUID = ds.SOPClassUID
    request.AffectedSOPInstanceUID = ds.SOPInstanceUID
    request.Priority = 2
    request.DataSet = io.BytesIO(encode(ds, False, True))
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    pdus = []
    for primitive in message.encode_msg(context.context_id, 16384):
        pdu = P_DATA_TF()
        pdu.from_primitive(primitive)
        pdus.append(pdu.encode())
    assert len(pdus) > 4, "make the dataset larger so the cut lands mid-transfer"
    sock = assoc.dul.socket.socket
    for data in pdus[: int(len(pdus) * fraction)]:
        sock.sendall(data)
    if then == "hold":
        return
    if then == "abort":
        sock.sendall(A_ABORT)
    time.sleep(0.2)
    assoc.dul.socket.close()
    assoc.kill()
