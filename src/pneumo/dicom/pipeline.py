"""What happens to an acknowledged instance: the model reads it, then its report is built, spooled for delivery,
its history row written, and only then is the received file deleted.

The reading, the report and the history row are one unit: if any step fails, the received file stays in the
spool and the whole unit is tried again after a wait that doubles (``read_retry_seconds``, ``read_attempts``
tries); only then is it moved to ``failed/`` (kept, counted in the status summary). A reader thread runs the model
(in batches when several instances wait); a reporter thread builds, spools and records.
"""

from __future__ import annotations

import hashlib
import io
import logging
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import pydicom
from pydicom.dataset import Dataset
from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation

from pneumo.dicom.checks import header_reason, instance_uids
from pneumo.dicom.logsafe import describe
from pneumo.dicom.report import ModelInfo, build_overlay, build_report
from pneumo.dicom.retry import Backoff
from pneumo.dicom.sanitize import report_source
from pneumo.dicom.settings import DicomSettings
from pneumo.dicom.spool import Spool

log = logging.getLogger("pneumo.dicom")


class ReadingStore(Protocol):
    """Where readings go: the service's history repository."""

    def add(self, *, image_sha256: str, file_type: str, model_version: str, result: dict[str, Any],
            heatmap_png: bytes | None, source: str = ..., dicom: Mapping[str, str | None] | None = ...) -> Any: ...


@dataclass
class NodeStats:
    """Counts since start: what was received, refused, read, retried and given up."""

    received: int = 0
    refused: int = 0
    read: int = 0
    retried: int = 0
    failed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def bump(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)


@dataclass
class Reading:
    """One instance read by the model, on its way to the reporter."""

    path: Path
    sha256: str
    header: Dataset
    result: dict[str, Any]
    overlay: bytes | None


def encode(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


class ReadingPipeline:
    def __init__(self, settings: DicomSettings, predictor: Any, history: ReadingStore, spool: Spool,
                 stats: NodeStats, *, reports: bool, delivered: Callable[[], None]) -> None:
        self.settings, self.predictor, self.history, self.spool, self.stats = settings, predictor, history, spool, stats
        self.reports = reports  # build and spool reports (there is a --dicom-forward)
        self.delivered = delivered  # called once new reports wait in ``outgoing``
        self.model = ModelInfo.of(predictor)
        self.backoff = Backoff(settings.read_retry_seconds, settings.read_retry_seconds * 64, settings.read_attempts)
        self._queue: queue.Queue[Path] = queue.Queue()  # acknowledged, not yet done (join: all done)
        self._readings: queue.Queue[list[Reading] | int] = queue.Queue()  # read, waiting for the reporter
        self._spooled_reports: set[Path] = set()  # received files whose report is already in ``outgoing``

    def accept(self, path: Path) -> None:
        self._queue.put(path)

    def is_idle(self) -> bool:
        return self._queue.unfinished_tasks == 0 and self.backoff.waiting() == 0

    def waiting(self) -> int:
        return self._queue.qsize() + self.backoff.waiting()

    # ---- reader thread ------------------------------------------------------------------------------------
    def read_loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            for path in self.backoff.due():  # queued before it stops counting as waiting: is_idle never lies
                self._queue.put(path)
                self.backoff.taken(path)
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
                self._readings.put(self._read(batch))
            except Exception as exc:  # _read handles each file's errors; this is a bug: retry the batch
                for path in batch:
                    self._retry(path, exc, "reading")
            finally:
                self._readings.put(len(batch))  # counted done by the reporter, after the batch's reports

    def _read(self, paths: list[Path]) -> list[Reading]:
        """Header checks and the model for each file that can be read; the others are retried."""
        items = []
        for path in paths:
            try:
                data = path.read_bytes()
                header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
                items.append((path, data, header, header_reason(header)))
            except Exception as exc:
                self._retry(path, exc, "reading the spooled file")
        readable = [item for item in items if item[3] is None]
        results = {path: (self.unknown(reason), None) for path, _, _, reason in items if reason is not None}
        try:
            results.update(self._predict(readable))
        except Exception as exc:  # the model failed on the batch: try its files again later
            for path, *_ in readable:
                self._retry(path, exc, "the model")
        # The reporter gets the file's hash, not its bytes: a backlog of reports then holds headers only.
        return [Reading(path, hashlib.sha256(data).hexdigest(), header, *results[path])
                for path, data, header, _ in items if path in results]

    def _predict(self, readable: list) -> dict[Path, tuple[dict[str, Any], bytes | None]]:
        if not readable:
            return {}
        if self.settings.gradcam:
            out = {}
            for path, data, *_ in readable:
                explanation = self.predictor.explain(data, skip_unknown=True)
                out[path] = (self._result(explanation.prediction), explanation.overlay_png)
            return out
        predictions = self.predictor.predict_many([item[1] for item in readable], batch_size=len(readable))
        return {path: (self._result(prediction), None) for (path, *_), prediction in zip(readable, predictions)}

    def _result(self, prediction: Any) -> dict[str, Any]:
        if prediction.error is not None:
            # Checked at C-STORE, so rare: not assessed, and why (the decoder's message names no patient data).
            return self.unknown(f"the image cannot be decoded ({prediction.error})")
        return prediction.reading()

    def unknown(self, reason: str) -> dict[str, Any]:
        meta = self.predictor.meta
        return {"label": "UNKNOWN", "probability": None, "threshold": float(meta.threshold),
                "subtype_probabilities": None, "unknown_reason": reason, "model_version": str(meta.version),
                "timing_ms": {}, "out_of_distribution": None, "ood_reason": None}

    # ---- reporter thread ----------------------------------------------------------------------------------
    def report_loop(self, stop: threading.Event) -> None:
        self._warm_up()
        while not stop.is_set() or not self._readings.empty():
            try:
                item = self._readings.get(timeout=0.2)
            except queue.Empty:
                continue
            if isinstance(item, int):  # the end of a batch: its instances are done (or scheduled again)
                for _ in range(item):
                    self._queue.task_done()
                continue
            for reading in item:
                try:
                    self._record(reading)
                except Exception as exc:
                    self._retry(reading.path, exc, "the report or the history row")
            if self.reports and item:
                self.delivered()

    def _record(self, reading: Reading) -> None:
        """Build the report, spool it, write the history row, delete the received file: in this order, so a
        failure at any step leaves the received file to be tried again."""
        uids = instance_uids(reading.header)
        if self.reports and reading.path not in self._spooled_reports:
            built = self._build(reading, uids["sop_instance_uid"])
            for dataset, tag in built:
                self.spool.put(self.spool.outgoing, encode(dataset), tag)
            self._spooled_reports.add(reading.path)  # a retry after a failed history row sends it once
        uids["calling_ae"] = str(reading.header.file_meta.get("SourceApplicationEntityTitle", "") or "").strip() or None
        self.history.add(image_sha256=reading.sha256, file_type="dicom", model_version=str(reading.result[
            "model_version"]), result=reading.result, heatmap_png=reading.overlay, source="dicom", dicom=uids)
        self.spool.remove(reading.path)
        self._spooled_reports.discard(reading.path)
        self.backoff.succeeded(reading.path)
        self.stats.bump("read")
        log.info("DICOM node: read SOP instance %s: %s", uids["sop_instance_uid"], reading.result["label"])

    def _build(self, reading: Reading, sop_instance_uid: str | None) -> list[tuple[Dataset, str]]:
        source, dropped = report_source(reading.header)
        if dropped:
            log.info("DICOM node: left %s out of the report of %s (not valid for the VR)", ",".join(dropped),
                     sop_instance_uid)
        built = [(build_report(source, reading.result, self.model), "sr")]
        if reading.overlay is not None and reading.result["label"] != "UNKNOWN":
            built.append((build_overlay(source, reading.overlay, self.model), "sc"))
        return built

    def _retry(self, path: Path, exc: BaseException, step: str) -> None:
        wait = self.backoff.failed(path)
        if wait is not None:
            self.stats.bump("retried")
            log.warning("DICOM node: %s failed for %s (%s); trying again in %.1f s", step, path.name, describe(exc),
                        wait)
            return
        self.stats.bump("failed")
        self._spooled_reports.discard(path)
        kept = self.spool.fail(path) if path.exists() else path
        log.error("DICOM node: %s failed for %s %d times (%s); kept in %s", step, path.name,
                  self.settings.read_attempts, describe(exc), kept)

    def _warm_up(self) -> None:
        # highdicom loads the standard's module tables on its first report (seconds); do it before the first
        # instance arrives rather than make it wait.
        dummy = Dataset()
        dummy.SOPClassUID, dummy.SOPInstanceUID = DigitalXRayImageStorageForPresentation, "1.2.3.4"
        dummy.StudyInstanceUID, dummy.SeriesInstanceUID, dummy.Modality = "1.2.3", "1.2.3.5", "DX"
        try:
            build_report(dummy, self.unknown("warm-up"), self.model)
        except Exception as exc:
            log.error("DICOM node: building a first report failed (%s); reports may fail", describe(exc))
