"""Small files that would expand to gigabytes: the decompression bombs of issue 28, built in memory.

Shared by the decoder's tests (``tests/data/test_decode_budget.py``), the API's (``tests/service``) and
``bench/bench_hostile_upload.py``. None of them is ever expanded here: the builders write headers and
compressed bytes only.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, JPEGLSLossless, RLELossless,
                         SecondaryCaptureImageStorage, generate_uid)

_PIXEL_DATA_OB = struct.pack("<HH", 0x7FE0, 0x0010) + b"OB\0\0"


def _header(rows: int, columns: int, *, bits: int = 16, frames: int | None = None, photometric="MONOCHROME2"):
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "DX"
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if frames is not None:
        ds.NumberOfFrames = frames
    return ds


def _file(ds: Dataset, syntax: str, body: bytes | None = None) -> bytes:
    """Preamble, file meta with ``syntax``, then ``body`` (or ``ds`` encoded explicit VR little endian)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    out = DicomBytesIO()
    write_file_meta_info(out, meta, enforce_standard=True)
    if body is None:
        body = _encode(ds)
    return b"\0" * 128 + b"DICM" + out.getvalue() + body


def _encode(ds: Dataset) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, ds)
    return buffer.getvalue()


def jpegls_multiframe_bomb(frames: int = 128, size: int = 2000) -> bytes:
    """Issue 28's first bomb: ~40 KB of JPEG-LS holding ``frames`` blank ``size`` x ``size`` 16-bit frames
    (128 x 2000 x 2000 x 2 bytes = 1 GB once decoded)."""
    import jpeg_ls

    frame = bytes(jpeg_ls.encode(np.zeros((size, size), np.uint16)))
    ds = _header(size, size, frames=frames)
    ds.PixelData = encapsulate([frame] * frames)
    ds["PixelData"].VR = "OB"
    return _file(ds, JPEGLSLossless)


def rle_multiframe_bomb(frames: int = 128, size: int = 2000) -> bytes:
    """The same bomb where JPEG-LS cannot be encoded (pyjpegls comes with the ``dicom`` extra): RLE Lossless,
    ``frames`` blank 8-bit ``size`` x ``size`` frames (~8 MB of runs for 512 MB of pixels)."""
    whole, rest = divmod(size * size, 128)
    runs = b"\x81\x00" * whole + (bytes([257 - rest, 0]) if rest > 1 else b"\x00\x00" * rest)
    frame = struct.pack("<16I", 1, 64, *([0] * 14)) + runs
    ds = _header(size, size, bits=8, frames=frames)
    ds.PixelData = encapsulate([frame] * frames)
    ds["PixelData"].VR = "OB"
    return _file(ds, RLELossless)


def jpegls_lying_frame(declared: int = 16, actual: int = 4000) -> bytes:
    """A one-frame JPEG-LS DICOM whose header says ``declared`` pixels a side while its codestream holds a
    blank ``actual`` x ``actual`` image: the decoder would allocate the codestream's size."""
    import jpeg_ls

    frame = bytes(jpeg_ls.encode(np.zeros((actual, actual), np.uint16)))
    ds = _header(declared, declared)
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    return _file(ds, JPEGLSLossless)


def rle_segment_bomb(side: int = 16, expanded: int = 64 * 1024 * 1024) -> bytes:
    """A one-frame 8-bit RLE DICOM of ``side`` x ``side`` pixels whose one segment replicates to
    ``expanded`` bytes (2 bytes per 128: 1 MB of runs is 64 MB decoded)."""
    runs = b"\x81\x00" * (expanded // 128)  # header 0x81: repeat the next byte 257 - 129 = 128 times
    segment_header = struct.pack("<16I", 1, 64, *([0] * 14))
    ds = _header(side, side, bits=8)
    ds.PixelData = encapsulate([segment_header + runs])
    ds["PixelData"].VR = "OB"
    return _file(ds, RLELossless)


def deflated_bomb(compressed_target: int = 512 * 1024, side: int = 16) -> bytes:
    """Issue 28's second bomb: ~0.5 MB of raw deflate (DICOM's Deflated Explicit VR Little Endian) that
    inflates to ~500 MB: a ``side`` x ``side`` header followed by a pixel element of zeros. One block of
    16 MiB of zeros is compressed once and repeated (each ends in a full flush, so blocks stand alone), so
    even a 20 GB bomb is built in a moment."""
    zeros = 16 * 1024 * 1024
    block_maker = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = block_maker.compress(bytes(zeros)) + block_maker.flush(zlib.Z_FULL_FLUSH)
    repeats = max(compressed_target // len(block), 1)
    ds = _header(side, side, bits=8)
    head = _encode(ds) + _PIXEL_DATA_OB + struct.pack("<I", min(repeats * zeros, 0xFFFFFFFE))
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    start = compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)
    final_empty_block = b"\x03\x00"
    return _file(ds, DeflatedExplicitVRLittleEndian, start + block * repeats + final_empty_block)


def deflated_dicom(pixels: np.ndarray) -> bytes:
    """An ordinary deflated DICOM of 16-bit ``pixels`` (the kind the cap must still let through)."""
    ds = _header(*pixels.shape)
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = compressor.compress(_encode(ds)) + compressor.flush()
    return _file(ds, DeflatedExplicitVRLittleEndian, body)


def multiframe_dicom(frames: int = 2, side: int = 16) -> bytes:
    """A small, honest multi-frame DICOM: within the byte budget but over the one-frame limit."""
    ds = _header(side, side, frames=frames)
    ds.PixelData = np.zeros((frames, side, side), np.uint16).tobytes()
    return _file(ds, ExplicitVRLittleEndian)


def blank_image(width: int, height: int, mode: str = "L", fmt: str = "PNG") -> bytes:
    """A real, fully decodable blank image (``mode`` L, I;16 or RGB; PNG or JPEG): a few KB for tens of
    megapixels."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, format=fmt)
    return buffer.getvalue()
