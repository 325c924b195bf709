"""The replay's pure parts: the bill from pod lifetimes, and trace slices as requests and as simulator demand."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from crossover.sim.traces import TraceError
from crossover_lab.demo.billing import Lifetime, bill, busy_seconds, count_at, replica_seconds
from crossover_lab.demo.workload import load_workload

ROOT = Path(__file__).resolve().parents[2]
SERVEGEN = ROOT / "examples" / "traces" / "servegen_language_m-mid.csv"
AZURE = ROOT / "examples" / "traces" / "azure_llm_2023_conv.csv"


def test_replicas_are_billed_from_scheduled_to_deleted_within_the_window() -> None:
    pods = [
        Lifetime(scheduled=-10, ready=5, deleted=30),  # existed before the window: billed from its start
        Lifetime(scheduled=20, ready=25, deleted=None),  # still there at the end: billed to the end
        Lifetime(scheduled=50, ready=55, deleted=70),
    ]
    assert replica_seconds(pods, 0, 100) == 30 + 80 + 20
    assert busy_seconds(pods, 0, 100) == 100  # [0,30) ∪ [20,100) ∪ [50,70): always one at least
    assert busy_seconds([Lifetime(10, None, 20), Lifetime(40, None, 45)], 0, 100) == 15
    assert count_at(pods, 26) == 2 and count_at(pods, 26, ready_only=True) == 2
    assert count_at(pods, 21, ready_only=True) == 1
    # $36/h per replica, $3.6/h overhead, $1 API: 130 replica-seconds and 100 busy seconds
    result = bill(pods, 0, 100, Decimal(36), Decimal("3.6"), Decimal(1))
    assert result.replicas == Decimal("1.3") and result.overhead == Decimal("0.1")
    assert result.total == Decimal("2.4")


def test_window_series_slice_becomes_requests_carrying_its_tokens_under_the_request_rate_cap() -> None:
    work = load_workload(SERVEGEN, start_hours=94, hours=2, scale_mean=800, compress=72, max_wall_rps=20)
    assert work.seconds == 7200
    tokens_in, tokens_out = work.tokens
    assert abs((tokens_in + tokens_out) / work.seconds - 800) < 1  # scaled to the asked mean (rounding per request)
    assert len(work.requests) == pytest.approx(7200 * 20 / 72, rel=0.01)  # capped at 20 wall requests/s
    assert all(0 <= r.at < 7200 for r in work.requests)
    # the simulator sees exactly the tokens sent
    assert sum((w.input_tps + w.output_tps) * w.seconds for w in work.demand.windows) == pytest.approx(
        tokens_in + tokens_out
    )
    # uncapped, the trace's own request rate (scaled with its tokens) sets the count
    slow = load_workload(SERVEGEN, start_hours=94, hours=2, scale_mean=800, compress=1, max_wall_rps=1000)
    assert len(slow.requests) > 5 * len(work.requests)
    assert sum(slow.tokens) == pytest.approx(sum(work.tokens), rel=0.01)


def test_request_level_slice_keeps_the_trace_arrivals_and_scales_tokens() -> None:
    whole = load_workload(AZURE, start_hours=0.25, hours=0.25)
    assert whole.seconds == 900 and all(0 <= r.at < 900 for r in whole.requests)
    doubled = load_workload(AZURE, start_hours=0.25, hours=0.25, scale_mean=2 * sum(whole.tokens) / 900)
    assert [r.at for r in doubled.requests] == [r.at for r in whole.requests]
    assert sum(doubled.tokens) == pytest.approx(2 * sum(whole.tokens), rel=0.01)
    compressed = doubled.compressed(10)
    assert compressed.duration_s == pytest.approx(90)
    assert compressed.mean_tps() == pytest.approx(10 * doubled.demand.mean_tps())


@pytest.mark.parametrize(
    ("path", "start", "hours", "message"),
    [
        (AZURE, 2.0, 1.0, "after the trace ends"),
        (SERVEGEN, 400.0, 1.0, "after the trace ends"),
        (SERVEGEN, 1.0, 0.0, "positive length"),
    ],
)
def test_bad_slices_get_one_line_errors(path: Path, start: float, hours: float, message: str) -> None:
    with pytest.raises(TraceError, match=message):
        load_workload(path, start, hours)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["replay", "--trace", "nope.csv", "-f", "examples/llama-8b-h100-vs-haiku.yaml"], "cannot read nope.csv"),
        (["replay", "--trace", str(AZURE), "-f", "examples/llama-8b-h100-vs-haiku.yaml", "--compress", "0"],
         "--compress must be at least 1"),
        (["demo", "--start-hours", "400"], "after the trace ends"),
        (["demo", "-f", "nope.yaml"], "nope.yaml"),
    ],
)  # fmt: skip
def test_bad_input_gets_one_line_and_starts_no_lab(args: list[str], message: str) -> None:
    result = subprocess.run([sys.executable, "-m", "crossover.cli", *args], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "bringing up the lab" not in result.stdout
