"""Start ``pneumo`` commands as real processes that can be SIGKILLed, without paying the import of torch
for every start.

A small server process imports pneumo once, then forks one child per command; the child runs exactly what
the ``pneumo`` console script runs (``pneumo.cli.main(argv)``) with its own stdout/stderr files. Killing
the child is killing ``pneumo train`` (or ``pneumo serve``) mid-flight. Used by the crash tests and
``bench/reliability_*.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

_SERVER = r"""
import json, os, sys, traceback
os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch
torch.set_num_threads(1)
# imported once, inherited by every fork
import pneumo.cli, pneumo.inference.predictor, pneumo.models, pneumo.service, pneumo.training.trainer, uvicorn
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        os.environ.update(request["env"])
        out = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        err = os.open(request["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644) if request["err"] else out
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.chdir(request["cwd"])
        try:
            code = pneumo.cli.main(request["argv"])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
            if not isinstance(exc.code, int) and exc.code is not None:
                print(exc.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
            code = 99
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    print(json.dumps({"pid": pid}), flush=True)
    # The child is reaped only after the next command, so its pid cannot be reused before a kill.
    if json.loads(sys.stdin.readline()).get("kill"):
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"status": status}), flush=True)
"""


@dataclass
class Finished:
    """How a launched command ended: its exit code, or the signal that killed it."""

    code: int | None
    signal: int | None
    output: str  # stdout, and stderr too unless it was sent to its own file
    errors: str = ""  # stderr, when it had its own file

    @property
    def killed(self) -> bool:
        return self.signal == signal.SIGKILL


class Launcher:
    """``with Launcher() as launcher: child = launcher.start([...]); ...; child.kill()``."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
        self.server: subprocess.Popen[str] | None = None

    def __enter__(self) -> "Launcher":
        self.server = subprocess.Popen([sys.executable, "-c", _SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       text=True, env=self.env)
        self._read()  # {"ready": true}
        return self

    def __exit__(self, *exc_info) -> None:
        if self.server is not None:
            self.server.stdin.close()
            self.server.kill()  # holds no state; waiting for torch's interpreter shutdown costs seconds
            self.server.wait()

    def _read(self) -> dict:
        assert self.server is not None and self.server.stdout is not None
        line = self.server.stdout.readline()
        if not line:
            raise RuntimeError("the launcher process died")
        return json.loads(line)

    def start(self, argv: list[str], log: Path, cwd: Path | None = None, *, err: Path | None = None,
              env: dict[str, str] | None = None) -> "Child":
        """Fork ``pneumo ARGV``: stdout (and stderr, unless ``err`` names its own file) into ``log``, with
        ``env`` added to the environment. One command at a time: kill or wait for it before the next."""
        assert self.server is not None and self.server.stdin is not None
        request = {"argv": [str(a) for a in argv], "log": str(log), "err": str(err) if err else "",
                   "cwd": str(cwd or Path.cwd()), "env": env or {}}
        self.server.stdin.write(json.dumps(request) + "\n")
        self.server.stdin.flush()
        return Child(self, self._read()["pid"], Path(log), time.monotonic(), Path(err) if err else None)


@dataclass
class Child:
    launcher: Launcher
    pid: int
    log: Path
    started: float
    err: Path | None = None

    def kill(self) -> Finished:
        """SIGKILL now (harmless if it already exited: it is not reaped yet) and collect how it ended."""
        return self._finish(kill=True)

    def wait(self) -> Finished:
        """Wait for a normal exit."""
        return self._finish(kill=False)

    def terminate(self) -> Finished:
        """SIGTERM (a graceful stop, e.g. for ``pneumo serve``) and wait for the exit."""
        os.kill(self.pid, signal.SIGTERM)  # not reaped yet, so the pid is still this child's
        return self._finish(kill=False)

    def running(self) -> bool:
        """Still running (not exited and not a zombie)?"""
        try:
            with open(f"/proc/{self.pid}/stat") as handle:
                return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    def _finish(self, kill: bool) -> Finished:
        server = self.launcher.server
        assert server is not None and server.stdin is not None
        server.stdin.write(json.dumps({"kill": kill}) + "\n")
        server.stdin.flush()
        status = self.launcher._read()["status"]
        output = self.log.read_text(errors="replace") if self.log.exists() else ""
        errors = self.err.read_text(errors="replace") if self.err is not None and self.err.exists() else ""
        if os.WIFSIGNALED(status):
            return Finished(None, os.WTERMSIG(status), output, errors)
        return Finished(os.WEXITSTATUS(status), None, output, errors)
