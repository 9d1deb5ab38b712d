"""DICOM TLS (PS3.15 B.1) for the node's listener: an ``ssl.SSLContext`` for pynetdicom's ``start_server``."""

from __future__ import annotations

import socket
import ssl
from typing import Any

from pneumo.dicom.settings import TlsFiles


class _HandshakeInAssociationThread(ssl.SSLContext):
    """pynetdicom wraps each accepted socket in the thread that accepts connections; with the handshake done on
    wrapping, one peer that connects and stays silent would stop every other connection. Deferred, the handshake
    runs on the association's first read, in its own thread, under its own timeouts."""

    def wrap_socket(self, sock: socket.socket, *args: Any, **kwargs: Any) -> ssl.SSLSocket:  # type: ignore[override]
        kwargs["do_handshake_on_connect"] = False
        return super().wrap_socket(sock, *args, **kwargs)


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """TLS 1.2 or later with the node's certificate; with ``files.ca``, senders must present a certificate it
    signed. Errors name the file that could not be used."""
    context = _HandshakeInAssociationThread(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile=str(files.cert), keyfile=str(files.key))
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"--dicom-tls-cert {files.cert} / --dicom-tls-key {files.key}: cannot be used as a "
                         f"certificate and its key ({type(exc).__name__}: {exc})") from exc
    if files.ca is not None:
        try:
            context.load_verify_locations(cafile=str(files.ca))
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(f"--dicom-tls-ca {files.ca}: not a PEM CA certificate ({exc})") from exc
        context.verify_mode = ssl.CERT_REQUIRED
    return context
