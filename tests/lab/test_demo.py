"""`crossover demo`, shortened: the main job end to end (lab, Helm, router, replay, ledger), and its report
outlives the lab."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from crossover_lab import control_plane, lifecycle
from crossover_lab.config import LabConfig

pytestmark = pytest.mark.lab


def test_shortened_demo_writes_a_report_that_outlives_the_lab(tmp_path: Path) -> None:
    cfg = LabConfig.from_env()
    was_running = all(lifecycle.status(cfg).values()) and control_plane.apiserver_reachable(cfg)
    out = tmp_path / "reports" / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "crossover.cli", "demo", "--no-live", "--hours", "1.5", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1].startswith(f"report: {out / 'report.md'}")
    if not was_running:  # the demo started the lab, so it took it down again: the report is still there
        assert not any(lifecycle.status(cfg).values())
    report = json.loads((out / "report.json").read_text())
    for key in ("crossoverDollars", "apiOnlyDollars", "staticPeakDollars", "simulatedDollars", "optimumDollars"):
        assert Decimal(report[key]) >= 0, key
    assert report["requests"] > 0 and report["failedRequests"] == 0
    assert Decimal(report["crossoverDollars"]) > 0  # something was measured: replicas or API
    assert "| crossover, measured in the lab |" in (out / "report.md").read_text()
    assert (out / "report.png").stat().st_size > 10_000
    ledger = json.loads((out / "ledger.json").read_text())
    assert ledger["liveDollars"] == report["crossoverDollars"]
    assert (out / "decisions.csv").read_text().startswith("window_start_s,window_seconds,demand_input_tps")
