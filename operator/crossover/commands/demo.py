"""`crossover demo`: bring up the lab, install crossover with Helm, replay a real day slice, report the saving."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_TRACE = ROOT / "examples" / "traces" / "servegen_language_m-mid.csv"
DEFAULT_MANIFEST = ROOT / "examples" / "llama-8b-h100-vs-haiku.yaml"
# ServeGen day 4, 06:00 to 14:00: a morning trough far below the break-even, a peak that pays for a replica, and
# back down (chosen with `crossover simulate` over candidate slices; docs/demo.md).
DEFAULT_START_HOURS, DEFAULT_HOURS, DEFAULT_MEAN, DEFAULT_COMPRESS = 102.0, 8.0, 600.0, "72"


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="watch crossover save money on a real day slice in the local lab",
        description=(
            "Bring up the lab, install crossover with its Helm chart, apply an InferenceDeployment (8B model on "
            "rented H100s against a small API model) and replay eight hours of the ServeGen trace (a trough, a "
            "peak, a trough) through its router, time compressed ×72 (prices, capacities and time constants scaled "
            "so the dollars are real), with a live view. This is `crossover replay` with defaults. Writes report.md, "
            "report.png and report.json (plus ledger.json and decisions.csv) to --out, which outlives the lab."
        ),
    )
    parser.add_argument("--trace", type=Path, default=DEFAULT_TRACE, help="trace CSV, either format")
    parser.add_argument("-f", "--manifest", type=Path, default=DEFAULT_MANIFEST, help="InferenceDeployment manifest")
    parser.add_argument("--start-hours", type=float, default=DEFAULT_START_HOURS, help="slice start (102)")
    parser.add_argument("--hours", type=float, default=DEFAULT_HOURS, help="slice length in hours (8)")
    parser.add_argument("--scale-mean", type=float, default=DEFAULT_MEAN, help="mean in+out tokens/s (600)")
    parser.add_argument("--compress", default=DEFAULT_COMPRESS, help="time compression factor (72)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "demo", help="where the report goes")
    parser.add_argument("--chart", type=Path, default=ROOT / "charts" / "crossover", help=argparse.SUPPRESS)
    parser.add_argument("--no-live", action="store_true", help="print progress lines instead of the live view")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from crossover.extras import missing

    if hint := missing("lab"):
        print(f"crossover demo: {hint}", file=sys.stderr)
        return 2
    from crossover.commands.replay import parse_compression
    from crossover.manifest import ManifestError, load_inference_deployment
    from crossover.sim.traces import TraceError
    from crossover_lab.demo.replay import ReplayOptions
    from crossover_lab.demo.run import DemoOptions
    from crossover_lab.demo.run import run as run_demo
    from crossover_lab.demo.workload import load_workload

    try:
        k = parse_compression(args.compress)
        load_inference_deployment(args.manifest)
        workload = load_workload(args.trace, args.start_hours, args.hours, args.scale_mean, float(k))
    except (ValueError, ManifestError, TraceError) as error:
        print(f"crossover demo: {error}", file=sys.stderr)
        return 2
    replay = ReplayOptions(workload, args.manifest, k, args.out, args.chart, live=not args.no_live)
    return run_demo(DemoOptions(replay, args.start_hours, args.hours, args.scale_mean))
