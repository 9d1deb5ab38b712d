"""A hostile-input corpus for the DICOM node's network side: what a broken or malicious peer can send.

Each :class:`HostileSend` sends one thing to a node and returns what came back: a DIMSE status, or that the
association (or the connection) was refused or ended. The node passes when every send gets a failure status or a
refusal, never Success, and a good C-STORE afterwards still succeeds. Shared by
``test_dicom_network_corpus.py`` (small sizes, in CI) and ``bench/bench_dicom_hostile.py`` (full sizes, RSS).
"""

from __future__ import annotations

import io
import socket
import struct
import time
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import (DeflatedExplicitVRLittleEndian, DigitalXRayImageStorageForPresentation,
                         ExplicitVRLittleEndian, JPEGLSLossless, generate_uid)
from pynetdicom import AE
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.sop_class import Verification

PATIENT_NAME = "Hostile^Mallory"
PATIENT_ID = "PID-HOSTILE-0666"
REFUSED = -2  # the association or connection was refused, rejected or ended: no DIMSE status came back


def dx_header(rows: int, columns: int, *, frames: int | None = None, bits: int = 16) -> Dataset:
    """A DX header (no pixel data) declaring ``rows`` x ``columns`` (x ``frames``) pixels."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = DigitalXRayImageStorageForPresentation, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = PATIENT_NAME, PATIENT_ID, "19800101"
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "DX", "CHEST", "PA"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = rows, columns, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    if frames is not None:
        ds.NumberOfFrames = frames
    return ds


def good_dx(side: int = 96, seed: int = 0) -> Dataset:
    """A small, valid DX instance (smooth noise, 12 bits stored)."""
    ds = dx_header(side, side)
    ds.BitsStored, ds.HighBit = 12, 11
    rng = np.random.default_rng(seed)
    ds.PixelData = (rng.random((side, side)) * 4095).astype(np.uint16).tobytes()
    return ds


def explicit_le(ds: Dataset, pixel_bytes: int = 0) -> bytes:
    """``ds`` encoded as explicit VR little endian, followed by a Pixel Data element of ``pixel_bytes`` zeros."""
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, ds)
    header = buffer.getvalue()
    if not pixel_bytes:
        return header
    # (7FE0,0010) OW, reserved, 4-byte length (PS3.5 7.1.2)
    return header + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, pixel_bytes) + bytes(pixel_bytes)


def deflate_bomb(inflated_bytes: int) -> tuple[Dataset, bytes]:
    """A DX header declaring a single 16-bit frame and a Pixel Data of ``inflated_bytes`` zeros, raw-deflated
    (PS3.5 A.5) chunk by chunk: about 1,000 times smaller than what it inflates to."""
    side = int((inflated_bytes // 2) ** 0.5)
    ds = dx_header(side, side)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    head = explicit_le(ds)
    out = [compressor.compress(head + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, inflated_bytes))]
    chunk, left = bytes(1 << 20), inflated_bytes
    while left:
        out.append(compressor.compress(chunk[:min(left, len(chunk))]))
        left -= min(left, len(chunk))
    out.append(compressor.flush())
    return ds, b"".join(out)


def associate(host: str, port: int, *, calling: str = "HOSTILE", contexts=(), bind: str | None = None,
              max_pdu: int = 0, ssl_context=None):
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    for sop_class, syntax in contexts:
        ae.add_requested_context(sop_class, syntax)
    ae.maximum_pdu_size = max_pdu
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    kwargs = {"bind_address": (bind, 0)} if bind else {}
    if ssl_context is not None:
        kwargs["tls_args"] = (ssl_context, None)
    return ae.associate(host, port, ae_title="PNEUMO", **kwargs)


def send_encoded(assoc, ds: Dataset, encoded: bytes, syntax: str) -> int:
    """C-STORE already encoded dataset bytes over an accepted context for ``syntax``; the status, or REFUSED."""
    contexts = [c for c in assoc.accepted_contexts
                if c.abstract_syntax == ds.SOPClassUID and c.transfer_syntax[0] == syntax]
    if not contexts:
        return REFUSED  # the node did not accept this transfer syntax at association
    request = C_STORE()
    request.MessageID, request.Priority = 1, 2
    request.AffectedSOPClassUID, request.AffectedSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    request.DataSet = io.BytesIO(encoded)
    assoc._reactor_checkpoint.clear()  # as send_c_store does: no race with the association's reactor
    while not assoc._is_paused:
        time.sleep(0.0001)
    assoc.dimse.send_msg(request, contexts[0].context_id)
    _, response = assoc.dimse.get_msg(block=True)
    assoc._reactor_checkpoint.set()
    return int(response.Status) if response is not None and response.Status is not None else REFUSED


def store_encoded(host: str, port: int, ds: Dataset, encoded: bytes, syntax: str, **kwargs) -> int:
    assoc = associate(host, port, contexts=[(ds.SOPClassUID, syntax)], **kwargs)
    if not assoc.is_established:
        return REFUSED
    try:
        return send_encoded(assoc, ds, encoded, syntax)
    finally:
        if assoc.is_established:
            assoc.release()


def raw_connection_ends(host: str, port: int, data: bytes, *, timeout: float = 30.0) -> int:
    """Write ``data`` on a bare TCP connection (no association); REFUSED once the node closes it or answers with
    an A-ASSOCIATE-RJ or A-ABORT, else the first byte it answered (a PDU type)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            answer = sock.recv(1)
        except (ConnectionResetError, BrokenPipeError):
            return REFUSED
    return REFUSED if not answer or answer[0] in (0x03, 0x07) else answer[0]


def huge_pdu_in_association(host: str, port: int, length: int = 0xFFFFFFF0) -> int:
    """Associate, then announce a P-DATA-TF of ``length`` bytes and send 64 KB of it: the node must end the
    association without waiting for (or reserving) the rest."""
    assoc = associate(host, port)
    if not assoc.is_established:
        return REFUSED
    sock = assoc.dul.socket.socket
    try:
        sock.sendall(struct.pack(">BBL", 0x04, 0, length) + bytes(64 << 10))
    except OSError:
        pass
    deadline = time.monotonic() + 30
    while assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.05)
    ended = not assoc.is_established
    assoc.kill()
    return REFUSED if ended else 0x0000


def cut_mid_pdu(host: str, port: int) -> int:
    """Associate, then send half of a P-DATA-TF PDU (of a length the node accepts) and close the socket."""
    assoc = associate(host, port)
    if not assoc.is_established:
        return REFUSED
    sock = assoc.dul.socket.socket
    sock.sendall(struct.pack(">BBL", 0x04, 0, 8_000) + bytes(4_000))
    sock.shutdown(socket.SHUT_RDWR)
    assoc.kill()
    return REFUSED


@dataclass
class HostileSend:
    name: str
    send: Callable[[str, int], int]  # (host, port) -> status or REFUSED
    expected: tuple[int, ...]  # statuses (or REFUSED) that are a correct answer


def corpus(*, deflate_inflated: int, dataset_bytes: int, frames: int = 128, side: int = 2000) -> list[HostileSend]:
    """The hostile sends, sized for a node whose dataset limit is below ``dataset_bytes`` and
    ``deflate_inflated``."""
    bomb, deflated = deflate_bomb(deflate_inflated)
    multi = dx_header(side, side, frames=frames)
    giant = dx_header(30_000, 30_000)
    oversize_side = int((dataset_bytes // 2) ** 0.5) + 1
    oversize = dx_header(oversize_side, oversize_side)
    jpeg_ls = dx_header(side, side, frames=frames)
    return [
        HostileSend("deflate bomb", lambda h, p: store_encoded(h, p, bomb, deflated, DeflatedExplicitVRLittleEndian),
                    (REFUSED, 0xA700)),
        HostileSend("multi-frame bomb (native header, 4 KB of pixels)",
                    lambda h, p: store_encoded(h, p, multi, explicit_le(multi, 4096), ExplicitVRLittleEndian),
                    (0xA900,)),
        HostileSend("multi-frame JPEG-LS (compressed syntaxes are not offered)",
                    lambda h, p: store_encoded(h, p, jpeg_ls, explicit_le(jpeg_ls, 4096), JPEGLSLossless),
                    (REFUSED,)),
        HostileSend("30000 x 30000 header", lambda h, p: store_encoded(h, p, giant, explicit_le(giant, 4096),
                                                                       ExplicitVRLittleEndian), (0xA700,)),
        HostileSend("oversize dataset", lambda h, p: store_encoded(
            h, p, oversize, explicit_le(oversize, oversize_side ** 2 * 2), ExplicitVRLittleEndian), (0xA700,)),
        HostileSend("huge PDU length before association", lambda h, p: raw_connection_ends(
            h, p, b"\x01\x00\xff\xff\xff\xf0" + bytes(1024)), (REFUSED,)),
        HostileSend("huge PDU length in an association", huge_pdu_in_association, (REFUSED,)),
        HostileSend("connection closed mid-PDU", cut_mid_pdu, (REFUSED,)),
    ]
