"""A throwaway Orthanc PACS for the DICOM tests and bench/bench_dicom.py, when the machine has Debian's `orthanc` (and `orthanc-dicomweb`).

Its own configuration, storage and index live in a temporary folder, deleted afterwards. Orthanc 1.10 cannot bind
to one address, so it is locked to loopback by configuration instead: HTTP refuses remote clients
(RemoteAccessAllowed false), and DICOM accepts associations only from the modalities registered at 127.0.0.1
(DicomAlwaysAllowEcho/Store false, DicomCheckModalityHost true).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx

from .net import free_port

PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc/plugins")
DICOMWEB_PLUGIN = "libOrthancDicomWeb.so"


def find_orthanc() -> tuple[str, str | None] | None:
    """(Orthanc binary, DICOMweb plugin or None); None when Orthanc is not installed."""
    binary = shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin:/usr/bin")
    if binary is None:
        return None
    plugin = next((str(Path(d) / DICOMWEB_PLUGIN) for d in PLUGIN_DIRS if (Path(d) / DICOMWEB_PLUGIN).is_file()), None)
    return binary, plugin


@dataclass
class Orthanc:
    http_port: int
    dicom_port: int
    aet: str
    root: Path
    pid: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)


@contextmanager
def local_orthanc(binary: str, plugin: str | None, modalities: dict[str, dict], aet: str = "ORTHANC",
                  options: dict | None = None) -> Iterator[Orthanc]:
    """Start Orthanc with the given DICOM modalities (name -> {AET, Host, Port}) and any other configuration
    ``options`` (Orthanc's own keys); stop and delete it after."""
    root = Path(tempfile.mkdtemp(prefix="pneumo-orthanc-"))
    http_port, dicom_port = free_port(), free_port()
    config = {
        "Name": "pneumo-test", "StorageDirectory": str(root / "storage"), "IndexDirectory": str(root / "index"),
        "HttpPort": http_port, "DicomPort": dicom_port, "DicomAet": aet, "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False, "DicomCheckCalledAet": False, "DicomAlwaysAllowEcho": False,
        "DicomAlwaysAllowStore": False, "DicomCheckModalityHost": True, "StableAge": 1,
        "DicomModalities": {name: {**m, "AllowEcho": True, "AllowStore": True} for name, m in modalities.items()},
        "Plugins": [plugin] if plugin else [],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "Host": f"127.0.0.1:{http_port}"},
        **(options or {}),
    }
    (root / "orthanc.json").write_text(json.dumps(config, indent=1))
    log = open(root / "orthanc.log", "wb")
    process = subprocess.Popen([binary, str(root / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    server = Orthanc(http_port, dicom_port, aet, root, process.pid)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {process.returncode}: "
                                   f"{(root / 'orthanc.log').read_text(errors='replace')[-800:]}")
            try:
                if httpx.get(f"{server.url}/system", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("Orthanc did not answer within 60 s")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()
        shutil.rmtree(root, ignore_errors=True)
