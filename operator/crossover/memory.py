"""Give freed heap back to the operating system: the operator's RSS is its working set, not its high-water mark.

Why: glibc keeps freed chunks in its arenas instead of returning them, and a burst of API traffic (the first pass
over 1,000 InferenceDeployments held hundreds of API-server connections open at once, each with asyncio's 256 KiB
TLS read buffer) leaves many behind. `malloc_trim(0)` hands glibc's free pages back; it is glibc-only and cheap
(milliseconds), so a daemon thread calls it every minute. Elsewhere (musl, macOS) it is a no-op. It cannot return
pymalloc's partly used arenas: keeping the first pass's peak of small objects low is what keeps those few
(docs/operator-scale.md).

Before trimming, the thread runs a full garbage collection. With a few hundred thousand long-lived objects (kopf's
per-object memories, the watches' bodies), Python's oldest generation is collected only rarely, and the garbage it
holds meanwhile is not small: each closed API server connection is a reference cycle that keeps asyncio's 256 KiB
TLS buffer alive (CPython gh-109534). A collection a minute costs tens of milliseconds at 1,000 resources.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

TRIM_INTERVAL_SECONDS = 60.0


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    return trim


def trim_now() -> bool:
    """Return freed heap to the OS once; False where the C library cannot."""
    trim = _malloc_trim()
    if trim is None:
        return False
    gc.collect()
    trim(0)
    return True


def keep_trimmed(interval_seconds: float = TRIM_INTERVAL_SECONDS) -> threading.Thread | None:
    """Start the daemon thread that trims every `interval_seconds`; None where the C library cannot."""
    trim = _malloc_trim()
    if trim is None:
        log.info("malloc_trim is not available: the heap is left to the C library")
        return None
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval_seconds):
            gc.collect()
            trim(0)

    thread = threading.Thread(target=loop, name="malloc-trim", daemon=True)
    thread.start()
    return thread
