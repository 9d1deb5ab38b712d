"""Keeping the heap from growing with each association that held large datasets (glibc only).

pynetdicom runs each association in new threads, and glibc gives threads their own heap arenas (up to eight per
core); what a finished association freed stays in its arena, fragmented, where the next association's thread may
not reuse it. Measured with 8 bombs at once, six rounds (``bench/bench_dicom_hostile.py --rounds 6``): the
node's peak RSS went 639, 714, 758, 758, 872, 925 MB; with the node limiting glibc to 2 arenas and trimming the
heap after associations that moved 32 MiB or more, 496 MB for five rounds and 583 MB at the sixth, falling back to
about 300 MB after each.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys


M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)


@functools.lru_cache(maxsize=1)
def _libc():
    """The C library, where it is glibc (it has ``mallopt`` and ``malloc_trim``); None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    library = ctypes.CDLL(name) if name else None
    if library is None or not hasattr(library, "malloc_trim") or not hasattr(library, "mallopt"):
        return None
    library.malloc_trim.argtypes, library.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    library.mallopt.argtypes, library.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return library


def limit_arenas(arenas: int) -> bool:
    """Have glibc create no more than ``arenas`` heap arenas from now on (threads share them); False where the C
    library cannot. Process-wide, like ``MALLOC_ARENA_MAX``, which it sets when the environment has not."""
    library = _libc()
    return library is not None and bool(library.mallopt(M_ARENA_MAX, arenas))


def trim_heap() -> bool:
    """Return the free memory of every heap arena to the system; False where the C library cannot."""
    library = _libc()
    if library is None:
        return False
    library.malloc_trim(0)
    return True
