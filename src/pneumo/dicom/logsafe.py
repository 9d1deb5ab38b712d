"""Log lines about failures on patient datasets, without the patient.

The text of an exception raised by pydicom or highdicom while it reads a dataset can quote a value (``Unable to
convert '1980-01-01' to 'DA' object``), and so can a traceback's last line. What is logged instead is the
exception's type and where it was raised (file, line, function): enough to find the bug, nothing of the data.
"""

from __future__ import annotations

import traceback
from pathlib import Path


def describe(exc: BaseException) -> str:
    """``TypeName at module.py:123 in function`` for the frame that raised ``exc`` (the innermost one)."""
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ is not None else []
    if not frames:
        return type(exc).__name__
    last = frames[-1]
    return f"{type(exc).__name__} at {Path(last.filename).name}:{last.lineno} in {last.name}"
