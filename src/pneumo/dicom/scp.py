"""The node's C-STORE handler: every check that can refuse an instance, then the spool.

An instance is answered Success only once its bytes are synced to the spool's ``incoming`` folder. Anything else
gets a DIMSE failure status naming the problem (never a patient's data): a storage SOP class other than DX, CR or
Secondary Capture (0x0122); a dataset over the size limit, an image over the pixel budget, or a full spool (0xA700
Out of Resources: the sender may try again later); no pixel data or several frames (0xA900); a dataset or header
that cannot be read, or pixel data shorter than its header declares (0xC000).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any, Callable

from pydicom.dataset import Dataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID
from pynetdicom.sop_class import (ComputedRadiographyImageStorage, DigitalXRayImageStorageForPresentation,
                                  DigitalXRayImageStorageForProcessing, SecondaryCaptureImageStorage)

from pneumo.dicom.checks import image_refusal, native_pixel_bytes
from pneumo.dicom.guard import OVER_BUDGET, OVER_LIMIT, AssociationGuard, Reservation
from pneumo.dicom.logsafe import describe
from pneumo.dicom.received import (DatasetTooLargeError, MemoryBudgetError, open_dataset, read_header,
                                   value_length)
from pneumo.dicom.settings import DicomSettings
from pneumo.dicom.spool import Spool, SpoolFullError
from pneumo.dicom.status import (CANNOT_UNDERSTAND, DATASET_DOES_NOT_MATCH, OUT_OF_RESOURCES, SOP_CLASS_NOT_SUPPORTED,
                                 SUCCESS, Refusal)

log = logging.getLogger("pneumo.dicom")

ACCEPTED_SOP_CLASSES = {
    DigitalXRayImageStorageForPresentation: "Digital X-Ray (for presentation)",
    DigitalXRayImageStorageForProcessing: "Digital X-Ray (for processing)",
    ComputedRadiographyImageStorage: "Computed Radiography",
    SecondaryCaptureImageStorage: "Secondary Capture",
}


def pixel_refusal(header: Dataset, transfer_syntax: UID, max_image_bytes: int) -> Refusal | None:
    """No pixel data, an image outside the budget, or native pixel data shorter than the header declares."""
    if "PixelData" not in header:
        return Refusal(DATASET_DOES_NOT_MATCH, "no Pixel Data (7FE0,0010) in an image instance")
    refusal = image_refusal(header, max_image_bytes)
    if refusal is not None or transfer_syntax.is_compressed:
        return refusal
    expected, found = native_pixel_bytes(header), value_length(header, "PixelData")
    if expected is not None and (found is None or found < expected):
        return Refusal(CANNOT_UNDERSTAND, f"Pixel Data has {found} bytes; the header declares {expected}")
    return None


class StoreHandler:
    """EVT_C_STORE: checks, spools and hands the spooled file to ``accept``; counts into ``stats``."""

    def __init__(self, settings: DicomSettings, spool: Spool, guard: AssociationGuard, stats: Any,
                 accept: Callable[[Path], None]) -> None:
        self.settings, self.spool, self.guard, self.stats, self.accept = settings, spool, guard, stats, accept

    def __call__(self, event: Any) -> int | Dataset:
        try:
            refusal = self._store(event)
        except Exception as exc:  # a bug must answer the sender, not take the association down
            log.error("DICOM node: C-STORE failed (%s)", describe(exc))
            refusal = Refusal(CANNOT_UNDERSTAND, f"pneumo could not store the instance ({type(exc).__name__})")
        if refusal is None:
            return SUCCESS
        self.stats.bump("refused")
        return refusal.dataset()

    def _store(self, event: Any) -> Refusal | None:
        sop_class = UID(str(event.request.AffectedSOPClassUID))
        calling = str(event.assoc.requestor.ae_title).strip()
        if sop_class not in ACCEPTED_SOP_CLASSES:
            log.info("DICOM node: refused %s from %s (SOP class not read)", sop_class.name, calling)
            return Refusal(SOP_CLASS_NOT_SUPPORTED, f"pneumo reads DX, CR, SC; not {sop_class.name}")
        over = self.guard.oversized(event.assoc, int(event.request.MessageID))
        if over is not None:
            return self._dropped(over, calling)
        with Reservation(self.guard.budget) as reservation:  # what inflating holds, given back at the end
            try:
                body, transfer_syntax = open_dataset(event, self.settings.max_dataset_bytes, reservation.take)
                header = read_header(body, transfer_syntax)
            except MemoryBudgetError:
                return self._dropped(OVER_BUDGET, calling)
            except DatasetTooLargeError:
                return self._dropped(OVER_LIMIT, calling)
            except Exception as exc:
                log.info("DICOM node: refused an instance from %s: cannot be parsed (%s)", calling,
                         type(exc).__name__)
                return Refusal(CANNOT_UNDERSTAND, f"dataset cannot be decoded ({type(exc).__name__})")
            refusal = pixel_refusal(header, transfer_syntax, self.settings.max_image_bytes)
            if refusal is not None:
                log.info("DICOM node: refused an instance from %s: %s", calling, refusal.comment)
                return refusal
            return self._spool(event, body, transfer_syntax, calling)

    def _dropped(self, why: str, calling: str) -> Refusal:
        """A dataset over the size limit, or one the node had no memory left for (both: try again later)."""
        if why == OVER_BUDGET:
            log.warning("DICOM node: refused an instance from %s: datasets in memory at their %d-byte budget",
                        calling, self.settings.memory_budget_bytes)
            return Refusal(OUT_OF_RESOURCES, "pneumo is busy with other datasets; send again later")
        limit = self.settings.max_dataset_bytes
        log.warning("DICOM node: refused an instance from %s: dataset over the %d-byte limit", calling, limit)
        return Refusal(OUT_OF_RESOURCES, f"dataset over pneumo's {limit}-byte limit")

    def _spool(self, event: Any, body: io.BytesIO, transfer_syntax: UID, calling: str) -> Refusal | None:
        meta = event.file_meta
        meta.TransferSyntaxUID = transfer_syntax  # an inflated dataset is kept as explicit VR little endian
        meta.SourceApplicationEntityTitle = calling  # who sent it, kept for the history row
        preamble = io.BytesIO()
        preamble.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(preamble, meta, enforce_standard=True)
        try:
            # The received dataset goes to disk as pynetdicom holds it: no copy of a 7.6 MB instance.
            with body.getbuffer() as view:
                path = self.spool.put(self.spool.incoming, [preamble.getvalue(), view], "in", quota=True)
        except SpoolFullError:
            log.warning("DICOM node: refused an instance from %s: the spool is at its %d-byte quota", calling,
                        self.settings.spool_quota_bytes)
            return Refusal(OUT_OF_RESOURCES, "pneumo's spool is full; send again later")
        except OSError as exc:
            log.error("DICOM node: cannot spool a received instance (%s)", describe(exc))
            return Refusal(OUT_OF_RESOURCES, "pneumo cannot store the instance (disk)")
        self.stats.bump("received")
        self.accept(path)
        return None
