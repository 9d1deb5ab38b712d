"""Folders on disk that hold DICOM files between steps, so that nothing acknowledged is ever only in memory.

``incoming``: instances acknowledged to the sender and not yet read; ``outgoing``: reports not yet delivered;
``failed``: files that could not be processed or were refused by the destination (kept for a person to look at).
A file appears under its final name only when it is complete (written to a temporary name, synced, renamed, and
the folder synced so the rename itself survives a power cut). Files are 0600 and folders 0700: they hold patient
data. ``quota_bytes`` bounds all three folders together; only new instances are refused by it (reports and moves
to ``failed`` always go through, or a full spool could never drain).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Sequence

from pneumo.atomic import sync_directory, write_bytes

SUFFIX = ".dcm"
FILE_MODE = 0o600
FOLDER_MODE = 0o700
Chunk = bytes | bytearray | memoryview


class SpoolFullError(OSError):
    """Writing this file would take the spool over its quota."""


class Spool:
    def __init__(self, root: Path, quota_bytes: int | None = None) -> None:
        self.root = Path(root)
        self.incoming = self.root / "incoming"
        self.outgoing = self.root / "outgoing"
        self.failed = self.root / "failed"
        self.quota_bytes = quota_bytes
        for folder in (self.root, self.incoming, self.outgoing, self.failed):
            folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
            os.chmod(folder, FOLDER_MODE)  # mkdir's mode is masked by the umask, and the folder may be older
        self._counter = 0
        self._lock = threading.Lock()
        self._used = self._measure()

    def _measure(self) -> int:
        total = 0
        for folder in (self.incoming, self.outgoing, self.failed):
            with os.scandir(folder) as entries:
                total += sum(entry.stat().st_size for entry in entries if entry.is_file())
        return total

    @property
    def used_bytes(self) -> int:
        return self._used

    def _name(self, tag: str) -> str:
        with self._lock:
            self._counter += 1
            counter = self._counter
        # Sorted by arrival: nanoseconds, then a counter for two files in the same tick.
        return f"{time.time_ns():020d}-{os.getpid()}-{counter:06d}-{tag}{SUFFIX}"

    def _reserve(self, size: int, quota: bool) -> None:
        with self._lock:
            if quota and self.quota_bytes is not None and self._used + size > self.quota_bytes:
                self._used = self._measure()  # files may have been removed by hand since the last count
                if self._used + size > self.quota_bytes:
                    raise SpoolFullError(f"spool {self.root} holds {self._used} bytes; {size} more would pass its "
                                         f"{self.quota_bytes}-byte quota")
            self._used += size

    def put(self, folder: Path, data: Chunk | Sequence[Chunk], tag: str, *, quota: bool = False) -> Path:
        """Write ``data`` (bytes, or buffers written one after the other) durably under ``folder`` and return its
        path. ``quota``: refuse with SpoolFullError when it would take the spool over its quota."""
        chunks = [data] if isinstance(data, (bytes, bytearray, memoryview)) else list(data)
        size = sum(memoryview(chunk).nbytes for chunk in chunks)
        self._reserve(size, quota)
        try:
            return write_bytes(folder / self._name(tag), chunks, mode=FILE_MODE)
        except BaseException:
            with self._lock:
                self._used -= size
            raise

    def pending(self, folder: Path) -> list[Path]:
        """Complete files in ``folder``, oldest first (a ``.tmp`` left by a crash is ignored)."""
        return sorted(folder.glob(f"*{SUFFIX}"))

    def remove(self, path: Path) -> None:
        """Delete a file that has been dealt with, durably."""
        size = path.stat().st_size
        path.unlink()
        sync_directory(path.parent)
        with self._lock:
            self._used -= size

    def fail(self, path: Path) -> Path:
        """Move a file to ``failed``, durably (it still counts against the quota: it is still on this disk)."""
        target = self.failed / path.name
        os.replace(path, target)
        sync_directory(self.failed)
        sync_directory(path.parent)
        return target
