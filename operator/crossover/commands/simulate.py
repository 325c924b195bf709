"""`crossover simulate`: replay a trace through a policy on a simulated cluster; decisions.csv, summary.json, plot."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "simulate",
        help="replay a demand trace through a policy (cost-aware or a reference) and cost the outcome",
        description=(
            "Replay a trace (window series: window_start_s,input_tokens_per_s,output_tokens_per_s; or request-level "
            "Azure format: TIMESTAMP,ContextTokens,GeneratedTokens) on a simulated cluster that follows the manifest "
            "(capacity, cold start, bounds), with a control loop that sees demand through Prometheus-like lag. "
            "Writes OUT/decisions.csv, OUT/summary.json and OUT/report.png. See docs/simulator.md."
        ),
    )
    parser.add_argument("--trace", type=Path, required=True, help="trace CSV (format told from its header)")
    parser.add_argument("-f", "--manifest", type=Path, required=True, help="InferenceDeployment manifest")
    parser.add_argument(
        "--start-hours", type=_non_negative_float, default=0.0, help="replay from this hour of the trace (0)"
    )
    parser.add_argument("--hours", type=_positive_float, help="replay only this many hours (default: to the end)")
    parser.add_argument(
        "--scale-mean", type=_positive_float, help="scale both token columns so mean in+out tokens/s is this"
    )
    parser.add_argument(
        "--policy",
        default="cost-aware",
        help="cost-aware (default), api-only, static-peak, hpa-util, hpa-util-spill, offline-optimum",
    )
    parser.add_argument("--control-interval", type=_positive_float, default=30.0, help="seconds between decisions (30)")
    parser.add_argument(
        "--warmup", type=_non_negative_float, default=1800.0, help="seconds of wrapped-around trace before t=0"
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.set_defaults(func=run)


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _positive_float(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from crossover.manifest import ManifestError, load_inference_deployment
    from crossover.sim.model import Demands, SimConfig
    from crossover.sim.outputs import write_all
    from crossover.sim.policies import POLICIES, run_policy
    from crossover.sim.traces import TraceError, load_trace

    if args.policy not in POLICIES:
        print(f"crossover simulate: unknown policy {args.policy!r}; one of {', '.join(POLICIES)}", file=sys.stderr)
        return 2
    try:
        spec = load_inference_deployment(args.manifest).spec.cost_spec()
        trace = load_trace(args.trace, bucket_s=args.control_interval)
        if args.start_hours or args.hours is not None:
            trace = trace.sliced(args.start_hours * 3600, None if args.hours is None else args.hours * 3600)
        if args.scale_mean is not None:
            trace = trace.scaled_to_mean(args.scale_mean)
    except (ManifestError, TraceError) as error:
        print(f"crossover simulate: {error}", file=sys.stderr)
        return 2
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(f"crossover simulate: cannot write to {args.out}: {error.strerror}", file=sys.stderr)
        return 2
    config = SimConfig(control_interval_s=args.control_interval, warmup_s=args.warmup)
    demands = Demands(trace, config)
    result = run_policy(args.policy, spec, demands)
    optimum = run_policy("offline-optimum", spec, demands) if args.policy != "offline-optimum" else None
    data = write_all(spec, result, args.out, f"{trace.name} x {args.manifest.name}", optimum)
    cost = data["cost"]
    print(
        f"{args.policy}: ${cost['total']} (replicas ${cost['replicas']}, overhead ${cost['fixedOverhead']}, "
        f"API ${cost['api']}), late {data['lateTokenFraction']:.4%}, {data['scaleEvents']} scale events"
        + (f", {data['relativeToOfflineOptimum']}x the offline optimum" if "relativeToOfflineOptimum" in data else "")
    )
    from crossover.extras import missing

    hint = missing("plots")
    print(
        f"wrote {args.out / 'decisions.csv'}, summary.json" + (f" (no report.png: {hint})" if hint else ", report.png")
    )
    return 0
