"""The DICOM node: a Storage SCP (C-ECHO, C-STORE) whose received instances are read by the Predictor, written
to the history and answered with a Structured Report sent to ``--dicom-forward``.

Who may call is decided at association: the calling AE title, from an allowed address (``--dicom-allow
AET@ADDRESS``), over TLS when configured, within ``max_associations`` at once. Each association is held to the
PDU and dataset limits as its bytes arrive (:mod:`pneumo.dicom.guard`); each C-STORE is checked and spooled by
:mod:`pneumo.dicom.scp` and acknowledged only once on disk; :mod:`pneumo.dicom.pipeline` reads, reports and
records it; a delivery thread sends the reports (:mod:`pneumo.dicom.forward`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian,
                         ImplicitVRLittleEndian)
from pynetdicom import AE, evt
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.sop_class import Verification

from pneumo.dicom.forward import Forwarder
from pneumo.dicom.guard import AssociationGuard
from pneumo.dicom.heap import limit_arenas
from pneumo.dicom.logsafe import describe
from pneumo.dicom.pipeline import NodeStats, ReadingPipeline, ReadingStore
from pneumo.dicom.scp import StoreHandler
from pneumo.dicom.settings import DicomSettings
from pneumo.dicom.spool import Spool
from pneumo.dicom.status import SUCCESS
from pneumo.dicom.tcp import CONNECTION_HANDLERS
from pneumo.dicom.tls import server_context

__all__ = ["DicomNode", "NodeStats", "ReadingStore"]

log = logging.getLogger("pneumo.dicom")

UNCOMPRESSED = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian]
HEAP_ARENAS = 2
# A-ASSOCIATE-RJ: rejected permanent (1), by the service user (1), calling AE title not recognised (3).
REJECT_CALLING_AE = (0x01, 0x01, 0x03)


class DicomNode:
    """Storage SCP + reading pipeline. ``start()`` binds the port; ``stop()`` closes it (waiting instances stay in
    the spool for the next start)."""

    def __init__(self, settings: DicomSettings, predictor: Any, history: ReadingStore) -> None:
        self.settings = settings
        self.predictor = predictor
        self.spool = Spool(settings.spool_dir, settings.spool_quota_bytes)
        self.stats = NodeStats()
        self.forwarder = (Forwarder(settings.forward, settings.ae_title, self.spool,
                                    associations=settings.forward_associations, retry_seconds=settings.retry_seconds)
                          if settings.forward is not None else None)
        self.pipeline = ReadingPipeline(settings, predictor, history, self.spool, self.stats,
                                        reports=self.forwarder is not None, delivered=self._ask_delivery)
        self.guard = AssociationGuard(max_pdu=settings.max_pdu, max_dataset_bytes=settings.max_dataset_bytes,
                                      memory_budget_bytes=settings.memory_budget_bytes)
        self._store = StoreHandler(settings, self.spool, self.guard, self.stats, self.pipeline.accept)
        # Deliveries asked for and done, counted: wait_idle waits until the last one asked for has been tried.
        self._delivery = threading.Condition()
        self._deliveries_asked = 0
        self._deliveries_done = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: Any = None
        self._ae = self._build_ae()

    def _build_ae(self) -> AE:
        ae = AE(ae_title=self.settings.ae_title)
        ae.maximum_pdu_size = self.settings.max_pdu
        ae.maximum_associations = self.settings.max_associations
        ae.add_supported_context(Verification)
        # Deflate is opt-in: a small deflated dataset can inflate to gigabytes (it is inflated under the dataset
        # limit when accepted). Every storage class pynetdicom knows is negotiated, so that one pneumo does not
        # read is answered with a DIMSE status naming the problem (0x0122) rather than a rejected context.
        syntaxes = UNCOMPRESSED + ([DeflatedExplicitVRLittleEndian] if self.settings.accept_deflate else [])
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, syntaxes)
        return ae

    # ---- lifecycle ---------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        if self._server is None:
            raise RuntimeError("the DICOM node is not started")
        return int(self._server.server_address[1])

    def start(self) -> None:
        # pynetdicom's debug output can print dataset elements, patient names included: keep it to warnings.
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)
        if "MALLOC_ARENA_MAX" not in os.environ:
            limit_arenas(HEAP_ARENAS)  # each association is a new thread: see pneumo.dicom.heap
        ssl_context = server_context(self.settings.tls) if self.settings.tls is not None else None
        for path in self.spool.pending(self.spool.incoming):  # left by a crash or a stop: read them now
            self.pipeline.accept(path)
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self.pipeline.read_loop, args=(self._stop,), name="pneumo-dicom-reader",
                             daemon=True),
            threading.Thread(target=self.pipeline.report_loop, args=(self._stop,), name="pneumo-dicom-reporter",
                             daemon=True)]
        if self.forwarder is not None:
            self._threads.append(threading.Thread(target=self._deliver_loop, args=(self.forwarder,),
                                                  name="pneumo-dicom-delivery", daemon=True))
        for thread in self._threads:
            thread.start()
        if self.forwarder is not None and self.spool.pending(self.spool.outgoing):
            self._ask_delivery()  # reports left undelivered by the last run
        handlers = [*CONNECTION_HANDLERS, (evt.EVT_CONN_OPEN, self.guard.on_open),
                    (evt.EVT_CONN_CLOSE, self.guard.on_close), (evt.EVT_REQUESTED, self._on_requested),
                    (evt.EVT_C_ECHO, self._on_echo), (evt.EVT_C_STORE, self._store)]
        self._server = self._ae.start_server((self.settings.host, self.settings.port), block=False,
                                             evt_handlers=handlers, ssl_context=ssl_context)
        log.info("DICOM node %s listening on %s:%d (%s; allow: %s; forward: %s)", self.settings.ae_title,
                 self.settings.host, self.port, "TLS" if ssl_context else "no TLS",
                 ",".join(self.settings.allow) or "any AE title", self.settings.forward or "none")

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self._stop.set()
        with self._delivery:
            self._delivery.notify_all()
        for thread in self._threads:
            thread.join(timeout=60)
        self._threads = []

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until every acknowledged instance has been dealt with (read and recorded, or given up after its
        tries) and its report's delivery tried (for tests and the bench)."""
        deadline = time.monotonic() + timeout
        while not self.pipeline.is_idle():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        with self._delivery:
            return self._delivery.wait_for(lambda: self._deliveries_done >= self._deliveries_asked,
                                           max(0.0, deadline - time.monotonic()))

    def summary(self) -> dict[str, Any]:
        """For ``/api/v1/status``: AE title, port, counts, and the reports a PACS refused for good."""
        forwarder = self.forwarder
        return {"ae_title": self.settings.ae_title, "port": self.port if self._server is not None else None,
                "allow": list(self.settings.allow), "forward": str(self.settings.forward or "") or None,
                "tls": self.settings.tls is not None,
                "received": self.stats.received, "refused": self.stats.refused, "read": self.stats.read,
                "retried": self.stats.retried, "failed": self.stats.failed, "waiting": self.pipeline.waiting(),
                "failed_files": len(self.spool.pending(self.spool.failed)),
                "spool_bytes": self.spool.used_bytes, "spool_quota_bytes": self.settings.spool_quota_bytes,
                "reports_sent": forwarder.sent if forwarder else 0,
                "reports_waiting": len(self.spool.pending(self.spool.outgoing)),
                "reports_refused": forwarder.refused if forwarder else 0,
                "report_refusals": forwarder.refusals() if forwarder else []}

    # ---- association and DIMSE handlers (run in each association's thread) ---------------------------------
    def _on_requested(self, event: Any) -> None:
        """A-ASSOCIATE-RQ received: reject a calling AE title that is not allowed from the peer's address."""
        peers = self.settings.peers
        if not peers:
            return
        calling = str(event.assoc.requestor.primitive.calling_ae_title).strip()
        address = str(event.assoc.requestor.address)
        if any(peer.admits(calling, address) for peer in peers):
            return
        self.stats.bump("refused")
        log.warning("DICOM node: rejected an association from %s calling as %s (not on --dicom-allow)", address,
                    calling)
        event.assoc.acse.send_reject(*REJECT_CALLING_AE)
        event.assoc.kill()  # as pynetdicom does after its own rejections: waits until the A-ASSOCIATE-RJ is sent

    def _on_echo(self, event: Any) -> int:
        return SUCCESS

    # ---- delivery ------------------------------------------------------------------------------------------
    def _ask_delivery(self) -> None:
        with self._delivery:
            self._deliveries_asked += 1
            self._delivery.notify_all()

    def _deliver_loop(self, forwarder: Forwarder) -> None:
        while True:
            with self._delivery:
                asked = self._delivery.wait_for(
                    lambda: self._deliveries_asked > self._deliveries_done or self._stop.is_set(),
                    self.settings.retry_seconds)
                if self._stop.is_set() and self._deliveries_asked <= self._deliveries_done:
                    return
                target = self._deliveries_asked
            if asked or self.spool.pending(self.spool.outgoing):  # asked for, or time to retry
                try:
                    forwarder.flush()
                except Exception as exc:
                    log.error("DICOM forward: delivery failed (%s); the reports stay queued", describe(exc))
            with self._delivery:
                self._deliveries_done = max(self._deliveries_done, target)
                self._delivery.notify_all()
