"""A throwaway PostgreSQL server for the history tests, when the machine has PostgreSQL's binaries.

Debian's `postgresql` package puts `initdb` and `pg_ctl` under /usr/lib/postgresql/VERSION/bin. The server
listens on a Unix socket in a temporary folder only (no TCP port), trusts local connections, and is stopped
and deleted afterwards. PostgreSQL refuses to run as root, so under root it runs as the `postgres` user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def find_binaries() -> tuple[str, str] | None:
    """(initdb, pg_ctl) from PATH or Debian's versioned folders, newest version first; None if absent."""
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda f: int(Path(f).parent.name), reverse=True)
    for folder in [None, *folders]:
        initdb, pg_ctl = shutil.which("initdb", path=folder), shutil.which("pg_ctl", path=folder)
        if initdb and pg_ctl:
            return initdb, pg_ctl
    return None


def _run_as(user: str | None) -> list[str]:
    return ["runuser", "-u", user, "--"] if user else []


@contextmanager
def local_postgres(initdb: str, pg_ctl: str, port: int = 54329) -> Iterator[str]:
    """Start a private server; yield a psycopg URL to its `postgres` database as the superuser `pneumo`."""
    user = None
    if os.geteuid() == 0:
        user = "postgres"
        pwd.getpwnam(user)  # KeyError: no unprivileged account to run the server as
    root = Path(tempfile.mkdtemp(prefix="pneumo-pg-"))
    data, socket_dir = root / "data", root / "socket"
    socket_dir.mkdir()
    if user:
        account = pwd.getpwnam(user)
        for path in (root, socket_dir):
            os.chown(path, account.pw_uid, account.pw_gid)
    prefix = _run_as(user)
    try:
        subprocess.run([*prefix, initdb, "-D", str(data), "-A", "trust", "-U", "pneumo", "--no-sync",
                        "-E", "UTF8"], check=True, capture_output=True, timeout=120)
        options = f"-k {socket_dir} -c listen_addresses= -p {port} -F"
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "server.log"),
                        "-w", "-t", "60", "start"], check=True, capture_output=True, timeout=120)
        try:
            yield f"postgresql://pneumo@/postgres?host={socket_dir}&port={port}"
        finally:
            subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60)
    finally:
        shutil.rmtree(root, ignore_errors=True)
