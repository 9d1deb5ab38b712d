"""Typed settings of the DICOM node: its AE title and port, who may send, what it takes, where reports go."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pneumo.dicom.peers import AllowedPeer, check_allow_list, check_ae_title

__all__ = ["DEFAULT_AE_TITLE", "Destination", "DicomSettings", "TlsFiles", "check_ae_title"]

DEFAULT_AE_TITLE = "PNEUMO"
MIB = 1 << 20


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
class TlsFiles:
    """DICOM TLS for the node's listener: its certificate chain and key (PEM); ``ca``: when given, a sender must
    present a certificate signed by it (mutual TLS, PS3.15 B.1)."""

    cert: Path
    key: Path
    ca: Path | None = None

    def __post_init__(self) -> None:
        for name in ("cert", "key", "ca"):
            value = getattr(self, name)
            if value is None:
                continue
            object.__setattr__(self, name, Path(value))
            if not Path(value).is_file():
                raise ValueError(f"--dicom-tls-{name} {value}: no such file")


@dataclass(frozen=True)
class DicomSettings:
    """Everything the node needs. ``allow``: ``AET`` or ``AET@ADDRESS[/BITS]`` entries accepted (empty: any, on
    loopback only). ``spool_dir``: where received instances wait until they are read, and reports until they are
    delivered. ``gradcam``: also send a Grad-CAM overlay. ``batch_size``: instances read by the model at once.
    ``forward_associations``: associations a delivery uses at once; ``retry_seconds``: how often undelivered reports
    are tried again, and the first step of the backoff after a PACS's temporary refusal.

    The limits bound what one sender can make the node hold: ``max_pdu`` (bytes of one PDU, advertised and
    enforced), ``max_dataset_bytes`` (one received dataset, decompressed), ``max_image_bytes`` (frames x rows x
    columns x samples x bytes that the header declares), ``max_associations`` (at once),
    ``memory_budget_bytes`` (datasets held in memory at once, all associations together) and
    ``spool_quota_bytes`` (all files in the spool). ``accept_deflate``: offer the deflated transfer syntax
    (decompressed with the dataset limit as a cap). ``read_attempts`` / ``read_retry_seconds``: how often, and
    after how long (doubling), an instance whose reading, history row or report failed is tried again."""

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
    max_pdu: int = 1 * MIB
    max_dataset_bytes: int = 48 * MIB
    max_image_bytes: int = 48 * MIB
    max_associations: int = 8
    memory_budget_bytes: int = 160 * MIB
    spool_quota_bytes: int = 2048 * MIB
    accept_deflate: bool = False
    tls: TlsFiles | None = None
    read_attempts: int = 5
    read_retry_seconds: float = 2.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "spool_dir", Path(self.spool_dir))
        object.__setattr__(self, "ae_title", check_ae_title(self.ae_title, "--dicom-ae-title"))
        object.__setattr__(self, "allow", tuple(str(peer) for peer in self.peers))
        if not 0 <= self.port < 65536:  # 0: any free port (tests)
            raise ValueError(f"--dicom-port {self.port} is not in 0-65535")
        check_allow_list(self.host, self.peers)
        self._check_limits()

    @property
    def peers(self) -> tuple[AllowedPeer, ...]:
        return tuple(AllowedPeer.parse(entry) for entry in self.allow)

    def _check_limits(self) -> None:
        at_least = {"batch_size": (self.batch_size, 1), "--dicom-forward-associations": (self.forward_associations, 1),
                    "--dicom-max-pdu": (self.max_pdu, 4096), "--dicom-max-dataset-mb": (self.max_dataset_bytes, 4096),
                    "--dicom-max-image-mb": (self.max_image_bytes, 1),
                    "--dicom-max-associations": (self.max_associations, 1),
                    "--dicom-memory-mb": (self.memory_budget_bytes, self.max_dataset_bytes),
                    "--dicom-spool-quota-mb": (self.spool_quota_bytes, 1), "read_attempts": (self.read_attempts, 1)}
        for name, (value, least) in at_least.items():
            if value < least:
                raise ValueError(f"DICOM {name} must be at least {least}, got {value}")
        if self.max_pdu >= 1 << 32:
            raise ValueError(f"--dicom-max-pdu {self.max_pdu} does not fit the PDU's 4-byte length")
        if self.retry_seconds <= 0 or self.read_retry_seconds <= 0:
            raise ValueError(f"DICOM retry_seconds and read_retry_seconds must be positive, got "
                             f"{self.retry_seconds} and {self.read_retry_seconds}")
