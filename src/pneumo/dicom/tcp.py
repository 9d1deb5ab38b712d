"""Socket options for DICOM associations, set through pynetdicom's EVT_CONN_OPEN notification."""

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


CONNECTION_HANDLERS = [(evt.EVT_CONN_OPEN, send_without_delay)]
