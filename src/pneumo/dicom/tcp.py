"""How DICOM associations use their sockets (no Nagle delay; whole PDUs per read), set through pynetdicom's
EVT_CONN_OPEN notification."""

from __future__ import annotations

import socket
from typing import Any

from pynetdicom import evt


def send_without_delay(event: Any) -> None:
    """Turn off Nagle's algorithm on the association's socket. A C-STORE ends with small PDUs (the response, the
    last fragment of a dataset) that would otherwise wait for the peer's delayed ACK: measured on loopback against
    Orthanc, 95 ms per C-STORE with it, 55 ms without."""
    sock = event.assoc.dul.socket.socket if event.assoc.dul.socket is not None else None
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# What a PDU's buffer starts at: a whole detector-sized instance (7.6 MB at 2,048 px, 16 bits). A larger PDU grows
# its buffer as its bytes arrive, so a length field claiming gigabytes does not reserve them.
FIRST_ALLOCATION = 16 << 20


def receive_exactly(sock: socket.socket, size: int, first_allocation: int = FIRST_ALLOCATION) -> bytearray:
    """``size`` bytes from ``sock``, read into one buffer with as few calls as the kernel allows; fewer when the
    peer closes the connection first (what pynetdicom's own reader returns then, so it reports the short PDU)."""
    buffer = bytearray(min(size, first_allocation))
    received = 0
    while received < size:
        if received == len(buffer):
            buffer.extend(bytes(min(len(buffer), size - len(buffer))))  # doubling, at most to ``size``
        with memoryview(buffer) as view:
            count = sock.recv_into(view[received:])
        if count == 0:
            break
        received += count
    del buffer[received:]
    return buffer


def read_whole_pdus(event: Any) -> None:
    """Have the association read each PDU with as few socket calls as possible. pynetdicom reads 4 KB per call
    (``AssociationSocket.recv``), and every call gives up Python's GIL and waits to take it back behind the
    model and report threads: 1,860 waits per 7.6 MB instance."""
    association_socket = event.assoc.dul.socket
    if association_socket is not None and association_socket.socket is not None:
        raw = association_socket.socket
        association_socket.recv = lambda size: receive_exactly(raw, size)


CONNECTION_HANDLERS = [(evt.EVT_CONN_OPEN, send_without_delay)]
# For a receiver without limits (bench_dicom_receive.py); the node reads through pneumo.dicom.guard, which adds the
# PDU length limit to the same reading. The forwarder's associations only receive short responses.
RECEIVING_HANDLERS = [*CONNECTION_HANDLERS, (evt.EVT_CONN_OPEN, read_whole_pdus)]
