"""A generated corpus of hostile image inputs, written into a temporary folder at test time.

Nothing here is checked in as data: every file is built from a seed, so a failure reproduces with the
same seed. Each :class:`Case` says what a correct reader must do with it:

- ``"ok"``: decode to a 2-D float array in [0, 1]; when ``reference`` is set, the pixels must match it
  within ``tolerance`` (mean absolute difference), so "decodes" also means "decodes correctly";
- ``"error"``: be refused with a clear :class:`ImageDecodeError` naming the file;
- ``"either"``: random damage that may or may not leave a readable image; any clean outcome is fine,
  a crash, a hang, NaN pixels or a foreign exception is not.
"""

from __future__ import annotations

import importlib.util
import io
import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from . import bombs

EXPECTS = ("ok", "error", "either")
GIANT = 30_000  # side of the "declared but absurd" images: 900 MP, far over the decoder's limit


@dataclass
class Case:
    name: str  # unique, also the file name
    category: str
    expect: str  # "ok" | "error" | "either"
    path: Path
    reference: np.ndarray | None = None  # expected decode in [0, 1] for "ok" cases
    tolerance: float = 0.02
    fast_refusal: bool = False  # must be refused quickly and without allocating the declared pixels
    special: bool = False  # not a regular file (FIFO, directory): only path-based readers can receive it

    def __post_init__(self) -> None:
        if self.expect not in EXPECTS:
            raise ValueError(f"unknown expectation {self.expect!r}; choose one of {EXPECTS}")


# --- small valid images -------------------------------------------------------------------------------

def xray_like(rng: np.random.Generator, h: int = 48, w: int = 40) -> np.ndarray:
    """A uint8 chest-like picture: bright body, two dark lungs, noise."""
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.full((h, w), 170.0)
    for cx in (w * 0.3, w * 0.7):
        image[((xx - cx) / (w * 0.17)) ** 2 + ((yy - h * 0.5) / (h * 0.33)) ** 2 < 1] = 60.0
    image += rng.normal(0, 8, size=(h, w))
    return np.clip(image, 0, 255).astype(np.uint8)


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_with_header(width: int, height: int, *, bit_depth: int = 8, colour: int = 0, idat: bytes = b"") -> bytes:
    """A PNG whose IHDR (with a valid CRC) declares any size; IDAT is whatever is given."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat or zlib.compress(b"\0" * 64))
            + png_chunk(b"IEND", b""))


def png_zlib_bomb(side: int) -> bytes:
    """A grayscale PNG of ``side`` x ``side`` black pixels: a few kB that inflate to side^2 bytes."""
    compressor = zlib.compressobj(9)
    row = b"\0" * (side + 1)  # filter byte + pixels
    parts = [compressor.compress(row) for _ in range(side)]
    parts.append(compressor.flush())
    return png_with_header(side, side, idat=b"".join(parts))


def jpeg_with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """Patch the SOF marker of a baseline/progressive JPEG to declare another size."""
    data = bytearray(jpeg)
    i = 2
    while i < len(data) - 9:
        if data[i] != 0xFF:
            raise ValueError("JPEG marker expected")
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            data[i + 5:i + 9] = struct.pack(">HH", height, width)
            return bytes(data)
        i += 2 + length
    raise ValueError("no SOF marker found")


def gif_with_size(gif: bytes, width: int, height: int) -> bytes:
    data = bytearray(gif)
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def bmp_with_size(bmp: bytes, width: int, height: int) -> bytes:
    data = bytearray(bmp)
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def tiff_with_size(width: int, height: int) -> bytes:
    """A minimal little-endian grayscale TIFF whose IFD declares ``width`` x ``height``."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8 + 2 + 12 * 9 + 4), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, 16)]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        ifd += struct.pack("<HHII", tag, kind, count, value) if kind == 4 else \
            struct.pack("<HHIHH", tag, kind, count, value, 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + b"\0" * 16


# --- DICOM --------------------------------------------------------------------------------------------

def dicom_bytes(pixels: np.ndarray | None, *, preamble: bool = True, transfer_syntax: str | None = None,
                **tags) -> bytes:
    """A DICOM file (explicit VR little endian unless told) with ``pixels`` and any extra/overridden tags.

    Values are written as given, however wrong: hostile files are the point.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["pneumo-reliability"])
    meta.TransferSyntaxUID = transfer_syntax or ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.PatientName = "Reliability^Test"
    ds.PatientID = "RELIABILITY-0001"
    if pixels is not None:
        pixels = np.asarray(pixels)
        ds.Rows, ds.Columns = pixels.shape[-2], pixels.shape[-1]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = pixels.dtype.itemsize * 8
        ds.BitsStored = pixels.dtype.itemsize * 8
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
        ds.PixelData = pixels.tobytes()
    patches: list[tuple[bytes, bytes]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid values we write on purpose
        for keyword, value in tags.items():
            if value is None:
                if keyword in ds:
                    delattr(ds, keyword)
            else:
                try:
                    setattr(ds, keyword, value)
                except (TypeError, ValueError):  # unparseable for its VR: a placeholder, patched below
                    raw = str(value).encode("latin-1")
                    raw += b" " * (len(raw) % 2)
                    placeholder = str(7 - len(patches)).encode() * len(raw)
                    setattr(ds, keyword, placeholder.decode())
                    patches.append((placeholder, raw))
        buffer = io.BytesIO()
        if preamble:
            ds.save_as(buffer, enforce_file_format=False, implicit_vr=False, little_endian=True)
        else:  # an old ACR-NEMA style file: no preamble, no file meta, implicit VR, starts at group 0008
            del ds.file_meta
            ds.preamble = None
            ds.save_as(buffer, enforce_file_format=False, implicit_vr=True, little_endian=True)
    data = buffer.getvalue()
    for placeholder, raw in patches:  # same length, so no offset or length field changes
        if data.count(placeholder) != 1:
            raise ValueError(f"placeholder {placeholder!r} is not unique in the DICOM bytes")
        data = data.replace(placeholder, raw)
    return data


# --- damage -------------------------------------------------------------------------------------------

def png_idat_corruptions(png: bytes, rng: np.random.Generator, count: int) -> list[tuple[str, bytes]]:
    """Damage inside the compressed pixel stream with the chunk CRC recomputed, so zlib (not the CRC
    check) meets the damage."""
    start = png.index(b"IDAT") - 4
    length = struct.unpack(">I", png[start:start + 4])[0]
    body = bytearray(png[start + 8:start + 8 + length])
    out = []
    for k in range(count):
        damaged = bytearray(body)
        for _ in range(int(rng.integers(1, 4))):
            damaged[int(rng.integers(2, len(damaged)))] = int(rng.integers(0, 256))
        out.append((f"idat{k}", png[:start] + png_chunk(b"IDAT", bytes(damaged)) + png[start + 12 + length:]))
    return out


def truncations(data: bytes, rng: np.random.Generator, count: int) -> list[tuple[int, bytes]]:
    """``count`` prefixes cut at distinct random offsets, always including a cut inside the header."""
    offsets = {int(min(len(data) - 1, 16 + rng.integers(0, 48)))}
    while len(offsets) < count:
        offsets.add(int(rng.integers(1, len(data))))
    return [(o, data[:o]) for o in sorted(offsets)]


def corruptions(data: bytes, rng: np.random.Generator, count: int) -> list[tuple[str, bytes]]:
    """Random in-place damage: flipped bytes, overwritten runs, inserted and deleted spans."""
    out = []
    for k in range(count):
        buf = bytearray(data)
        mode = k % 4
        if mode == 0:  # a handful of random bytes
            for _ in range(int(rng.integers(1, 9))):
                buf[int(rng.integers(0, len(buf)))] = int(rng.integers(0, 256))
            tag = "flip"
        elif mode == 1:  # a run of 0xFF / 0x00 / noise
            start = int(rng.integers(0, len(buf) - 1))
            length = int(rng.integers(1, min(64, len(buf) - start) + 1))
            fill = [b"\xff" * length, b"\x00" * length, rng.bytes(length)][int(rng.integers(0, 3))]
            buf[start:start + length] = fill
            tag = "run"
        elif mode == 2:  # inserted garbage
            start = int(rng.integers(0, len(buf)))
            buf[start:start] = rng.bytes(int(rng.integers(1, 32)))
            tag = "insert"
        else:  # deleted span
            start = int(rng.integers(0, len(buf) - 1))
            del buf[start:start + int(rng.integers(1, 32))]
            tag = "delete"
        out.append((f"{tag}{k}", bytes(buf)))
    return out


# --- the corpus ---------------------------------------------------------------------------------------

class _Writer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.cases: list[Case] = []

    def add(self, name: str, category: str, expect: str, data: bytes, **kwargs) -> Case:
        path = self.root / name
        if path.exists():
            raise ValueError(f"duplicate corpus name {name}")
        path.write_bytes(data)
        case = Case(name, category, expect, path, **kwargs)
        self.cases.append(case)
        return case


def build_corpus(root: str | Path, seed: int = 0) -> list[Case]:
    """Write every hostile input under ``root`` (created) and describe it; deterministic for a seed."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w = _Writer(root)
    gray = xray_like(rng)
    gray_f = gray.astype(np.float32) / 255.0
    rgb = np.stack([gray, np.roll(gray, 3, 1), 255 - gray], axis=-1)

    jpeg = encode(Image.fromarray(gray), "JPEG", quality=92)
    jpeg_progressive = encode(Image.fromarray(gray), "JPEG", quality=92, progressive=True)
    png = encode(Image.fromarray(gray), "PNG")
    png_rgb = encode(Image.fromarray(rgb), "PNG")
    dicom16 = (gray.astype(np.uint16) * 16)  # 12-bit values in 16-bit storage
    dcm = dicom_bytes(dicom16, BitsStored=12, HighBit=11)
    gif = encode(Image.fromarray(gray), "GIF")
    bmp = encode(Image.fromarray(gray), "BMP")
    jpeg_ref = np.asarray(Image.open(io.BytesIO(jpeg)).convert("L"), dtype=np.float32) / 255.0

    # Valid files: the baseline the damage is measured against (and proof the corpus is not all garbage).
    w.add("valid.jpeg", "valid", "ok", jpeg, reference=jpeg_ref)
    w.add("valid_progressive.jpeg", "valid", "ok", jpeg_progressive, reference=gray_f, tolerance=0.03)
    w.add("valid.png", "valid", "ok", png, reference=gray_f, tolerance=1e-6)
    w.add("valid.dcm", "valid", "ok", dcm, reference=(gray_f - gray_f.min()) / (gray_f.max() - gray_f.min()),
          tolerance=1e-4)

    # Truncated at random offsets (JPEG needs its end marker: Pillow refuses a truncated one).
    for name, data, count in (("jpeg", jpeg, 25), ("png", png, 25), ("dcm", dcm, 20)):
        ext = "jpeg" if name == "jpeg" else name
        for offset, cut in truncations(data, rng, count):
            w.add(f"truncated_{name}_{offset}.{ext}", f"truncated {name}", "error" if name != "dcm" else "either", cut)
    # Byte-corrupted at random offsets.
    for name, data, count in (("jpeg", jpeg, 24), ("png", png, 24), ("dcm", dcm, 16), ("png_rgb", png_rgb, 8)):
        ext = "png" if name.startswith("png") else name
        for tag, damaged in corruptions(data, rng, count):
            w.add(f"corrupt_{name}_{tag}.{ext}", f"corrupted {name.split('_')[0]}", "either", damaged)

    for tag, damaged in png_idat_corruptions(png, rng, 12):
        w.add(f"corrupt_png_{tag}.png", "corrupted png", "either", damaged)

    # Empty files and wrong extensions.
    for ext in ("jpeg", "jpg", "png", "dcm", "gif"):
        w.add(f"empty.{ext}", "empty", "error", b"")
    w.add("png_named.jpeg", "wrong extension", "ok", png, reference=gray_f, tolerance=1e-6)
    w.add("jpeg_named.png", "wrong extension", "ok", jpeg, reference=jpeg_ref, tolerance=1e-6)
    w.add("dicom_named.png", "wrong extension", "ok", dcm, reference=(gray_f - gray_f.min()) /
          (gray_f.max() - gray_f.min()), tolerance=1e-4)
    w.add("png_named.dcm", "wrong extension", "ok", png, reference=gray_f, tolerance=1e-6)
    w.add("jpeg_no_extension", "wrong extension", "ok", jpeg, reference=jpeg_ref, tolerance=1e-6)

    # Degenerate sizes.
    one = np.array([[200]], np.uint8)
    w.add("one_by_one.png", "1x1", "ok", encode(Image.fromarray(one), "PNG"), reference=np.array([[200 / 255]], np.float32))
    w.add("one_by_one_rgb.png", "1x1", "ok", encode(Image.fromarray(np.full((1, 1, 3), 90, np.uint8)), "PNG"),
          reference=np.array([[90 / 255]], np.float32))
    w.add("one_by_one.jpeg", "1x1", "ok", encode(Image.fromarray(one), "JPEG"),
          reference=np.array([[200 / 255]], np.float32), tolerance=0.03)
    w.add("one_by_one.dcm", "1x1", "ok", dicom_bytes(np.array([[1000]], np.uint16)))
    w.add("one_row.png", "1x1", "ok", encode(Image.fromarray(np.arange(0, 250, 2, dtype=np.uint8)[None]), "PNG"))
    w.add("zero_width.png", "zero size", "error", png_with_header(0, 10))
    w.add("zero_rows.dcm", "zero size", "error", dicom_bytes(np.zeros((4, 4), np.uint16), Rows=0))

    # Absurd declared sizes: refused from the header, before any pixel buffer exists.
    fast = dict(fast_refusal=True)
    w.add("giant_header.png", "giant header", "error", png_with_header(GIANT, GIANT), **fast)
    w.add("giant_header_16bit_rgba.png", "giant header", "error", png_with_header(GIANT, GIANT, bit_depth=16,
                                                                                  colour=6), **fast)
    w.add("giant_wide.png", "giant header", "error", png_with_header(2**31 - 1, 1), **fast)
    w.add("giant_header.jpeg", "giant header", "error", jpeg_with_size(jpeg, GIANT, GIANT), **fast)
    w.add("giant_header_progressive.jpeg", "giant header", "error", jpeg_with_size(jpeg_progressive, GIANT, GIANT),
          **fast)
    w.add("max_header.jpeg", "giant header", "error", jpeg_with_size(jpeg, 65535, 65535), **fast)
    w.add("giant_header.gif", "giant header", "error", gif_with_size(gif, GIANT, GIANT), **fast)
    w.add("giant_header.bmp", "giant header", "error", bmp_with_size(bmp, GIANT, GIANT), **fast)
    w.add("giant_header.tiff", "giant header", "error", tiff_with_size(GIANT, GIANT), **fast)
    w.add("giant_header.dcm", "giant header", "error", dicom_bytes(np.zeros((4, 4), np.uint16), Rows=GIANT,
                                                                   Columns=GIANT), **fast)
    w.add("zlib_bomb_8000.png", "giant header", "error", png_zlib_bomb(8000), **fast)
    # Issue 28's bombs: small files whose compressed pixels would expand to gigabytes, refused from their
    # headers (and a capped inflation), never decoded.
    bomb = "decompression bomb"
    w.add("bomb_deflated.dcm", bomb, "error", bombs.deflated_bomb(), **fast)
    w.add("bomb_deflated_header.dcm", bomb, "error", bombs.deflated_bomb(compressed_target=64 * 1024, side=16_000),
          **fast)
    w.add("bomb_rle_segment.dcm", bomb, "error", bombs.rle_segment_bomb(expanded=64 * 1024 * 1024), **fast)
    if importlib.util.find_spec("jpeg_ls") is not None:  # pyjpegls encodes them (pydicom's JPEG-LS plugin)
        w.add("bomb_jpegls_128_frames.dcm", bomb, "error", bombs.jpegls_multiframe_bomb(), **fast)
        w.add("bomb_jpegls_lying_frame.dcm", bomb, "error", bombs.jpegls_lying_frame(), **fast)

    # Unusual but legitimate encodings: must decode, and decode correctly.
    ramp16 = np.tile(np.linspace(0, 65535, 40).astype(np.uint16), (30, 1))
    w.add("gray16.png", "16-bit", "ok", encode(Image.fromarray(ramp16), "PNG"), reference=ramp16 / 65535.0,
          tolerance=1e-6)
    w.add("gray16_flat.png", "16-bit", "ok", encode(Image.fromarray(np.full((8, 8), 30000, np.uint16)), "PNG"),
          reference=np.full((8, 8), 30000 / 65535.0), tolerance=1e-6)
    w.add("gray16.tiff", "16-bit", "ok", encode(Image.fromarray(ramp16), "TIFF"), reference=ramp16 / 65535.0,
          tolerance=1e-6)
    palette = Image.fromarray(gray).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette_ref = np.asarray(palette.convert("L"), np.float32) / 255.0
    w.add("palette.png", "palette", "ok", encode(palette, "PNG"), reference=palette_ref, tolerance=1e-6)
    transparent = palette.copy()
    transparent.info["transparency"] = 0
    w.add("palette_transparent.png", "palette", "ok", encode(transparent, "PNG", transparency=0))
    w.add("palette.bmp", "palette", "ok", encode(palette, "BMP"), reference=palette_ref, tolerance=1e-6)
    cmyk = Image.fromarray(gray).convert("CMYK")
    w.add("cmyk.jpeg", "CMYK", "ok", encode(cmyk, "JPEG", quality=95), reference=gray_f, tolerance=0.04)
    w.add("cmyk.tiff", "CMYK", "ok", encode(cmyk, "TIFF"), reference=gray_f, tolerance=0.02)
    frames = [Image.fromarray(gray), Image.fromarray(255 - gray), Image.fromarray(np.zeros_like(gray))]
    gif_ref = np.asarray(frames[0].convert("P").convert("L"), np.float32) / 255.0
    w.add("animated.gif", "animated GIF", "ok", encode(frames[0], "GIF", save_all=True, append_images=frames[1:],
                                                        duration=100, loop=0), reference=gif_ref, tolerance=0.02)
    w.add("animated_named.png", "animated GIF", "ok", encode(frames[0], "GIF", save_all=True,
                                                             append_images=frames[1:]), reference=gif_ref,
          tolerance=0.02)
    w.add("animated.png", "animated PNG", "ok", encode(frames[0], "PNG", save_all=True, append_images=frames[1:]),
          reference=gray_f, tolerance=1e-6)
    rgba = np.dstack([np.stack([gray] * 3, -1), np.full_like(gray, 255)])
    w.add("rgba_opaque.png", "colour", "ok", encode(Image.fromarray(rgba), "PNG"), reference=gray_f, tolerance=0.01)
    w.add("gray_alpha.png", "colour", "ok", encode(Image.fromarray(gray).convert("LA"), "PNG"), reference=gray_f,
          tolerance=0.01)
    w.add("bilevel.png", "colour", "ok", encode(Image.fromarray(gray).convert("1"), "PNG"))
    w.add("float32.tiff", "colour", "ok", encode(Image.fromarray(gray_f * 1000.0, mode="F"), "TIFF"),
          reference=(gray_f - gray_f.min()) / (gray_f.max() - gray_f.min()), tolerance=1e-5)
    w.add("rgb.bmp", "colour", "ok", encode(Image.fromarray(rgb), "BMP"))
    w.add("exif_rotated.jpeg", "colour", "ok", _exif_rotated_jpeg(gray))
    w.add("lossless.webp", "colour", "ok", encode(Image.fromarray(gray), "WEBP", lossless=True), reference=gray_f,
          tolerance=1e-6)

    # Not images at all, named as images.
    texts = {
        "html.png": b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>\n",
        "text.jpeg": b"this is not an x-ray, just some text\n" * 20,
        "json.dcm": b'{"PatientName": "x", "PixelData": [1, 2, 3]}',
        "svg.png": b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="30000" height="30000"/>',
        "script.jpg": b"#!/bin/sh\nrm -rf /\n",
        "pdf.png": b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n",
        "zip.jpeg": b"PK\x03\x04" + rng.bytes(200),
        "elf.dcm": b"\x7fELF\x02\x01\x01" + b"\0" * 120,
        "utf16.png": "ceci n'est pas une image".encode("utf-16"),
        "random_bytes.jpeg": rng.bytes(4096),
        "nul_bytes.png": b"\0" * 1000,
        "magic_only.jpeg": b"\xff\xd8\xff",
        "magic_only.png": b"\x89PNG\r\n\x1a\n",
        "magic_only.gif": b"GIF89a",
        "magic_only.dcm": b"\0" * 128 + b"DICM",
        "bm_text.bmp": b"BM this is text starting with BM",
    }
    for name, data in texts.items():
        w.add(name, "not an image", "error", data)

    # DICOM oddities.
    small16 = (gray[:16, :16].astype(np.uint16) * 16)
    odd = "odd DICOM"
    w.add("dicom_no_pixels.dcm", odd, "error", dicom_bytes(None))
    w.add("dicom_no_pixels_with_size.dcm", odd, "error", dicom_bytes(None, Rows=16, Columns=16, BitsAllocated=16))
    w.add("dicom_no_preamble.dcm", odd, "ok", dicom_bytes(small16, preamble=False))
    inverted_ref = 1.0 - (small16 - small16.min()) / float(small16.max() - small16.min())
    w.add("dicom_monochrome1.dcm", odd, "ok", dicom_bytes(small16, PhotometricInterpretation="MONOCHROME1"),
          reference=inverted_ref, tolerance=1e-4)
    for pi in ("RGB", "YBR_FULL", "PALETTE COLOR", "HSV", "", "monochrome2", "MONOCHROME3", "\x00\x01"):
        tag = pi.strip("\x00\x01").replace(" ", "_") or "blank"
        w.add(f"dicom_photometric_{tag}_{len(pi)}.dcm", odd, "either",
              dicom_bytes(small16, PhotometricInterpretation=pi))
    w.add("dicom_rgb_correct.dcm", odd, "ok", dicom_bytes(
        np.ascontiguousarray(np.stack([gray[:16, :16]] * 3, -1)).reshape(16, 16 * 3).astype(np.uint8),
        Columns=16, SamplesPerPixel=3, PhotometricInterpretation="RGB", PlanarConfiguration=0, BitsAllocated=8,
        BitsStored=8, HighBit=7))
    for bits, stored in ((1, 1), (12, 12), (32, 32), (16, 20), (16, 0), (8, 16), (64, 64), (0, 0)):
        w.add(f"dicom_bits_{bits}_{stored}.dcm", odd, "either",
              dicom_bytes(small16, BitsAllocated=bits, BitsStored=stored, HighBit=max(stored - 1, 0)))
    w.add("dicom_signed.dcm", odd, "ok", dicom_bytes((small16.astype(np.int16) - 2048)))
    # 8-bit stored values without a window read as their PNG would: value / 255, no stretch (issue 23).
    w.add("dicom_uint8.dcm", odd, "ok", dicom_bytes(gray[:16, :16].copy()), reference=gray_f[:16, :16],
          tolerance=1e-6)
    window_cases = {
        "nan_window": dict(WindowCenter="NaN", WindowWidth="NaN"),
        "nan_center": dict(WindowCenter="NaN", WindowWidth=400),
        "inf_window": dict(WindowCenter="inf", WindowWidth="inf"),
        "zero_width": dict(WindowCenter=1000, WindowWidth=0),
        "negative_width": dict(WindowCenter=1000, WindowWidth=-50),
        "text_window": dict(WindowCenter="abc", WindowWidth="def"),
        "multi_window": dict(WindowCenter=[1000, 2000], WindowWidth=[400, 800]),
        "window_far_away": dict(WindowCenter=1e9, WindowWidth=1),
        "nan_slope": dict(RescaleSlope="NaN", RescaleIntercept=0),
        "zero_slope": dict(RescaleSlope=0, RescaleIntercept=5),
        "inf_intercept": dict(RescaleSlope=1, RescaleIntercept="inf"),
        "huge_slope": dict(RescaleSlope="1e300", RescaleIntercept=0),
        "bad_voi_function": dict(WindowCenter=1000, WindowWidth=400, VOILUTFunction="BANANA"),
        "sigmoid_voi": dict(WindowCenter=1000, WindowWidth=400, VOILUTFunction="SIGMOID"),
    }
    for tag, tags in window_cases.items():
        w.add(f"dicom_{tag}.dcm", odd, "either", dicom_bytes(small16, **tags))
    # Width 1 is legal (PS3.3 C.11.2.1.2.1): a step at c - 0.5, here with a pixel exactly on it.
    step = float(small16[0, 0]) - 0.5
    w.add("dicom_window_width_one.dcm", odd, "ok", dicom_bytes(small16, WindowCenter=step + 1.0, WindowWidth=1),
          reference=(small16 > step + 0.5).astype(np.float32), tolerance=0.0)
    w.add("dicom_frames_lie.dcm", odd, "either", dicom_bytes(small16, NumberOfFrames=5))
    w.add("dicom_frames_zero.dcm", odd, "either", dicom_bytes(small16, NumberOfFrames=0))
    w.add("dicom_frames_negative.dcm", odd, "either", dicom_bytes(small16, NumberOfFrames=-3))
    # Refused, naming the one-frame limit: reading "a representative frame" once let 40 KB reserve 1 GB (issue 28).
    w.add("dicom_multiframe.dcm", odd, "error", dicom_bytes(np.stack([small16, small16 // 2, small16 // 4]),
                                                            NumberOfFrames=3))
    w.add("dicom_rows_mismatch.dcm", odd, "either", dicom_bytes(small16, Rows=64, Columns=64))
    w.add("dicom_odd_length.dcm", odd, "either", dicom_bytes(small16, PixelData=small16.tobytes()[:-3]))
    w.add("dicom_samples_lie.dcm", odd, "either", dicom_bytes(small16, SamplesPerPixel=3))
    w.add("dicom_samples_zero.dcm", odd, "either", dicom_bytes(small16, SamplesPerPixel=0))
    from pydicom.encaps import encapsulate

    jpeg_syntax = "1.2.840.10008.1.2.4.50"
    small8 = gray[:16, :16].copy()
    w.add("dicom_jpeg_garbage_fragment.dcm", odd, "either", dicom_bytes(
        small8, transfer_syntax=jpeg_syntax, PixelData=encapsulate([rng.bytes(300)])))
    w.add("dicom_jpeg_truncated_fragment.dcm", odd, "either", dicom_bytes(
        small8, transfer_syntax=jpeg_syntax, PixelData=encapsulate([encode(Image.fromarray(small8), "JPEG")[:150]])))
    w.add("dicom_jpeg_valid_fragment.dcm", odd, "either", dicom_bytes(
        small8, transfer_syntax=jpeg_syntax, PixelData=encapsulate([encode(Image.fromarray(small8), "JPEG")])))
    w.add("dicom_rle_garbage.dcm", odd, "either", dicom_bytes(
        small16, transfer_syntax="1.2.840.10008.1.2.5", PixelData=encapsulate([rng.bytes(200)])))
    w.add("dicom_unknown_syntax.dcm", odd, "either", dicom_bytes(
        small16, transfer_syntax="1.2.3.4.5.6.7", PixelData=encapsulate([small16.tobytes()])))
    w.add("dicom_float_pixels.dcm", odd, "either",
          dicom_bytes(None, Rows=4, Columns=4, SamplesPerPixel=1, PhotometricInterpretation="MONOCHROME2",
                      BitsAllocated=32, FloatPixelData=np.array([0, 1, np.nan, np.inf] * 4, np.float32).tobytes()))
    w.add("dicom_constant.dcm", odd, "ok", dicom_bytes(np.full((8, 8), 777, np.uint16)))

    # Special files: a directory and a FIFO with image names (a reader must not hang on the FIFO).
    (root / "folder.png").mkdir()
    w.cases.append(Case("folder.png", "special file", "error", root / "folder.png", special=True))
    if hasattr(os, "mkfifo"):
        os.mkfifo(root / "fifo.jpeg")
        w.cases.append(Case("fifo.jpeg", "special file", "error", root / "fifo.jpeg", special=True))
    return w.cases


def _exif_rotated_jpeg(gray: np.ndarray) -> bytes:
    image = Image.fromarray(gray)
    exif = image.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise on display
    return encode(image, "JPEG", exif=exif.tobytes())


class CodeRunningPickle:
    """A hostile model file's payload: unpickling it creates ``marker``, proof that a loader ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def regular_cases(cases: list[Case]) -> list[Case]:
    """The cases that are ordinary files (uploadable as bytes)."""
    return [c for c in cases if not c.special]
