"""Sliding-window counters for abuse limits: failed logins per account and per address, uploads per account.

Kept in the server's memory, owned by the app's context (one per app, never module-level): a restart forgets
them, which only gives an attacker one fresh window per restart.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable

# Keys are pruned once there are this many, so spraying made-up names cannot grow memory without bound.
_PRUNE_AT = 10_000


class SlidingWindow:
    """At most ``limit`` events per key within ``window_s`` seconds."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()  # routes run in worker threads

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may act again (0.0: it may now)."""
        with self._lock:
            events = self._recent(key)
            if len(events) < self.limit:
                return 0.0
            return max(events[0] + self.window_s - self._clock(), 0.001)

    def hit(self, key: str) -> None:
        with self._lock:
            if len(self._events) >= _PRUNE_AT:
                for stale in [k for k in self._events if not self._recent(k)]:
                    del self._events[stale]
            self._recent(key).append(self._clock())

    def take(self, key: str) -> float:
        """Count one event if allowed and return 0.0; else count nothing and return the seconds to wait."""
        with self._lock:
            events = self._recent(key)
            if len(events) >= self.limit:
                return max(events[0] + self.window_s - self._clock(), 0.001)
            events.append(self._clock())
            return 0.0

    def _recent(self, key: str) -> deque[float]:
        events = self._events.setdefault(key, deque())
        oldest = self._clock() - self.window_s
        while events and events[0] <= oldest:
            events.popleft()
        return events
