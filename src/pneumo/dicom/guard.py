"""Limits on what associations can make the node hold in memory, enforced as the bytes arrive.

* A PDU whose length field is over the limit closes the connection before any of its body is read (the peer
  was told the node's maximum at association, so only a broken or hostile peer sends more).
* A dataset over ``max_dataset_bytes`` is not kept: its further fragments are dropped as they arrive, and the
  C-STORE handler answers it with Out of Resources once its last fragment is in. The sender gets a DIMSE status,
  the node holds at most the limit.
* All associations together hold at most ``memory_budget_bytes`` of datasets being received (and of inflated
  deflated datasets being checked): a dataset that would pass it is dropped the same way and answered Out of
  Resources, which a sender treats as "try again later". Without it the bound would be the number of
  associations times the dataset limit. A dataset counts while it arrives (the time a slow or hostile sender
  controls); once complete it is checked and spooled at once by the C-STORE handler.
* A command set over 64 KiB (a real one is a few hundred bytes) ends the association as an invalid PDU.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from pneumo.dicom.heap import trim_heap
from pneumo.dicom.tcp import receive_exactly

log = logging.getLogger("pneumo.dicom")

MAX_COMMAND_BYTES = 64 << 10
# Association PDUs (A-ASSOCIATE-RQ with many presentation contexts) may exceed a small P-DATA maximum.
MIN_PDU_BODY = 64 << 10
# Senders that count the maximum without the PDV headers send a few bytes more; they are not hostile.
PDU_SLACK = 1024
# Trim the heap when an association closes after this many dataset bytes went through memory (see heap.py).
TRIM_AFTER_BYTES = 32 << 20


class PduTooLargeError(OSError):
    """A PDU longer than the node accepts; pynetdicom treats it as the connection closing."""


def limited_receive(raw: Any, max_body: int) -> Callable[[int], bytearray]:
    """pynetdicom's ``recv`` for one association: whole PDUs in one buffer, none over ``max_body`` bytes."""
    def receive(size: int) -> bytearray:
        if size > max_body:
            raise PduTooLargeError(f"PDU of {size} bytes announced, over the {max_body}-byte limit")
        return receive_exactly(raw, size)
    return receive


class MemoryBudget:
    """Bytes of datasets the node holds at once, across all its associations."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._taken_since_trim = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        return self._used

    def take(self, size: int) -> bool:
        with self._lock:
            if self._used + size > self.limit:
                return False
            self._used += size
            self._taken_since_trim += size
            return True

    def taken_since_trim(self, reset: bool = False) -> int:
        """Bytes taken since the last call with ``reset``: how much the heap may hold freed."""
        with self._lock:
            taken = self._taken_since_trim
            if reset:
                self._taken_since_trim = 0
            return taken

    def give(self, size: int) -> None:
        with self._lock:
            self._used -= size


class Reservation:
    """Bytes taken from a budget for one piece of work, all given back when it ends (``with``)."""

    def __init__(self, budget: MemoryBudget) -> None:
        self.budget, self.bytes = budget, 0

    def take(self, size: int) -> bool:
        if not self.budget.take(size):
            return False
        self.bytes += size
        return True

    def give_back(self) -> None:
        self.budget.give(self.bytes)
        self.bytes = 0

    def __enter__(self) -> "Reservation":
        return self

    def __exit__(self, *exc: object) -> None:
        self.give_back()


OVER_LIMIT, OVER_BUDGET = "limit", "budget"


class DatasetLimit:
    """Counts one association's dataset bytes per DIMSE message (wrapping its DIMSE provider's
    ``receive_primitive``, called by pynetdicom's reader thread) and drops what is over the limit."""

    def __init__(self, dimse: Any, max_bytes: int, budget: MemoryBudget) -> None:
        self._dimse = dimse
        self._receive = dimse.receive_primitive
        self.max_bytes = max_bytes
        self._held = Reservation(budget)  # the bytes of the message being received
        self._dataset = 0
        self._command = 0
        self._why: str | None = None  # why the message being received is being dropped
        self._over: dict[int, str] = {}  # message id -> OVER_LIMIT or OVER_BUDGET, for messages dropped
        self._lock = threading.Lock()

    def receive_primitive(self, primitive: Any) -> None:
        kept = []
        for context_id, data in primitive.presentation_data_value_list:
            if data[0] & 1:  # a command fragment (PS3.8 E.2)
                self._command += len(data) - 1
                if self._command > MAX_COMMAND_BYTES:
                    log.warning("DICOM node: a command set over %d bytes; ending the association", MAX_COMMAND_BYTES)
                    self._dimse.dul.event_queue.put("Evt19")  # invalid PDU: pynetdicom aborts the association
                    return
            elif not self._keep(len(data) - 1):
                data = bytes(data[:1])  # keep the control header (its "last fragment" bit), drop the bytes
            kept.append([context_id, data])
        primitive.presentation_data_value_list = kept
        self._receive(primitive)
        if self._dimse.message is None:  # the message is complete: the next one starts from zero
            self.release()

    def _keep(self, size: int) -> bool:
        """Whether a dataset fragment of ``size`` bytes may be kept; notes the message as dropped otherwise."""
        with self._lock:
            self._dataset += size
            if self._why is None:
                if self._dataset > self.max_bytes:
                    self._why = OVER_LIMIT
                elif not self._held.take(size):
                    self._why = OVER_BUDGET
                else:
                    return True
                command = getattr(self._dimse.message, "command_set", None)
                if command is not None and "MessageID" in command:
                    self._over[int(command.MessageID)] = self._why
            return False

    def release(self) -> None:
        """The message is complete, or the connection closed: its bytes no longer count against the budget."""
        with self._lock:
            self._held.give_back()
            self._dataset = self._command = 0
            self._why = None

    def take_over(self, message_id: int) -> str | None:
        """Why a message was dropped (OVER_LIMIT, OVER_BUDGET; None: it was not); forgets it."""
        with self._lock:
            return self._over.pop(message_id, None)


class AssociationGuard:
    """Installs the limits on each association the node accepts (EVT_CONN_OPEN) and finds them again for the
    C-STORE handler."""

    def __init__(self, *, max_pdu: int, max_dataset_bytes: int, memory_budget_bytes: int) -> None:
        self.max_body = max(max_pdu + PDU_SLACK, MIN_PDU_BODY)
        self.max_dataset_bytes = max_dataset_bytes
        self.budget = MemoryBudget(memory_budget_bytes)
        self._limits: dict[int, DatasetLimit] = {}
        self._lock = threading.Lock()

    def on_open(self, event: Any) -> None:
        assoc = event.assoc
        association_socket = assoc.dul.socket
        if association_socket is not None and association_socket.socket is not None:
            association_socket.recv = limited_receive(association_socket.socket, self.max_body)
        limit = DatasetLimit(assoc.dimse, self.max_dataset_bytes, self.budget)
        assoc.dimse.receive_primitive = limit.receive_primitive
        with self._lock:
            self._limits[id(assoc)] = limit

    def on_close(self, event: Any) -> None:
        with self._lock:
            limit = self._limits.pop(id(event.assoc), None)
        if limit is not None:
            limit.release()  # a connection cut mid-dataset gives its bytes back
        if self.budget.taken_since_trim() >= TRIM_AFTER_BYTES:
            self.budget.taken_since_trim(reset=True)
            trim_heap()

    def oversized(self, assoc: Any, message_id: int) -> str | None:
        with self._lock:
            limit = self._limits.get(id(assoc))
        return limit.take_over(message_id) if limit is not None else None
