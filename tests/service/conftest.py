"""Fixtures for the service tests: an app on the tiny bundle, sample uploads (JPEG, PNG, DICOM), a live server."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import threading
import time
import uuid
import zlib
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from pneumo.service import ServiceSettings, create_app
from pneumo_testsupport.net import free_port

from conftest import synthetic_xray  # the shared tests/conftest.py (rootdir on sys.path)
from local_postgres import find_binaries, local_postgres  # tests/local_postgres.py


@pytest.fixture
def make_settings(tmp_path: Path, tiny_bundle: Path) -> Callable[..., ServiceSettings]:
    def build(**overrides) -> ServiceSettings:
        values = {"model": str(tiny_bundle), "data_dir": tmp_path / "data", "api_key": None}
        values.update(overrides)
        return ServiceSettings(**values)

    return build


@pytest.fixture
def make_client(make_settings) -> Callable[..., TestClient]:
    """Build an app with settings overrides; the client runs its lifespan (so the database is closed after)."""
    clients: list[TestClient] = []

    def build(raise_server_exceptions: bool = True, **overrides) -> TestClient:
        # The server answers only the Host names it trusts (loopback by default): not TestClient's "testserver".
        client = TestClient(create_app(make_settings(**overrides)), raise_server_exceptions=raise_server_exceptions,
                            base_url="http://127.0.0.1")
        client.__enter__()
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


@pytest.fixture
def xray_jpeg(real_xrays) -> bytes:
    return real_xrays[0].read_bytes()


@pytest.fixture
def xray_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(synthetic_xray(3, size=(64, 56), pneumonia=True)).save(buffer, format="PNG")
    return buffer.getvalue()


PATIENT_NAME = "Doe^Jane"
PATIENT_ID = "PID-SECRET-4711"


@pytest.fixture
def xray_dicom() -> bytes:
    """A small MONOCHROME2 CR DICOM carrying patient identifiers that must never reach the history."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ComputedRadiographyImageStorage as CRImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("upload.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.Modality = "CR"
    ds.BodyPartExamined = "CHEST"
    pixels = synthetic_xray(5, size=(64, 56)).astype(np.uint16) * 16
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A PNG whose header declares 900 megapixels in a few hundred bytes: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 4096))
            + chunk(b"IEND", b""))


POSTGRES_ENV = "PNEUMO_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """$PNEUMO_TEST_POSTGRES_URL if set, else a throwaway local server when PostgreSQL is installed."""
    url = os.environ.get(POSTGRES_ENV)
    if url:
        yield url
        return
    binaries = find_binaries()
    if binaries is None:
        pytest.skip(f"no PostgreSQL for the test: install Debian's postgresql (scripts/setup.sh does) or set "
                    f"{POSTGRES_ENV}=postgresql://user:pass@host/db")
    try:
        server = local_postgres(*binaries)
        url = server.__enter__()
    except (OSError, KeyError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        pytest.skip(f"could not start a local PostgreSQL ({exc}) {detail.decode(errors='replace')[-300:]}")
    try:
        yield url
    finally:
        server.__exit__(None, None, None)


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A URL into a private, temporary schema of the test PostgreSQL server."""
    try:
        import psycopg
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'pneumo[postgres]')")
    url = postgres_server
    schema = f"pneumo_test_{uuid.uuid4().hex[:12]}"  # never touches the server's real tables
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=3) as admin:
            admin.execute(f"CREATE SCHEMA {schema}")
    except psycopg.Error as exc:
        pytest.skip(f"PostgreSQL at {url} is not reachable ({exc.__class__.__name__})")
    separator = "&" if "?" in url else "?"
    yield f"{url}{separator}options=-csearch_path%3D{schema}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def live_server(make_settings):
    """Run the app with uvicorn on a free loopback port in a thread; yields its base URL."""
    import httpx
    import uvicorn

    servers = []

    def start(**overrides) -> str:
        port = free_port()
        app = create_app(make_settings(**overrides))
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/api/v1/health", timeout=1).status_code == 200:
                    return base
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"the test server on {base} did not start within 20 s")

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)



@pytest.fixture
def accounts(make_settings):
    """One account per role (see accounts_support) in the database that make_client's apps open."""
    from .accounts_support import add_accounts

    return add_accounts(make_settings().database_url)
