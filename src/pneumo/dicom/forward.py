"""C-STORE SCU: deliver the reports waiting in the spool's ``outgoing`` folder to the ``--dicom-forward`` peer.

A report leaves the folder only when the peer answered Success (or a warning); when the peer is unreachable
the reports stay and go with the next delivery, so an outage of the PACS loses nothing.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pydicom
from pynetdicom import AE
from pynetdicom.sop_class import ComprehensiveSRStorage, SecondaryCaptureImageStorage
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from pneumo.dicom.settings import Destination
from pneumo.dicom.spool import Spool

log = logging.getLogger("pneumo.dicom")

SENT_SOP_CLASSES = (ComprehensiveSRStorage, SecondaryCaptureImageStorage)


class Forwarder:
    def __init__(self, destination: Destination, calling_ae: str, spool: Spool, *, timeout: float = 30.0) -> None:
        self.destination = destination
        self.spool = spool
        self._ae = AE(ae_title=calling_ae)
        for sop_class in SENT_SOP_CLASSES:
            self._ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        self._ae.acse_timeout = self._ae.dimse_timeout = self._ae.network_timeout = timeout
        self._lock = threading.Lock()  # one delivery at a time: no report is sent twice at once
        self.sent = 0
        self.refused = 0

    def flush(self) -> int:
        """Send every waiting report over one association; returns how many were delivered."""
        with self._lock:
            waiting = self.spool.pending(self.spool.outgoing)
            if not waiting:
                return 0
            dest = self.destination
            assoc = self._ae.associate(dest.host, dest.port, ae_title=dest.ae_title)
            if not assoc.is_established:
                log.warning("DICOM forward: cannot associate with %s; %d report(s) wait in %s", dest, len(waiting),
                            self.spool.outgoing)
                return 0
            delivered = 0
            try:
                for path in waiting:
                    if not assoc.is_established:
                        log.warning("DICOM forward: %s closed the association; %d report(s) wait",
                                    dest, len(waiting) - delivered)
                        break
                    delivered += self._send(assoc, path)
            finally:
                if assoc.is_established:
                    assoc.release()
            return delivered

    def _send(self, assoc, path: Path) -> int:
        dataset = pydicom.dcmread(path)
        status = assoc.send_c_store(dataset)
        code = int(getattr(status, "Status", -1)) if status else -1
        if code == -1:  # no answer (timeout, abort): keep it for the next delivery
            log.warning("DICOM forward: no answer from %s for %s; it stays queued", self.destination, path.name)
            return 0
        if code == 0x0000 or code in (0x0107, 0x0116) or 0xB000 <= code <= 0xBFFF:
            path.unlink()
            self.sent += 1
            return 1
        # A refusal will not change on a retry: keep the report aside instead of sending it forever.
        kept = self.spool.fail(path)
        self.refused += 1
        log.error("DICOM forward: %s refused %s with status 0x%04X (%s); kept in %s", self.destination,
                  dataset.SOPClassUID.name, code, getattr(status, "ErrorComment", ""), kept)
        return 0
