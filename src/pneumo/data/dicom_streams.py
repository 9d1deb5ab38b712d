"""What a DICOM's compressed bytes would expand to, found without expanding them.

A header can lie: a deflated dataset may inflate to gigabytes, a JPEG/JPEG-LS/JPEG 2000 frame may declare
a far larger image than the DICOM's Rows and Columns (its decoder allocates what the codestream says), and
an RLE segment expands up to 64 times (pydicom's decoder builds the whole segment before checking its
length). Each is bounded here, before pydicom decodes anything: deflate is inflated as a stream with a cap,
codestream headers are read and compared with the DICOM header, RLE segments are measured run by run.
Transfer syntaxes whose size cannot be checked this way are refused.
"""

from __future__ import annotations

import io
import zlib
from typing import Any, Callable

from pneumo.data.errors import ImageDecodeError, ImageTooLargeError, UnsupportedFormatError
from pneumo.data.pixel_budget import NON_PIXEL_ROOM, DecodeLimits, check_dicom_budget

DEFLATED = "1.2.840.10008.1.2.1.99"
NATIVE = {"1.2.840.10008.1.2": "Implicit VR Little Endian", "1.2.840.10008.1.2.1": "Explicit VR Little Endian",
          "1.2.840.10008.1.2.2": "Explicit VR Big Endian"}
RLE = "1.2.840.10008.1.2.5"
# JPEG family: the frame header (SOFn, or SOF55 for JPEG-LS) gives its size.
JPEG = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"}
# JPEG 2000 and HTJ2K: the SIZ marker gives it.
JPEG2000 = {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201",
            "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"}
ACCEPTED_SYNTAXES = sorted({*NATIVE, DEFLATED, RLE, *JPEG, *JPEG2000})
_INFLATE_STEP = 4 << 20  # bytes inflated (and compressed bytes fed) per step
_HEADER_PREFIX = 256 << 10  # inflated bytes read for the header before the pixel data
# Start-of-frame markers: C0-CF except DHT (C4), JPG (C8) and DAC (CC); F7 is JPEG-LS's SOF55.
_SOF = {m for m in range(0xC0, 0xD0) if m not in (0xC4, 0xC8, 0xCC)} | {0xF7}


def inflate_deflated_dicom(data: bytes, label: str, limits: DecodeLimits) -> bytes:
    """A Deflated Explicit VR Little Endian file rewritten as Explicit VR Little Endian, inflated as a
    stream; any other file is returned unchanged. The stream stops at ``limits.max_inflated_bytes``, and
    sooner once the inflated header is read: the header is checked against the pixel budget and the
    stream may then hold only those pixels plus :data:`NON_PIXEL_ROOM`."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import _read_file_meta_info, read_preamble
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import ExplicitVRLittleEndian

    stream = io.BytesIO(data)
    try:
        read_preamble(stream, True)
        file_meta = _read_file_meta_info(stream)
    except Exception as exc:  # pydicom raises many types for malformed meta groups
        raise ImageDecodeError(label, f"unreadable DICOM file meta information ({type(exc).__name__}: {exc})") from exc
    if str(file_meta.get("TransferSyntaxUID", "")) != DEFLATED:
        return data

    def tighten(prefix: bytes) -> int | None:
        return _cap_from_header(prefix, label, limits)

    inflated = inflate_capped(memoryview(data)[stream.tell():], label, limits.max_inflated_bytes, tighten)
    file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta = DicomBytesIO()
    write_file_meta_info(meta, file_meta, enforce_standard=True)
    return b"\0" * 128 + b"DICM" + meta.getvalue() + inflated


def _cap_from_header(prefix: bytes, label: str, limits: DecodeLimits) -> int | None:
    """The most the whole dataset may inflate to, from the elements before its pixel data in ``prefix``
    (None when the prefix does not reach them); refuses a header over the pixel budget."""
    from pydicom.filereader import read_dataset

    def at_pixels(tag: Any, vr: Any, length: int) -> bool:
        return int(tag) >> 16 >= 0x7FE0

    source = io.BytesIO(prefix)
    try:
        header = read_dataset(source, False, True, stop_when=at_pixels)
    except Exception:  # the prefix ends inside an element: read more first
        return None
    if source.tell() >= len(prefix) or "Rows" not in header:
        return None  # pixel data not reached yet, or no image header at all: the hard cap stays
    rows, columns = check_dicom_budget(header, label, limits)
    frames = max(int(header.get("NumberOfFrames", 1) or 1), 1)
    samples = max(int(header.get("SamplesPerPixel", 1) or 1), 1)
    pixels = frames * rows * columns * samples * max((int(header.get("BitsAllocated", 16) or 16) + 7) // 8, 1)
    return source.tell() + pixels + NON_PIXEL_ROOM


def inflate_capped(compressed: bytes | memoryview, label: str, cap: int,
                   tighten: Callable[[bytes], int | None] | None = None) -> bytes:
    """Raw-deflate ``compressed`` (no zlib header, as DICOM writes it), refusing output over ``cap`` bytes
    before it is produced: each step inflates at most :data:`_INFLATE_STEP` bytes. ``tighten``, given the
    first :data:`_HEADER_PREFIX` bytes of output, may return a lower cap."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    parts: list[bytes] = []
    produced, offset = 0, 0
    pending = b""
    try:
        while not inflater.eof and (pending or offset < len(compressed)):
            if not pending:
                pending = bytes(compressed[offset:offset + _INFLATE_STEP])
                offset += len(pending)
            part = inflater.decompress(pending, min(_INFLATE_STEP, cap - produced + 1))
            pending = inflater.unconsumed_tail
            produced += len(part)
            parts.append(part)
            if tighten is not None and produced >= min(_HEADER_PREFIX, cap):
                tightened = tighten(_head(parts, _HEADER_PREFIX))
                cap, tighten = min(cap, tightened if tightened is not None else cap), None
            if produced > cap:
                raise ImageTooLargeError(label, f"deflated DICOM inflates to more than {cap} bytes, over the "
                                                f"{cap}-byte limit for its dataset")
    except zlib.error as exc:
        raise ImageDecodeError(label, f"deflated DICOM data is corrupt ({exc})") from exc
    if not inflater.eof:
        raise ImageDecodeError(label, "deflated DICOM data is truncated (the deflate stream does not end)")
    if tighten is not None and produced < _HEADER_PREFIX:
        tighten(b"".join(parts))  # a short dataset: its header is still checked against the budget
    return b"".join(parts)


def _head(parts: list[bytes], size: int) -> bytes:
    head, total = [], 0
    for part in parts:
        head.append(part[:size - total])
        total += len(head[-1])
        if total >= size:
            break
    return b"".join(head)


def check_encapsulated_frame(dataset: Any, label: str, rows: int, columns: int) -> None:
    """Refuse a transfer syntax pneumo cannot bound, a codestream larger than the header says, or an RLE
    segment that would expand past its frame; native pixels pass (their size is the header's)."""
    syntax = str(dataset.file_meta.get("TransferSyntaxUID", ""))
    if syntax in NATIVE:
        return
    if syntax not in ACCEPTED_SYNTAXES:
        raise UnsupportedFormatError(label, f"DICOM transfer syntax {syntax or 'none'} is not read; accepted: "
                                            f"{', '.join(ACCEPTED_SYNTAXES)}")
    if "PixelData" not in dataset:
        return  # float pixel data is never encapsulated
    from pydicom.encaps import generate_frames

    try:
        frame = next(generate_frames(dataset.PixelData, number_of_frames=1))
    except Exception as exc:  # pydicom raises ValueError/StopIteration/struct errors on bad item tags
        raise ImageDecodeError(label, f"encapsulated pixel data has no readable frame ({type(exc).__name__})") from exc
    if syntax == RLE:
        _check_rle(frame, label, rows * columns)
        return
    size = jpeg_frame_size(frame) if syntax in JPEG else jpeg2000_frame_size(frame)
    if size is None:
        raise ImageDecodeError(label, "compressed frame has no readable frame header (SOF or SIZ marker)")
    if size != (rows, columns):
        kind = ImageTooLargeError if size[0] * size[1] > rows * columns else ImageDecodeError
        raise kind(label, f"compressed frame declares {size[1]}x{size[0]} pixels but the DICOM header "
                          f"{columns}x{rows}, the limit its pixels are budgeted for; refused before decoding")


def jpeg_frame_size(stream: bytes) -> tuple[int, int] | None:
    """(rows, columns) from a JPEG or JPEG-LS codestream's frame header, or None if there is none."""
    if not stream.startswith(b"\xff\xd8"):
        return None
    pos = 2
    while pos + 4 <= len(stream):
        if stream[pos] != 0xFF:
            return None
        marker = stream[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if marker in _SOF:
            if pos + 9 > len(stream):
                return None
            return int.from_bytes(stream[pos + 5:pos + 7], "big"), int.from_bytes(stream[pos + 7:pos + 9], "big")
        if marker == 0xDA:  # a scan before any frame header
            return None
        pos += 2 + int.from_bytes(stream[pos + 2:pos + 4], "big")
    return None


def jpeg2000_frame_size(stream: bytes) -> tuple[int, int] | None:
    """(rows, columns) from a JPEG 2000 codestream's SIZ marker (the image area less its offset)."""
    start = stream.find(b"\xff\x4f\xff\x51", 0, 4096)  # SOC then SIZ; a JP2 wrapper puts boxes before them
    if start < 0 or start + 24 > len(stream):
        return None
    siz = start + 4
    width, height, x0, y0 = (int.from_bytes(stream[siz + 4 + 4 * i:siz + 8 + 4 * i], "big") for i in range(4))
    return height - y0, width - x0


def _check_rle(frame: bytes, label: str, frame_pixels: int) -> None:
    """Each RLE segment holds one byte plane of the frame: ``rows x columns`` bytes (plus a pad byte)."""
    if len(frame) < 64:
        raise ImageDecodeError(label, "RLE frame is shorter than its 64-byte header")
    count = int.from_bytes(frame[:4], "little")
    offsets = [int.from_bytes(frame[4 + 4 * i:8 + 4 * i], "little") for i in range(min(count, 15))]
    if not 1 <= count <= 15 or any(not 64 <= o <= len(frame) for o in offsets):
        raise ImageDecodeError(label, f"RLE header is malformed ({count} segments)")
    ends = offsets[1:] + [len(frame)]
    for start, end in zip(offsets, ends):
        expanded = rle_segment_length(frame[start:end], frame_pixels + 1)
        if expanded > frame_pixels + 1:
            raise ImageTooLargeError(label, f"an RLE segment expands past the {frame_pixels}-byte limit of one "
                                            "byte plane of its frame (Rows x Columns); refused before decoding")


def rle_segment_length(segment: bytes, stop_after: int) -> int:
    """Bytes a PackBits segment (DICOM PS3.5 G.3) decodes to, counted run by run without building them;
    counting stops once past ``stop_after``."""
    produced, pos, end = 0, 0, len(segment)
    while pos < end and produced <= stop_after:
        header = segment[pos]
        if header > 128:  # replicate the next byte 257 - header times
            produced += 257 - header
            pos += 2
        elif header < 128:  # copy the next header + 1 bytes
            produced += header + 1
            pos += header + 2
        else:
            pos += 1
    return produced
