"""A received C-STORE dataset, opened without holding more than the limits allow.

The header is parsed with large values left unread (Pixel Data's length is known, its bytes are not copied); a
deflated dataset is inflated as a stream that stops at the dataset limit (a 0.5 MB deflate bomb would otherwise
become gigabytes before any check), and is then kept as explicit VR little endian, the same bytes undeflated.
"""

from __future__ import annotations

import io
import zlib
from typing import Any, Callable

from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

# Values longer than this stay unread in the header (Pixel Data, overlays, big private blobs).
DEFER_BYTES = 1024
INFLATE_CHUNK = 1 << 20


class DatasetTooLargeError(ValueError):
    """A dataset that is, or inflates to, more bytes than the node takes."""


class MemoryBudgetError(DatasetTooLargeError):
    """Inflating the dataset would take the node's datasets in memory over their budget."""


def inflate_capped(deflated: bytes | memoryview, max_bytes: int,
                   take: Callable[[int], bool] = lambda size: True) -> io.BytesIO:
    """The raw-deflate stream ``deflated`` (PS3.5 A.5) inflated, at most ``max_bytes`` of it: DatasetTooLargeError
    as soon as it would be more, having held at most ``max_bytes`` plus one chunk. ``take(n)`` is asked before
    each chunk is kept (a memory budget); MemoryBudgetError when it says no."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = io.BytesIO()
    pending = memoryview(deflated)
    while pending.nbytes or not inflater.eof:
        chunk = inflater.decompress(pending, INFLATE_CHUNK)
        pending = memoryview(inflater.unconsumed_tail)
        if out.tell() + len(chunk) > max_bytes:
            raise DatasetTooLargeError(f"the deflated dataset inflates to more than {max_bytes} bytes")
        if not take(len(chunk)):
            raise MemoryBudgetError("inflating the dataset would pass the node's memory budget")
        out.write(chunk)
        if not chunk and not pending.nbytes:
            break  # a stream cut short: what there is goes on to the header checks
    return out


def open_dataset(event: Any, max_bytes: int, take: Callable[[int], bool]) -> tuple[io.BytesIO, UID]:
    """The received dataset's bytes as they will be spooled, and their transfer syntax (``take``: see
    :func:`inflate_capped`)."""
    transfer_syntax = UID(str(event.context.transfer_syntax))
    received = event.request.DataSet
    if transfer_syntax == DeflatedExplicitVRLittleEndian:
        with received.getbuffer() as deflated:
            return inflate_capped(deflated, max_bytes, take), ExplicitVRLittleEndian
    return received, transfer_syntax


def read_header(body: io.BytesIO, transfer_syntax: UID) -> Dataset:
    """The dataset with values over ``DEFER_BYTES`` left unread (their length is known: :func:`value_length`)."""
    body.seek(0)
    try:
        return read_dataset(body, transfer_syntax.is_implicit_VR, transfer_syntax.is_little_endian,
                            defer_size=DEFER_BYTES)
    finally:
        body.seek(0)


def value_length(header: Dataset, keyword: str) -> int | None:
    """Bytes of an element's value as received (None when it is absent or of undefined length)."""
    if keyword not in header:
        return None
    element = header.get_item(keyword, keep_deferred=True)
    length = getattr(element, "length", None)
    if length is None:  # already converted: a small value
        value = header[keyword].value
        return len(value) if isinstance(value, (bytes, bytearray)) else None
    return None if length == 0xFFFFFFFF else int(length)
