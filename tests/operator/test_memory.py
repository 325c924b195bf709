"""The operator hands freed heap back: after a burst of allocations is freed, a trim lowers the RSS."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from crossover.memory import keep_trimmed, trim_now

glibc = pytest.mark.skipif(os.confstr("CS_GNU_LIBC_VERSION") is None, reason="malloc_trim is glibc's")

BURST = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from crossover.memory import trim_now

    def rss():
        line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmRSS:"))
        return int(line.split()[1]) // 1024

    # 300 MiB in 1 KiB objects (glibc's heap, not pymalloc's arenas), then one survivor above them, as a
    # reconcile's last object pins the top of the heap, and the burst freed
    burst = [bytes(1024) for _ in range(300 * 1024)]
    survivor = bytes(1024)
    del burst
    freed = rss()
    if sys.argv[1] == "trim":
        assert trim_now()
    print(freed, rss())
    """
)


@glibc
def test_a_trim_returns_a_freed_burst_to_the_os() -> None:
    def run(mode: str) -> tuple[int, int]:
        out = subprocess.run([sys.executable, "-c", BURST, mode], capture_output=True, text=True, check=True).stdout
        freed, after = out.split()
        return int(freed), int(after)

    freed, kept = run("keep")
    assert kept >= 250, (freed, kept)  # without a trim glibc keeps the freed burst
    freed, trimmed = run("trim")
    assert trimmed < 100, (freed, trimmed)


@glibc
def test_the_operator_keeps_a_trimming_thread() -> None:
    thread = keep_trimmed(interval_seconds=3600)
    assert thread is not None and thread.daemon and thread.is_alive()
    assert trim_now()


CYCLES = textwrap.dedent(
    """
    import gc, sys
    from pathlib import Path
    from crossover.memory import trim_now

    def rss():
        line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmRSS:"))
        return int(line.split()[1]) // 1024

    gc.disable()  # the oldest generation, as rarely collected as it is with many long-lived objects

    class Connection:  # a closed connection: protocol and transport refer to each other, holding a TLS buffer
        def __init__(self):
            self.buffer = bytearray(256 * 1024)
            self.peer = self

    for _ in range(800):  # 200 MiB
        Connection()
    before = rss()
    trim_now()
    print(before, rss())
    """
)


@glibc
def test_a_trim_first_collects_the_cycles_that_hold_buffers() -> None:
    out = subprocess.run([sys.executable, "-c", CYCLES], capture_output=True, text=True, check=True).stdout
    before, after = (int(x) for x in out.split())
    assert before >= 200 and after < before - 150, (before, after)
