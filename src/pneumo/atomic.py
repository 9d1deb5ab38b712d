"""Writing a file so that a reader, a killed run or a power cut leaves the old file or the new one, never a part.

The one way pneumo writes a file that must not be seen half-written (bundles, configs, the gate, ONNX exports,
the image cache, the DICOM spool, batch results): write to a temporary file in the same folder, fsync it, set its
permissions, rename it over the target, fsync the folder so that the rename itself is durable. Every layer may
import it: it imports nothing of pneumo.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

# Readable by all: bundles, configs and results are shared. Files that hold patient data pass 0o600.
SHARED_MODE = 0o644
Chunk = bytes | bytearray | memoryview


def sync_directory(folder: str | os.PathLike[str], *, contents: bool = False) -> None:
    """fsync a folder, which makes the renames and deletions in it durable; ``contents``: each file directly in
    it first (a folder about to be renamed into place as a whole, such as a bundle's staging folder)."""
    if contents:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False):
                    _fsync(entry.path)
    _fsync(folder)


def _fsync(path: str | os.PathLike[str]) -> None:
    descriptor = os.open(path, os.O_RDONLY)  # Linux syncs through a read-only descriptor, folders included
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextmanager
def replacing(path: str | os.PathLike[str], *, mode: int = SHARED_MODE, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (owner-only until it is complete) for the caller to write; when the
    block ends without an exception the file is synced, given ``mode`` and renamed to ``path``, and the folder
    synced. When the block raises, the temporary file is deleted and ``path`` is left as it was.
    ``overwrite=False`` creates ``path`` only where it does not exist yet: FileExistsError (the existing file
    kept) when another writer got there first."""
    target = Path(path)
    descriptor, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(descriptor)
    temporary = Path(name)
    try:
        yield temporary
        _fsync(temporary)
        os.chmod(temporary, mode)  # explicit: mkstemp's 0o600 would otherwise survive the rename
        if overwrite:
            os.replace(temporary, target)
        else:
            os.link(temporary, target)  # unlike a rename, fails where the target exists
        sync_directory(target.parent)
    finally:
        temporary.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike[str], data: Chunk | Iterable[Chunk], *, mode: int = SHARED_MODE) -> Path:
    """Write ``data`` (bytes, or buffers written one after the other) to ``path`` atomically and durably."""
    chunks = [data] if isinstance(data, (bytes, bytearray, memoryview)) else data
    with replacing(path, mode=mode) as temporary, open(temporary, "wb") as handle:
        for chunk in chunks:
            handle.write(chunk)
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str, *, mode: int = SHARED_MODE) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and durably."""
    return write_bytes(path, text.encode("utf-8"), mode=mode)
