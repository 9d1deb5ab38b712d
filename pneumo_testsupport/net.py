"""Loopback ports and waiting for a server started as a child process."""

from __future__ import annotations

import socket
import time
from typing import Callable

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on at this moment."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(base_url: str, alive: Callable[[], bool], timeout: float = 90.0) -> None:
    """Poll ``/api/v1/health`` until it answers 200; fail early if the server process is gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"the server at {base_url} exited before it was ready")
        try:
            if httpx.get(f"{base_url}/api/v1/health", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"the server at {base_url} was not ready after {timeout:.0f} s")
