"""What a child process uses, read from outside it."""

from __future__ import annotations


def rss_bytes(pid: int) -> int:
    """The resident set size of process ``pid``, in bytes (psutil where installed, else /proc)."""
    try:
        import psutil
    except ImportError:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for process {pid}")
    return int(psutil.Process(pid).memory_info().rss)
