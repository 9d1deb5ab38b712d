"""Folders on disk that hold DICOM files between steps, so that nothing acknowledged is ever only in memory.

``incoming``: instances acknowledged to the sender and not yet read; ``outgoing``: reports not yet delivered;
``failed``: files that could not be processed or were refused by the destination (kept for a person to look at).
A file appears under its final name only when it is complete (written to a temporary name, synced, renamed).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Sequence

SUFFIX = ".dcm"


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.incoming = self.root / "incoming"
        self.outgoing = self.root / "outgoing"
        self.failed = self.root / "failed"
        for folder in (self.incoming, self.outgoing, self.failed):
            folder.mkdir(parents=True, exist_ok=True)
        self._counter = 0
        self._lock = threading.Lock()

    def _name(self, tag: str) -> str:
        with self._lock:
            self._counter += 1
            counter = self._counter
        # Sorted by arrival: nanoseconds, then a counter for two files in the same tick.
        return f"{time.time_ns():020d}-{os.getpid()}-{counter:06d}-{tag}{SUFFIX}"

    def put(self, folder: Path, data: bytes | bytearray | memoryview | Sequence[bytes | memoryview], tag: str
            ) -> Path:
        """Write ``data`` (bytes, or buffers written one after the other) durably under ``folder`` and return its
        path."""
        target = folder / self._name(tag)
        partial = target.with_suffix(".part")
        with open(partial, "wb") as handle:
            for chunk in ([data] if isinstance(data, (bytes, bytearray, memoryview)) else data):
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, target)
        return target

    def pending(self, folder: Path) -> list[Path]:
        """Complete files in ``folder``, oldest first (a ``.part`` left by a crash is ignored)."""
        return sorted(folder.glob(f"*{SUFFIX}"))

    def fail(self, path: Path) -> Path:
        target = self.failed / path.name
        os.replace(path, target)
        return target
