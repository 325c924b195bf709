"""Several router processes on one port (`--workers N`, SO_REUSEPORT): the kernel spreads connections among them.

Each worker routes on its own: its own spill credit (so the spill share is exact per worker, and so in total within
one request per worker), its own share of the per-pod in-flight limit and of the queue. /metrics from any worker
shows the sum over all of them (prometheus_client's multiprocess mode, in a directory this supervisor owns).
The supervisor passes SIGTERM/SIGINT on (each worker drains as one router would) and, when a worker dies on its own,
stops the others and exits non-zero so the pod restarts whole.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from types import FrameType

from crossover.contracts import ENV_PROMETHEUS_MULTIPROC_DIR

WORKER_FLAG = "--worker-index"


def worker_share(total: int, workers: int) -> int:
    """Each worker's part of a limit the router as a whole must keep (never below 1)."""
    return max(1, total // workers)


def supervise(argv: list[str], workers: int) -> int:
    """Run `crossover <argv>` as `workers` worker processes until they exit; returns the worst exit code."""
    directory = tempfile.mkdtemp(prefix="crossover-router-metrics-")
    env = {**os.environ, ENV_PROMETHEUS_MULTIPROC_DIR: directory}
    command = [sys.executable, "-m", "crossover.cli", *argv]
    children = [subprocess.Popen([*command, WORKER_FLAG, str(i)], env=env) for i in range(workers)]
    stopping = False

    def forward(signum: int, _: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    alive = {child.pid for child in children}
    failed = False
    try:
        while alive:
            pid, status = os.wait()  # blocks until a worker exits (signals interrupt it and run `forward`)
            if pid not in alive:
                continue
            alive.discard(pid)
            if not stopping or os.waitstatus_to_exitcode(status) != 0:
                failed = True
                forward(signal.SIGTERM, None)  # a worker died on its own: stop the rest, let the pod restart
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        shutil.rmtree(directory, ignore_errors=True)
    return 1 if failed else 0
