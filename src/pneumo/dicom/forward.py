"""C-STORE SCU: deliver the reports waiting in the spool's ``outgoing`` folder to the ``--dicom-forward`` peer.

A report leaves the folder only when the peer answered Success (or a warning); when the peer is unreachable
the reports stay and go with the next delivery, so an outage of the PACS loses nothing. A temporary refusal (Out
of Resources 0xA7xx, processing failure 0x0110, resource limitation 0x0213, duplicate invocation 0x0210) keeps the
report and tries it again after a wait that doubles from ``retry_seconds`` (up to 64 times that); any other
refusal will be answered the same way again, so the report goes to ``failed/`` and the refusal is kept for the
status summary (status, SOP class, file; not the peer's error comment, which may quote the dataset).

A delivery spreads the waiting reports over several associations at once: a PACS stores each instance before it
answers, so one association waits on every store in turn (measured against Orthanc: 55 ms per report over one
association, 16 ms over four).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pydicom
from pynetdicom import AE
from pynetdicom.sop_class import ComprehensiveSRStorage, SecondaryCaptureImageStorage
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from pneumo.dicom.retry import Backoff
from pneumo.dicom.settings import Destination
from pneumo.dicom.spool import Spool
from pneumo.dicom.status import is_delivered, is_transient
from pneumo.dicom.tcp import CONNECTION_HANDLERS

log = logging.getLogger("pneumo.dicom")

SENT_SOP_CLASSES = (ComprehensiveSRStorage, SecondaryCaptureImageStorage)


class Forwarder:
    def __init__(self, destination: Destination, calling_ae: str, spool: Spool, *, associations: int = 4,
                 timeout: float = 30.0, retry_seconds: float = 30.0, kept_refusals: int = 50) -> None:
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
        self.backoff = Backoff(retry_seconds, retry_seconds * 64)  # no end: a PACS that is full will not be forever
        self._refusals: deque[dict[str, str]] = deque(maxlen=kept_refusals)

    def refusals(self) -> list[dict[str, str]]:
        """The latest permanent refusals, newest last: when, the status, the SOP class, the file kept."""
        with self._count_lock:
            return list(self._refusals)

    def flush(self) -> int:
        """Send every waiting report, over up to ``associations`` associations at once; returns how many were
        delivered."""
        with self._lock:
            waiting = [path for path in self.spool.pending(self.spool.outgoing) if self.backoff.is_due(path.name)]
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
        if is_delivered(code):
            self.spool.remove(path)
            self.backoff.succeeded(path.name)
            with self._count_lock:
                self.sent += 1
            return 1
        if is_transient(code):
            wait = self.backoff.failed(path.name)
            log.warning("DICOM forward: %s answered 0x%04X (temporary) for %s; trying again in %.0f s",
                        self.destination, code, path.name, wait or 0.0)
            return 0
        self._keep_refused(path, code, dataset.SOPClassUID.name)
        return 0

    def _keep_refused(self, path: Path, code: int, sop_class: str) -> None:
        """A refusal that will not change on a retry: the report goes to ``failed/``, the refusal is remembered."""
        kept = self.spool.fail(path)
        self.backoff.succeeded(path.name)
        with self._count_lock:
            self.refused += 1
            self._refusals.append({"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                   "status": f"0x{code:04X}", "sop_class": sop_class, "file": kept.name})
        log.error("DICOM forward: %s refused %s with status 0x%04X; kept in %s", self.destination, sop_class, code,
                  kept)
