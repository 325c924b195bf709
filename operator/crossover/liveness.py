"""Liveness that notices a stuck reconcile: kopf's probe endpoint fails while any reconcile has run too long.

A reconcile that never returns holds a worker thread for good; enough of them and the operator does nothing while
still answering its probe. The watchdog remembers when each in-flight reconcile started; the probe fails once one
is older than the bound, and the kubelet restarts the pod.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Stuck(Exception):
    """At least one reconcile has run longer than the bound."""


class Watchdog:
    def __init__(self, bound_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.bound_seconds = bound_seconds
        self._clock = clock
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()

    @contextmanager
    def watching(self, key: str) -> Iterator[None]:
        with self._lock:
            self._started[key] = self._clock()
        try:
            yield
        finally:
            with self._lock:
                self._started.pop(key, None)

    def stuck(self) -> dict[str, float]:
        """In-flight reconciles older than the bound, with their age in seconds."""
        now = self._clock()
        with self._lock:
            return {k: now - t for k, t in self._started.items() if now - t > self.bound_seconds}

    def check(self) -> int:
        """For the probe: the number of reconciles in flight, or Stuck naming the ones over the bound."""
        stuck = self.stuck()
        if stuck:
            worst = ", ".join(f"{k} ({age:.0f}s)" for k, age in sorted(stuck.items(), key=lambda kv: -kv[1])[:5])
            raise Stuck(f"{len(stuck)} reconcile(s) running longer than {self.bound_seconds:.0f}s: {worst}")
        with self._lock:
            return len(self._started)
