"""DIMSE status codes the node answers with, and which a PACS's answers to a C-STORE are worth retrying.

PS3.4 B.2.3 (Storage Service Class) and PS3.7 C.4.2.1.4 (general statuses)."""

from __future__ import annotations

from typing import NamedTuple

from pydicom.dataset import Dataset

SUCCESS = 0x0000
SOP_CLASS_NOT_SUPPORTED = 0x0122
OUT_OF_RESOURCES = 0xA700
DATASET_DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000

# A failure that may not happen again on a later try: out of resources (A7xx), the general processing failure
# (0110, which PACSs answer for a database or disk error), resource limitation (0213) and duplicate invocation
# (0210, a message id still in use). Every other failure (A9xx does not match the SOP class, Cxxx cannot
# understand, 0122 SOP class not supported, 0124 not authorised, 0117 invalid instance...) will be answered the
# same way to the same bytes.
TRANSIENT_FAILURES = frozenset({0x0110, 0x0210, 0x0213})


def is_delivered(code: int) -> bool:
    """Success, or a warning (coercion 0xB000, elements discarded 0xB006, does not match 0xB007, 0x0107, 0x0116)."""
    return code == SUCCESS or code in (0x0107, 0x0116) or 0xB000 <= code <= 0xBFFF


def is_transient(code: int) -> bool:
    return 0xA700 <= code <= 0xA7FF or code in TRANSIENT_FAILURES


class Refusal(NamedTuple):
    """A C-STORE answered with a failure: the status and a comment for the sender (no patient data)."""

    status: int
    comment: str

    def dataset(self) -> Dataset:
        answer = Dataset()
        answer.Status = self.status
        answer.ErrorComment = self.comment[:64]  # LO: 64 characters
        return answer
