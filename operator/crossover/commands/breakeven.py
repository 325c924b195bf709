"""`crossover breakeven`: the break-even of one InferenceDeployment manifest, offline."""

from __future__ import annotations

import argparse
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import simplejson

from costpolicy.breakeven import BreakEven, break_even
from costpolicy.money import HOURS_PER_MONTH, quantize
from costpolicy.pricing import self_hosted_per_million_at_utilization
from costpolicy.spec import CostSpec
from crossover.extras import missing
from crossover.manifest import ManifestError, load_inference_deployment

UTILIZATIONS = (Decimal("0.10"), Decimal("0.25"), Decimal("0.50"), Decimal("0.75"), Decimal("1.00"))
DEFAULT_INPUT_TOKENS = 800
DEFAULT_OUTPUT_TOKENS = 400


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "breakeven",
        help="show where self-hosting starts to beat the API for a manifest",
        description=(
            "Compute the break-even of an InferenceDeployment manifest: what a replica costs, what the API "
            "charges at a call shape, the demand above which each replica pays for itself, and self-hosted "
            "$/Mtok at several utilisations. A month is 730 hours."
        ),
    )
    parser.add_argument("-f", "--filename", required=True, metavar="MANIFEST.yaml", help="InferenceDeployment manifest")
    parser.add_argument(
        "--input-tokens",
        type=_positive_int,
        default=DEFAULT_INPUT_TOKENS,
        metavar="N",
        help=f"input tokens per call (default {DEFAULT_INPUT_TOKENS})",
    )
    parser.add_argument(
        "--output-tokens",
        type=_positive_int,
        default=DEFAULT_OUTPUT_TOKENS,
        metavar="N",
        help=f"output tokens per call (default {DEFAULT_OUTPUT_TOKENS})",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--plot", metavar="FILE.png", help="draw monthly cost against daily volume to FILE.png")
    parser.set_defaults(func=run)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be zero or more")
    return value


def run(args: argparse.Namespace) -> int:
    if args.plot and (hint := missing("plots")):
        print(f"crossover breakeven: --plot {hint}", file=sys.stderr)
        return 2
    if args.input_tokens + args.output_tokens == 0:
        print("crossover breakeven: a call needs input or output tokens", file=sys.stderr)
        return 2
    try:
        spec = load_inference_deployment(args.filename).spec.cost_spec()
    except ManifestError as error:
        print(f"crossover breakeven: {error}", file=sys.stderr)
        return 2
    if args.plot and not Path(args.plot).resolve().parent.is_dir():
        print(f"crossover breakeven: cannot write {args.plot}: no such directory", file=sys.stderr)
        return 2
    result = break_even(spec, Decimal(args.input_tokens), Decimal(args.output_tokens))
    if args.json:
        print(simplejson.dumps(to_json(spec, result), use_decimal=True, indent=2))
    else:
        print(render_table(spec, result))
    if args.plot:
        from crossover.plots import plot_breakeven  # matplotlib only when asked

        try:
            plot_breakeven(spec, result, args.plot)
        except OSError as error:
            print(f"crossover breakeven: cannot write {args.plot}: {error.strerror}", file=sys.stderr)
            return 2
        if not args.json:
            print(f"plot written to {args.plot}")
    return 0


def _per_utilization(spec: CostSpec, result: BreakEven) -> list[tuple[Decimal, Decimal]]:
    return [
        (
            u,
            self_hosted_per_million_at_utilization(
                spec, u, result.input_tokens_per_call, result.output_tokens_per_call
            ),
        )
        for u in UTILIZATIONS
    ]


def to_json(spec: CostSpec, result: BreakEven) -> dict[str, Any]:
    entry = result.entry
    q = quantize
    return {
        "inputTokensPerCall": int(result.input_tokens_per_call),
        "outputTokensPerCall": int(result.output_tokens_per_call),
        "replicaCostPerHour": q(result.replica_cost_per_hour, 6),
        "selfHostedFixedPerMonth": q(result.fixed_cost_per_month, 2),
        "apiCostPerCall": q(result.api_cost_per_call, 8),
        "apiCostPerMillionTokens": q(result.api_per_million_tokens, 6),
        "replicaCapacityTokensPerSecond": q(result.replica_capacity_tokens_per_second, 2),
        "breakEvenReplicas": None if entry is None else entry.replicas,
        "breakEvenTokensPerSecond": None if entry is None else q(entry.tokens_per_second, 2),
        "breakEvenTokensPerDay": None if entry is None else q(entry.tokens_per_day, 0),
        "breakEvenCallsPerMonth": None if entry is None else q(entry.calls_per_month, 0),
        "marginalReplicas": [
            {
                "replicas": p.replicas,
                "tokensPerSecond": q(p.tokens_per_second, 2),
                "tokensPerDay": q(p.tokens_per_day, 0),
                "callsPerMonth": q(p.calls_per_month, 0),
            }
            for p in result.points
        ],
        "selfHostedPerMillionTokensAtUtilization": {
            f"{int(u * 100)}%": q(cost, 4) for u, cost in _per_utilization(spec, result)
        },
    }


def _num(value: Decimal, places: int = 0) -> str:
    return f"{quantize(value, places):,}"


def render_table(spec: CostSpec, result: BreakEven) -> str:
    entry = result.entry
    call = f"{int(result.input_tokens_per_call)} in + {int(result.output_tokens_per_call)} out tokens per call"
    rows: list[tuple[str, str]] = [
        ("replica cost/hour", f"${_num(result.replica_cost_per_hour, 4)}"),
        ("  per month (730 h)", f"${_num(result.replica_cost_per_hour * HOURS_PER_MONTH, 2)}"),
        ("fixed cost/month", f"${_num(result.fixed_cost_per_month, 2)}"),
        ("API $/Mtok at this mix", f"${_num(result.api_per_million_tokens, 4)}"),
        ("API $/call", f"${_num(result.api_cost_per_call, 6)}"),
        (
            "replica capacity",
            f"{_num(result.replica_capacity_tokens_per_second)} tok/s "
            f"at {quantize(spec.policy.target_utilization * 100, 0)}% target utilisation",
        ),
    ]
    if entry is None:
        rows.append(("break-even", "never: a full replica costs more than the API bill it replaces"))
    else:
        rows += [
            (
                "break-even tokens/day",
                f"{_num(entry.tokens_per_day)} ({_num(entry.tokens_per_second, 1)} tok/s, "
                f"{entry.replicas} replica{'s' if entry.replicas > 1 else ''})",
            ),
            ("break-even calls/month", _num(entry.calls_per_month)),
        ]
    width = max(len(label) for label, _ in rows)
    lines = [f"crossover break-even: {call}", ""]
    lines += [f"  {label.ljust(width)}  {value}" for label, value in rows]
    lines += ["", "  self-hosted $/Mtok, one replica with fixed cost, by utilisation:"]
    lines.append("    " + "   ".join(f"{int(u * 100):>3}%: ${_num(c, 2)}" for u, c in _per_utilization(spec, result)))
    if len(result.points) > 1:
        lines += ["", "  marginal replica pays for itself above:"]
        for p in result.points:
            lines.append(
                f"    {p.replicas:>3} replica(s): {_num(p.tokens_per_second, 1):>12} tok/s  "
                f"{_num(p.tokens_per_day):>16} tok/day"
            )
    return "\n".join(lines)
