"""The DICOM node: a Storage SCP (C-ECHO, C-STORE) whose received instances are read by the Predictor, written
to the history and answered with a Structured Report sent to ``--dicom-forward``.

An instance is acknowledged (C-STORE Success) only once its bytes are synced to the spool's ``incoming`` folder;
a reader thread then runs the model on it (in batches when several are waiting), a reporter thread writes the
history row and the report, and a delivery thread sends the reports, so neither the model nor the reports wait
for the PACS. The spool file is deleted only once its report is in the ``outgoing`` folder; reports that could
not be delivered are tried again every ``retry_seconds``. So an association that aborts mid-transfer
loses nothing that was acknowledged (the unfinished instance was never acknowledged: the sender still holds
it), and instances left by a crash are read on the next start.

Refused with a DIMSE status, never a crash: a storage SOP class other than DX, CR or Secondary Capture
(0x0122), a dataset without pixel data (0xA900), pixel data shorter than its header declares (0xC000).
A SOP class pynetdicom does not know is rejected at association (presentation context not supported); a
calling AE title outside ``allow`` is rejected at association too.
"""

from __future__ import annotations

import hashlib
import io
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol

import pydicom
from pydicom.dataset import Dataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID
from pynetdicom import AE, evt
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.sop_class import (ComputedRadiographyImageStorage, DigitalXRayImageStorageForPresentation,
                                  DigitalXRayImageStorageForProcessing, SecondaryCaptureImageStorage, Verification)

from pneumo.dicom.checks import header_reason, instance_uids
from pneumo.dicom.forward import Forwarder
from pneumo.dicom.report import ModelInfo, build_overlay, build_report
from pneumo.dicom.settings import DicomSettings
from pneumo.dicom.spool import Spool
from pneumo.dicom.tcp import RECEIVING_HANDLERS

log = logging.getLogger("pneumo.dicom")

ACCEPTED_SOP_CLASSES = {
    DigitalXRayImageStorageForPresentation: "Digital X-Ray (for presentation)",
    DigitalXRayImageStorageForProcessing: "Digital X-Ray (for processing)",
    ComputedRadiographyImageStorage: "Computed Radiography",
    SecondaryCaptureImageStorage: "Secondary Capture",
}
# DIMSE statuses (PS3.4 Annex B.2.3 and PS3.7 C.4.2.1.4)
SUCCESS = 0x0000
SOP_CLASS_NOT_SUPPORTED = 0x0122
OUT_OF_RESOURCES = 0xA700
DATASET_DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000


class ReadingStore(Protocol):
    """Where readings go: the service's history repository."""

    def add(self, *, image_sha256: str, file_type: str, model_version: str, result: dict[str, Any],
            heatmap_png: bytes | None, source: str = ..., dicom: Mapping[str, str | None] | None = ...) -> Any: ...


@dataclass
class NodeStats:
    """Counts since start: what was received, refused, read, and where the reports stand."""

    received: int = 0
    refused: int = 0
    read: int = 0
    failed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def bump(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)


def _status(code: int, comment: str) -> Dataset:
    status = Dataset()
    status.Status = code
    status.ErrorComment = comment[:64]  # LO: 64 characters
    return status


def _native_pixel_bytes(dataset: Dataset) -> int | None:
    """Bytes the header says the native (uncompressed) pixel data holds; None when it cannot say."""
    try:
        rows, columns = int(dataset.Rows), int(dataset.Columns)
        bits = int(dataset.BitsAllocated)
        samples = int(dataset.get("SamplesPerPixel", 1) or 1)
        frames = int(dataset.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        return None
    if bits % 8:
        return None  # 1-bit data is packed; leave it to the decoder
    return rows * columns * samples * frames * bits // 8


class DicomNode:
    """Storage SCP + reading worker. ``start()`` binds the port; ``stop()`` closes it (waiting instances stay in
    the spool for the next start)."""

    def __init__(self, settings: DicomSettings, predictor: Any, history: ReadingStore) -> None:
        self.settings = settings
        self.predictor = predictor
        self.history = history
        self.spool = Spool(settings.spool_dir)
        self.stats = NodeStats()
        self.model = ModelInfo(name=f"pneumo {predictor.meta.arch}", version=str(predictor.meta.version))
        self.forwarder = (Forwarder(settings.forward, settings.ae_title, self.spool,
                                    associations=settings.forward_associations)
                          if settings.forward is not None else None)
        self._queue: queue.Queue[Path] = queue.Queue()  # acknowledged, not yet reported (join: all done)
        self._reports: queue.Queue[list | int] = queue.Queue()  # read by the model, waiting for the reporter
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
        ae.add_supported_context(Verification)
        # Every storage class pynetdicom knows is negotiated, so that one pneumo does not read is answered with a
        # DIMSE status naming the problem (0x0122) rather than an opaque rejected presentation context.
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax)
        if self.settings.allow:
            ae.require_calling_aet = list(self.settings.allow)
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
        for path in self.spool.pending(self.spool.incoming):  # left by a crash or a stop: read them now
            self._queue.put(path)
        self._stop.clear()
        self._threads = [threading.Thread(target=self._work, name="pneumo-dicom-reader", daemon=True),
                         threading.Thread(target=self._report_loop, name="pneumo-dicom-reporter", daemon=True)]
        if self.forwarder is not None:
            self._threads.append(threading.Thread(target=self._deliver_loop, args=(self.forwarder,),
                                                  name="pneumo-dicom-delivery", daemon=True))
        for thread in self._threads:
            thread.start()
        if self.forwarder is not None and self.spool.pending(self.spool.outgoing):
            self._ask_delivery()  # reports left undelivered by the last run
        handlers = [*RECEIVING_HANDLERS, (evt.EVT_C_ECHO, self._on_echo), (evt.EVT_C_STORE, self._on_store)]
        self._server = self._ae.start_server((self.settings.host, self.settings.port), block=False,
                                             evt_handlers=handlers)
        log.info("DICOM node %s listening on %s:%d (allow: %s, forward: %s)", self.settings.ae_title,
                 self.settings.host, self.port, ",".join(self.settings.allow) or "any AE title",
                 self.settings.forward or "none")

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
        """Block until every acknowledged instance has been read and its report's delivery tried (for tests and
        the bench)."""
        deadline = time.monotonic() + timeout
        done = threading.Event()

        def waiter() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=waiter, daemon=True).start()
        if not done.wait(timeout):
            return False
        with self._delivery:
            return self._delivery.wait_for(lambda: self._deliveries_done >= self._deliveries_asked,
                                           max(0.0, deadline - time.monotonic()))

    def summary(self) -> dict[str, Any]:
        """For ``/api/v1/health``: AE title, port, counts."""
        forwarder = self.forwarder
        return {"ae_title": self.settings.ae_title, "port": self.port if self._server is not None else None,
                "allow": list(self.settings.allow), "forward": str(self.settings.forward or "") or None,
                "received": self.stats.received, "refused": self.stats.refused, "read": self.stats.read,
                "failed": self.stats.failed, "waiting": self._queue.qsize(),
                "reports_sent": forwarder.sent if forwarder else 0,
                "reports_waiting": len(self.spool.pending(self.spool.outgoing))}

    # ---- SCP handlers (run in each association's thread) -------------------------------------------------
    def _on_echo(self, event: Any) -> int:
        return SUCCESS

    def _on_store(self, event: Any) -> int | Dataset:
        try:
            return self._store(event)
        except Exception as exc:  # a handler bug must answer the sender, not take the association down
            self.stats.bump("refused")
            log.exception("DICOM node: C-STORE failed (%s)", type(exc).__name__)
            return _status(CANNOT_UNDERSTAND, f"pneumo could not store the instance ({type(exc).__name__})")

    def _store(self, event: Any) -> int | Dataset:
        sop_class = UID(str(event.request.AffectedSOPClassUID))
        calling = str(event.assoc.requestor.ae_title).strip()
        if sop_class not in ACCEPTED_SOP_CLASSES:
            self.stats.bump("refused")
            log.info("DICOM node: refused %s from %s (SOP class not read)", sop_class.name, calling)
            return _status(SOP_CLASS_NOT_SUPPORTED, f"pneumo reads DX, CR, SC; not {sop_class.name}")
        try:
            dataset = event.dataset
            has_pixels = "PixelData" in dataset
        except Exception as exc:
            self.stats.bump("refused")
            return _status(CANNOT_UNDERSTAND, f"dataset cannot be decoded ({type(exc).__name__})")
        if not has_pixels:
            self.stats.bump("refused")
            log.info("DICOM node: refused an instance from %s without pixel data", calling)
            return _status(DATASET_DOES_NOT_MATCH, "no Pixel Data (7FE0,0010) in an image instance")
        transfer_syntax = UID(str(event.context.transfer_syntax))
        if not transfer_syntax.is_compressed:
            expected = _native_pixel_bytes(dataset)
            found = len(dataset.PixelData)
            if expected is not None and found < expected:
                self.stats.bump("refused")
                log.info("DICOM node: refused an instance from %s with truncated pixel data", calling)
                return _status(CANNOT_UNDERSTAND, f"Pixel Data has {found} bytes; the header declares {expected}")
        meta = event.file_meta
        meta.SourceApplicationEntityTitle = calling  # who sent it, kept for the history row
        header = io.BytesIO()
        header.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(header, meta, enforce_standard=True)
        try:
            # The received dataset goes to disk as pynetdicom holds it: 7.6 MB copied once less per instance.
            with event.request.DataSet.getbuffer() as body:
                path = self.spool.put(self.spool.incoming, [header.getvalue(), body], "in")
        except OSError as exc:
            self.stats.bump("refused")
            log.error("DICOM node: cannot spool a received instance (%s)", exc)
            return _status(OUT_OF_RESOURCES, "pneumo cannot store the instance (disk)")
        self.stats.bump("received")
        self._queue.put(path)
        return SUCCESS

    # ---- reading -----------------------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < self.settings.batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._reports.put(self._read(batch))
            except Exception:  # _read handles each file's errors; this is a bug: keep the files, keep going
                log.exception("DICOM node: reading a batch failed; its files stay in the spool")
            finally:
                # Counted done by the reporter; a batch lost to a bug above still has to be counted.
                self._reports.put(len(batch))

    def _report_loop(self) -> None:
        self._warm_up()
        while not self._stop.is_set() or not self._reports.empty():
            try:
                item = self._reports.get(timeout=0.2)
            except queue.Empty:
                continue
            if isinstance(item, int):  # the end of a batch: its instances are done
                for _ in range(item):
                    self._queue.task_done()
                continue
            self._report(item)

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
                except Exception:
                    log.exception("DICOM forward: delivery failed; the reports stay queued")
            with self._delivery:
                self._deliveries_done = max(self._deliveries_done, target)
                self._delivery.notify_all()

    def _warm_up(self) -> None:
        # highdicom loads the standard's module tables on its first report (seconds); do it before the first
        # instance arrives rather than make it wait.
        dummy = Dataset()
        dummy.SOPClassUID, dummy.SOPInstanceUID = DigitalXRayImageStorageForPresentation, "1.2.3.4"
        dummy.StudyInstanceUID, dummy.SeriesInstanceUID, dummy.Modality = "1.2.3", "1.2.3.5", "DX"
        try:
            build_report(dummy, self._unknown("warm-up"), self.model)
        except Exception:
            log.exception("DICOM node: building a first report failed; reports may fail")

    def _read(self, paths: list[Path]) -> list:
        """Header checks and the model: (path, sha256 of the file, header, result, overlay) per readable file."""
        items = []
        for path in paths:
            try:
                data = path.read_bytes()
                header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
                items.append((path, data, header, header_reason(header)))
            except Exception as exc:
                self._failed(path, exc)
        readable = [item for item in items if item[3] is None]
        results: dict[Path, tuple[dict[str, Any], bytes | None]] = {}
        for path, data, header, reason in items:
            if reason is not None:
                results[path] = (self._unknown(reason), None)
        try:
            results.update(self._predict(readable))
        except Exception as exc:  # the model failed on the batch: fail its files, keep the node up
            for path, *_ in readable:
                self._failed(path, exc)
        # The reporter gets the file's hash, not its bytes: a backlog of reports then holds headers only.
        return [(path, hashlib.sha256(data).hexdigest(), header, *results[path])
                for path, data, header, _ in items if path in results]

    def _report(self, done: list) -> None:
        """History rows and reports for what the model read; then deliver the reports."""
        for path, digest, header, result, overlay in done:
            try:
                self._record(path, digest, header, result, overlay)
            except Exception as exc:
                self._failed(path, exc)
        if self.forwarder is not None and done:
            self._ask_delivery()

    def _unknown(self, reason: str) -> dict[str, Any]:
        meta = self.predictor.meta
        return {"label": "UNKNOWN", "probability": None, "threshold": float(meta.threshold),
                "subtype_probabilities": None, "unknown_reason": reason, "model_version": str(meta.version),
                "timing_ms": {}, "out_of_distribution": None, "ood_reason": None}

    def _predict(self, readable: list) -> dict[Path, tuple[dict[str, Any], bytes | None]]:
        if not readable:
            return {}
        out: dict[Path, tuple[dict[str, Any], bytes | None]] = {}
        if self.settings.gradcam:
            for path, data, *_ in readable:
                explanation = self.predictor.explain(data, skip_unknown=True)
                out[path] = (self._result(explanation.prediction), explanation.overlay_png)
            return out
        predictions = self.predictor.predict_many([item[1] for item in readable], batch_size=len(readable))
        for (path, *_), prediction in zip(readable, predictions):
            out[path] = (self._result(prediction), None)
        return out

    def _result(self, prediction: Any) -> dict[str, Any]:
        if prediction.error is not None:
            # Checked at C-STORE, so rare (e.g. a compressed syntax pydicom cannot decode): not assessed, and why.
            return self._unknown(f"the image cannot be decoded ({prediction.error})")
        return prediction.reading()

    def _record(self, path: Path, digest: str, header: Dataset, result: dict[str, Any],
                overlay: bytes | None) -> None:
        uids = instance_uids(header)
        uids["calling_ae"] = str(header.file_meta.get("SourceApplicationEntityTitle", "") or "").strip() or None
        self.history.add(image_sha256=digest, file_type="dicom",
                         model_version=str(result["model_version"]), result=result, heatmap_png=overlay,
                         source="dicom", dicom=uids)
        if self.forwarder is not None:
            report = build_report(header, result, self.model)
            self.spool.put(self.spool.outgoing, _encode(report), "sr")
            if overlay is not None and result["label"] != "UNKNOWN":
                self.spool.put(self.spool.outgoing, _encode(build_overlay(header, overlay, self.model)), "sc")
        path.unlink()
        self.stats.bump("read")
        log.info("DICOM node: read SOP instance %s: %s", uids["sop_instance_uid"], result["label"])

    def _failed(self, path: Path, exc: BaseException) -> None:
        self.stats.bump("failed")
        kept = self.spool.fail(path) if path.exists() else path
        log.error("DICOM node: cannot read %s (%s: %s); kept in %s", path.name, type(exc).__name__, exc, kept)


def _encode(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
