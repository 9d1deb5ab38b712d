"""Typed errors for input that pneumo cannot use. Each names the file and the reason."""

from __future__ import annotations


class ImageDecodeError(ValueError):
    """An input could not be turned into an X-ray array; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ImageTooLargeError(ImageDecodeError):
    """The image declares more pixels than the configured limit (a decompression bomb guard)."""


class UnsupportedFormatError(ImageDecodeError):
    """The bytes are not a JPEG, PNG, DICOM or other raster image pneumo reads."""
