"""`crossover bench`: every policy, every shared trace, every example manifest, several volumes -> RESULTS.md."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bench",
        help="run the cost benchmark (all policies, traces, example manifests, volumes) into RESULTS.md",
        description=(
            "Replay every trace in --traces-dir through every policy for each example manifest, at 0.5x, 2x and 8x "
            "its break-even, and write --out/RESULTS.md with one plot per case. Takes a few minutes."
        ),
    )
    parser.add_argument("--traces-dir", type=Path, default=ROOT / "examples" / "traces")
    parser.add_argument("--examples-dir", type=Path, default=ROOT / "examples")
    parser.add_argument("--out", type=Path, default=ROOT / "bench")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from crossover.sim.bench import goal_tally, run_bench

    manifests = sorted(args.examples_dir.glob("*.yaml"))
    traces = sorted(args.traces_dir.glob("*.csv"))
    if not manifests or not traces:
        print(f"crossover bench: need manifests in {args.examples_dir} and traces in {args.traces_dir}")
        return 2
    cases = run_bench(manifests, traces, args.out, lambda line: print(line, flush=True))
    met, counted = goal_tally(cases)
    print(f"wrote {args.out / 'RESULTS.md'}: goal met in {met} of {counted} non-trivial cases")
    return 0
