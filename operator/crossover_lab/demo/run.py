"""`crossover demo`: a replay (replay.py) of a real day slice with defaults, and a report that outlives the lab.

The slice (ServeGen, night into morning: a trough well below the break-even and a peak that pays for a replica) was
chosen with `crossover simulate` over candidate slices (docs/demo.md), so the viewer sees what crossover is for:
scale to zero and API service in the trough, spill while a replica warms, scale-up at the peak and back down, and a
ledger against API-only, a static peak fleet, the simulator and the offline optimum.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from costpolicy.money import fmt_money
from crossover_lab.demo.replay import Outcome, ReplayOptions, Run, replay, summary_line
from crossover_lab.demo.view import progress_printer, rich_view


@dataclass(frozen=True)
class DemoOptions:
    replay: ReplayOptions
    start_hours: float
    hours: float
    scale_mean: float


def report_json(outcome: Outcome) -> dict[str, object]:
    ledger = outcome.ledger()
    return {
        "crossoverDollars": ledger["liveDollars"],
        "apiOnlyDollars": ledger["apiOnlyDollars"],
        "staticPeakDollars": ledger["staticPeakDollars"],
        "staticPeakReplicas": ledger["staticPeakReplicas"],
        "simulatedDollars": ledger["simulatedDollars"],
        "optimumDollars": ledger["optimumDollars"],
        "requests": ledger["requests"],
        "failedRequests": ledger["failedRequests"],
        "traceHours": ledger["traceHours"],
        "compression": ledger["compression"],
    }


def write_report(options: DemoOptions, run: Run, outcome: Outcome) -> Path:
    out = options.replay.out
    (out / "report.json").write_text(json.dumps(report_json(outcome), indent=2) + "\n")
    live = outcome.live
    k = options.replay.compress

    static = outcome.static_peak
    replicas = static.steps[0].replicas_billed if static.steps else 0
    lines = [
        "# crossover demo report",
        "",
        f"`{options.replay.workload.name}`, hours {options.start_hours:g} to {options.start_hours + options.hours:g} "
        f"scaled to a mean of {options.scale_mean:g} tokens/s, replayed at ×{k} through the router of "
        f"`{options.replay.manifest.name}` in the lab ({outcome.requests} requests). Dollar figures are real dollars "
        "for the uncompressed slice: the replica price and capacities were multiplied by the compression, durations "
        "divided by it.",
        "",
        f"**{summary_line(outcome)}.**",
        "",
        "| | total | replicas | fixed overhead | API |",
        "|---|---:|---:|---:|---:|",
        f"| crossover, measured in the lab | {fmt_money(live.total)} | {fmt_money(live.replicas)} | "
        f"{fmt_money(live.overhead)} | "
        f"{fmt_money(live.api)} |",
        f"| crossover, simulated | {fmt_money(outcome.simulated.total)} | {fmt_money(outcome.simulated.replicas)} | "
        f"{fmt_money(outcome.simulated.overhead)} | {fmt_money(outcome.simulated.api)} |",
        f"| offline optimum (clairvoyant) | {fmt_money(outcome.optimum.total)} | "
        f"{fmt_money(outcome.optimum.replicas)} | "
        f"{fmt_money(outcome.optimum.overhead)} | {fmt_money(outcome.optimum.api)} |",
        f"| API only | {fmt_money(outcome.api_only)} | - | - | {fmt_money(outcome.api_only)} |",
        f"| static peak fleet ×{replicas} | {fmt_money(static.total)} | {fmt_money(static.replicas)} | "
        f"{fmt_money(static.overhead)} | - |",
        "",
        "Measured: replica time from each engine pod's lifetime on the API server (scheduled to deleted, warming "
        "included), API dollars from the router's spend counter, overhead while at least one replica existed. "
        "`decisions.csv` has the live run in the simulator's columns, `simulated.csv` the simulator's.",
        "",
        "## Decisions",
        "",
        f"The operator's own messages, at wall-clock time t; their $/h are the compressed manifest's (×{k} per wall "
        "hour).",
        "",
        *[f"- {d}" for d in run.decisions],
        "",
        "![demand, replicas, API share and cumulative cost](report.png)",
        "",
    ]
    (out / "report.md").write_text("\n".join(lines))
    return out / "report.md"


def run(options: DemoOptions) -> int:
    with rich_view(options.replay) if options.replay.live else progress_printer(options.replay) as view:
        result, outcome, _ = replay(options.replay, view)
    path = write_report(options, result, outcome)
    print(summary_line(outcome))
    print(f"report: {path} (and report.png, report.json beside it)")
    return 0 if outcome.failed == 0 else 1
