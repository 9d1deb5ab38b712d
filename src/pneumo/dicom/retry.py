"""Exponential backoff for work kept on disk: after each failure a key waits twice as long as before."""

from __future__ import annotations

import threading
import time
from typing import Callable, Hashable


class Backoff:
    """Failures per key and when each key may be tried again. ``first``: the first wait in seconds; ``cap``: the
    longest; ``attempts``: how many tries a key gets (None: no end, for work that must not be given up)."""

    def __init__(self, first: float, cap: float, attempts: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if first <= 0 or cap < first:
            raise ValueError(f"backoff needs 0 < first <= cap, got first={first}, cap={cap}")
        self.first, self.cap, self.attempts = first, cap, attempts
        self._clock = clock
        self._failures: dict[Hashable, tuple[int, float]] = {}  # key -> (failures, when it may be tried)
        self._lock = threading.Lock()

    def failed(self, key: Hashable) -> float | None:
        """Count a failure; the seconds to wait before the next try, or None when the key has had its tries."""
        with self._lock:
            count = self._failures.get(key, (0, 0.0))[0] + 1
            if self.attempts is not None and count >= self.attempts:
                self._failures.pop(key, None)
                return None
            wait = min(self.cap, self.first * 2 ** (count - 1))
            self._failures[key] = (count, self._clock() + wait)
            return wait

    def failures(self, key: Hashable) -> int:
        with self._lock:
            return self._failures.get(key, (0, 0.0))[0]

    def succeeded(self, key: Hashable) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def is_due(self, key: Hashable) -> bool:
        with self._lock:
            entry = self._failures.get(key)
        return entry is None or entry[1] <= self._clock()

    def due(self) -> list[Hashable]:
        """Keys scheduled whose wait is over. Each stays scheduled until :meth:`taken` (or a success), so a caller
        can hand it on before it stops being counted as waiting."""
        now = self._clock()
        with self._lock:
            return [key for key, (_, when) in self._failures.items() if when <= now]

    def taken(self, key: Hashable) -> None:
        """The key is being tried again: no longer scheduled (its failures still count toward ``attempts``)."""
        with self._lock:
            if key in self._failures:
                self._failures[key] = (self._failures[key][0], float("inf"))

    def waiting(self) -> int:
        """Keys scheduled for a later try."""
        with self._lock:
            return sum(1 for _, when in self._failures.values() if when != float("inf"))
