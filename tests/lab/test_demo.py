"""`crossover demo`, shortened: the whole main job end to end (lab, Helm, router, replay, report)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from crossover.lab import processes
from tests.fixtures.lab import Lab

pytestmark = pytest.mark.lab


def test_shortened_demo_runs_end_to_end_and_writes_its_report(lab: Lab, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "crossover.cli", "demo", "--no-live", "--trace-seconds", "240", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    summary = re.search(r"crossover spent \$([\d,.]+):.*API-only \(\$([\d,.]+)\).*\n", result.stdout)
    assert summary, result.stdout[-2000:]
    assert "0 of" in summary.group(0) and "requests failed" in summary.group(0)
    report = (out / "report.md").read_text()
    assert "| crossover |" in report and "| API only |" in report and "static fleet" in report
    assert (out / "report.png").stat().st_size > 10_000
    # every request's tokens counted exactly once: the router's counters equal what the clients were told
    counts = re.search(
        r"to the client\): ([\d,]+) in, ([\d,]+) out; counted by the router: ([\d,]+) in, ([\d,]+) out", report
    )
    assert counts, report
    client_in, client_out, router_in, router_out = (int(g.replace(",", "")) for g in counts.groups())
    assert client_in > 0 and (client_in, client_out) == (router_in, router_out)
    # nothing of the demo's own is left running: its API emulator is gone (the lab stays, the fixture owns it)
    assert processes.pid_of(lab.cfg.state, "api-emulator") is None
