"""`crossover replay`: a trace slice through the real operator, router and engines in the lab, billed from cluster
facts, next to the simulator and the offline optimum on the same slice."""

from __future__ import annotations

import argparse
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "replay",
        help="replay a trace slice through crossover in the lab and measure the bill against the simulator",
        description=(
            "Start the lab, the operator (Helm) and a hosted-API emulator as needed; apply the manifest with time "
            "compressed by --compress (the manifest's API base URL and Secret replaced by the emulator's); send the "
            "trace slice through the InferenceDeployment's router; bill replica time from each engine pod's "
            "lifetime (scheduled to deleted, warming included, watched on the API server), API dollars from the "
            "router's counters and the overhead per the spec; then run the simulator and the offline optimum on the "
            "same slice. Writes OUT/ledger.json, OUT/decisions.csv (live, the simulator's columns), "
            "OUT/simulated.csv and OUT/report.png; all dollars are for the uncompressed slice. See docs/demo.md."
        ),
    )
    parser.add_argument("--trace", type=Path, required=True, help="trace CSV, either format (told from its header)")
    parser.add_argument("-f", "--manifest", type=Path, required=True, help="InferenceDeployment manifest")
    parser.add_argument("--start-hours", type=float, default=0.0, help="slice start, hours into the trace (0)")
    parser.add_argument("--hours", type=float, help="slice length in hours (default: to the end of the trace)")
    parser.add_argument("--scale-mean", type=float, help="scale token counts so mean in+out tokens/s is this")
    parser.add_argument("--compress", default="12", help="time compression factor (12: an hour in 5 minutes)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "replay", help="output folder")
    parser.add_argument("--chart", type=Path, default=ROOT / "charts" / "crossover", help=argparse.SUPPRESS)
    parser.add_argument("--live", action="store_true", help="show the live view instead of progress lines")
    parser.set_defaults(func=run)


def parse_compression(value: str) -> Decimal:
    try:
        k = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"--compress {value!r} is not a number") from None
    if not k.is_finite() or k < 1:
        raise ValueError(f"--compress must be at least 1, not {value}")
    return k


def run(args: argparse.Namespace) -> int:
    from crossover.extras import missing

    if hint := missing("lab"):
        print(f"crossover replay: {hint}", file=sys.stderr)
        return 2
    from crossover.manifest import ManifestError, load_inference_deployment
    from crossover.sim.traces import TraceError
    from crossover_lab.demo.replay import ReplayOptions, replay, summary_line
    from crossover_lab.demo.view import progress_printer, rich_view
    from crossover_lab.demo.workload import load_workload

    try:
        k = parse_compression(args.compress)
        load_inference_deployment(args.manifest)
        workload = load_workload(args.trace, args.start_hours, args.hours, args.scale_mean, float(k))
    except (ValueError, ManifestError, TraceError) as error:
        print(f"crossover replay: {error}", file=sys.stderr)
        return 2
    options = ReplayOptions(workload, args.manifest, k, args.out, args.chart, live=args.live)
    with rich_view(options) if args.live else progress_printer(options) as view:
        _, outcome, _ = replay(options, view)
    print(summary_line(outcome))
    print(f"ledger: {args.out / 'ledger.json'}")
    return 0 if outcome.failed == 0 else 1
