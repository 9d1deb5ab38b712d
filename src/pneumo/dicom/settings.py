"""Typed settings of the DICOM node: its AE title and port, who may send, where reports go."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_AE_TITLE = "PNEUMO"
# PS3.5 6.2: an AE title is 1-16 characters of the default repertoire, no backslash, no control characters.
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")


def check_ae_title(value: str, what: str = "AE title") -> str:
    """The AE title with its padding removed; ValueError naming it when DICOM would not accept it."""
    title = str(value).strip()
    if not _AE_TITLE.match(title):
        raise ValueError(f"{what} {value!r} is not a valid DICOM AE title: 1 to 16 printable ASCII characters, "
                         "no backslash")
    return title


@dataclass(frozen=True)
class Destination:
    """A DICOM peer to C-STORE to, written ``AET@HOST:PORT``."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> "Destination":
        match = re.fullmatch(r"(?P<aet>[^@]+)@(?P<host>\[[^\]]+\]|[^:]+):(?P<port>\d+)", text.strip())
        if match is None:
            raise ValueError(f"DICOM destination {text!r} is not AET@HOST:PORT (e.g. ORTHANC@127.0.0.1:4242)")
        port = int(match["port"])
        if not 0 < port < 65536:
            raise ValueError(f"DICOM destination {text!r}: port {port} is not in 1-65535")
        return cls(check_ae_title(match["aet"], "destination AE title"), match["host"].strip("[]"), port)

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class DicomSettings:
    """Everything the node needs. ``allow``: calling AE titles accepted (empty: any). ``spool_dir``: where
    received instances wait until they are read, and reports until they are delivered (so a crash or an
    unreachable PACS loses nothing). ``gradcam``: also send a Grad-CAM overlay as a derived Secondary Capture.
    ``batch_size``: instances read by the model at once when several are waiting. ``forward_associations``: how
    many associations a delivery to ``forward`` uses at once; ``retry_seconds``: how often reports that could not
    be delivered are tried again."""

    port: int
    spool_dir: Path
    ae_title: str = DEFAULT_AE_TITLE
    host: str = "127.0.0.1"
    allow: tuple[str, ...] = ()
    forward: Destination | None = None
    gradcam: bool = False
    batch_size: int = 8
    forward_associations: int = 4
    retry_seconds: float = 30.0
    max_pdu: int = 0  # 0: no limit on PDUs received, pynetdicom's recommendation for throughput

    def __post_init__(self) -> None:
        object.__setattr__(self, "spool_dir", Path(self.spool_dir))
        object.__setattr__(self, "ae_title", check_ae_title(self.ae_title, "--dicom-ae-title"))
        object.__setattr__(self, "allow", tuple(check_ae_title(a, "--dicom-allow entry") for a in self.allow))
        if not 0 <= self.port < 65536:  # 0: any free port (tests)
            raise ValueError(f"--dicom-port {self.port} is not in 0-65535")
        if self.batch_size < 1:
            raise ValueError(f"DICOM batch_size must be at least 1, got {self.batch_size}")
        if self.forward_associations < 1:
            raise ValueError(f"--dicom-forward-associations must be at least 1, got {self.forward_associations}")
        if self.retry_seconds <= 0:
            raise ValueError(f"DICOM retry_seconds must be positive, got {self.retry_seconds}")
