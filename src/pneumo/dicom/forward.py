"""C-STORE SCU: deliver the reports waiting in the spool's ``outgoing`` folder to the ``--dicom-forward`` peer.

A report leaves the folder only when the peer answered Success (or a warning); when the peer is unreachable
the reports stay and go with the next delivery, so an outage of the PACS loses nothing. A delivery spreads the
waiting reports over several associations at once: a PACS stores each instance before it answers, so one
association waits on every store in turn (measured against Orthanc: 55 ms per report over one association,
16 ms over four).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pydicom
from pynetdicom import AE
from pynetdicom.sop_class import ComprehensiveSRStorage, SecondaryCaptureImageStorage
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from pneumo.dicom.settings import Destination
from pneumo.dicom.spool import Spool
from pneumo.dicom.tcp import CONNECTION_HANDLERS

log = logging.getLogger("pneumo.dicom")

SENT_SOP_CLASSES = (ComprehensiveSRStorage, SecondaryCaptureImageStorage)


class Forwarder:
    def __init__(self, destination: Destination, calling_ae: str, spool: Spool, *, associations: int = 4,
                 timeout: float = 30.0) -> None:
        if associations < 1:
            raise ValueError(f"a delivery needs at least one association, got {associations}")
        self.destination = destination
        self.spool = spool
        self.associations = associations
        self._ae = AE(ae_title=calling_ae)
        for sop_class in SENT_SOP_CLASSES:
            self._ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        self._ae.acse_timeout = self._ae.dimse_timeout = self._ae.network_timeout = timeout
        self._lock = threading.Lock()  # one delivery at a time: no report is sent twice at once
        self._count_lock = threading.Lock()
        self.sent = 0
        self.refused = 0

    def flush(self) -> int:
        """Send every waiting report, over up to ``associations`` associations at once; returns how many were
        delivered."""
        with self._lock:
            waiting = self.spool.pending(self.spool.outgoing)
            if not waiting:
                return 0
            parts = [waiting[i::self.associations] for i in range(min(self.associations, len(waiting)))]
            if len(parts) == 1:
                return self._deliver(parts[0])
            with ThreadPoolExecutor(len(parts), thread_name_prefix="pneumo-dicom-forward") as pool:
                return sum(pool.map(self._deliver, parts))

    def _deliver(self, paths: list[Path]) -> int:
        dest = self.destination
        assoc = self._ae.associate(dest.host, dest.port, ae_title=dest.ae_title, evt_handlers=CONNECTION_HANDLERS)
        if not assoc.is_established:
            log.warning("DICOM forward: cannot associate with %s; %d report(s) wait in %s", dest, len(paths),
                        self.spool.outgoing)
            return 0
        delivered = 0
        try:
            for done, path in enumerate(paths):
                if not assoc.is_established:
                    log.warning("DICOM forward: %s closed the association; %d report(s) wait", dest,
                                len(paths) - done)
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
            with self._count_lock:
                self.sent += 1
            return 1
        # A refusal will not change on a retry: keep the report aside instead of sending it forever.
        kept = self.spool.fail(path)
        with self._count_lock:
            self.refused += 1
        log.error("DICOM forward: %s refused %s with status 0x%04X (%s); kept in %s", self.destination,
                  dataset.SOPClassUID.name, code, getattr(status, "ErrorComment", ""), kept)
        return 0
