"""`crossover demo`: bring up the lab, install crossover with Helm, replay a real trace, report the saving."""

from __future__ import annotations

import argparse
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_TRACE = ROOT / "examples" / "traces" / "azure_llm_2023_conv.csv"
DEFAULT_MANIFEST = ROOT / "examples" / "llama-8b-h100-vs-haiku.yaml"


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="watch crossover save money on a real trace in the local lab",
        description=(
            "Bring up the lab, install crossover with its Helm chart, apply an InferenceDeployment (8B model on "
            "rented H100s against a small API model), replay a real request trace through the router with time "
            "compressed by --speedup (the policy's time constants and prices scaled by the same factor, so the "
            "dollars are real), show a live view and write report.md and report.png."
        ),
    )
    parser.add_argument("--trace", type=Path, default=DEFAULT_TRACE, help="request-level trace (Azure format)")
    parser.add_argument("-f", "--manifest", type=Path, default=DEFAULT_MANIFEST, help="InferenceDeployment manifest")
    parser.add_argument("--speedup", type=Decimal, default=Decimal(12), help="time compression factor (default 12)")
    parser.add_argument(
        "--trace-seconds", type=float, default=None, help="replay only the first N seconds of the trace (trace time)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / ".lab" / "demo", help="where the report goes")
    parser.add_argument("--chart", type=Path, default=ROOT / "charts" / "crossover", help=argparse.SUPPRESS)
    parser.add_argument("--no-live", action="store_true", help="print progress lines instead of the live view")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from crossover.demo.run import DemoOptions
    from crossover.demo.run import run as run_demo

    if args.speedup <= 0:
        print("crossover demo: --speedup must be positive")
        return 2
    options = DemoOptions(
        trace=args.trace,
        manifest=args.manifest,
        speedup=args.speedup,
        max_trace_seconds=args.trace_seconds,
        out=args.out,
        chart=args.chart,
        live=not args.no_live,
    )
    return run_demo(options)
