"""decide() time and memory against replicas.max: the work must follow demand, not the bound.

Run: `.venv/bin/python bench/decide_scale.py` (pure Python, no lab; a few seconds). Prints one line per max, the
baseline (max 8, the example's) first. Before issue 17's fix, max 1,000,000 took 16 s and 585 MB per decision.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from costpolicy import Demand, ReplicaState, Snapshot, decide
from costpolicy.spec import ReplicaBounds
from crossover.manifest import load_inference_deployment

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "llama-8b-h100-vs-haiku.yaml"
DEMAND = Demand(Decimal(30000), Decimal(6000))  # 4 replicas' worth at 80 %


def measure(top: int, runs: int) -> tuple[float, float, float]:
    """(median ms, worst ms, peak MiB) of decide() for one resource whose replicas.max is `top`."""
    spec = load_inference_deployment(EXAMPLE).spec.cost_spec()
    spec = spec.model_copy(update={"replicas": ReplicaBounds.model_construct(min=0, max=top, pinned=None)})
    at = datetime(2026, 11, 23, 12, tzinfo=UTC)
    snapshot = Snapshot(at, ReplicaState(current=2, ready=2), DEMAND)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        decide(spec, snapshot, (), at)
        times.append((time.perf_counter() - started) * 1000)
    tracemalloc.start()
    decide(spec, snapshot, (), at)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return statistics.median(times), max(times), peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    for top in (8, 1_000, 1_000_000, 4611686018427387904):
        median, worst, peak = measure(top, args.runs)
        kib = peak * 1024
        print(f"replicas.max={top:>22,}: decide() median {median:6.3f} ms, worst {worst:6.3f} ms, peak {kib:7.1f} KiB")


if __name__ == "__main__":
    main()
