"""Long-running lab processes: started detached, remembered in pid files, stopped by process group.

The lab outlives the command that starts it (`make cluster` returns, tests and the demo use it later), so every
server is started in a session of its own and recorded in `<state>/run/<name>.pid`. Stopping signals the whole
process group, so whatever a server started (the harness's routers, say) goes with it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


def _pid_file(state: Path, name: str) -> Path:
    return state / "run" / f"{name}.pid"


def log_file(state: Path, name: str) -> Path:
    return state / "logs" / f"{name}.log"


def pid_of(state: Path, name: str) -> int | None:
    """The recorded pid if that process still exists (a stale pid file from a rebooted machine reads as None)."""
    try:
        pid = int(_pid_file(state, name).read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    with contextlib.suppress(FileNotFoundError):
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return None
    return pid


def start(
    state: Path, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> int:
    """Start `argv` detached, logging to `<state>/logs/<name>.log`; returns the pid."""
    (state / "run").mkdir(parents=True, exist_ok=True)
    (state / "logs").mkdir(parents=True, exist_ok=True)
    with log_file(state, name).open("ab") as log:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )
    _pid_file(state, name).write_text(f"{process.pid}\n")
    return process.pid


def stop(state: Path, name: str, grace_seconds: float = 10.0) -> bool:
    """SIGTERM the process group, then SIGKILL after the grace period; True if something was running."""
    pid = pid_of(state, name)
    _pid_file(state, name).unlink(missing_ok=True)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        if not _group_alive(pid):
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _group_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return True


def _group_alive(pgid: int) -> bool:
    """True while any non-zombie process is left in the group (children of a dead leader included)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            # after the command: state, ppid, pgrp
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def running(state: Path) -> list[str]:
    """Names of the lab processes still alive."""
    run = state / "run"
    if not run.is_dir():
        return []
    return sorted(p.stem for p in run.glob("*.pid") if pid_of(state, p.stem) is not None)
