"""What a simulation writes: decisions.csv (one row per control step), summary.json and report.png."""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from costpolicy import pricing
from costpolicy.money import money_string
from costpolicy.pricing import FloatCapacity
from costpolicy.spec import CostSpec
from crossover.extras import missing
from crossover.sim.model import Result, to_decimal

COLUMNS = (
    "window_start_s", "window_seconds", "demand_input_tps", "demand_output_tps", "replicas_billed", "replicas_ready",
    "self_input_tps", "self_output_tps", "api_input_tps", "api_output_tps", "late_input_tps", "late_output_tps",
)  # fmt: skip
EXTRA = ("cost_replicas", "cost_overhead", "cost_api", "reason")


def summary(spec: CostSpec, result: Result, optimum: Result | None = None) -> dict[str, Any]:
    served = result.tokens("self") + result.tokens("api")
    per_million = pricing.per_million(result.total, to_decimal(served))
    out: dict[str, Any] = {
        "policy": result.policy,
        "cost": {
            "total": money_string(result.total),
            "replicas": money_string(result.replicas),
            "fixedOverhead": money_string(result.overhead),
            "api": money_string(result.api),
            "effective": money_string(result.effective(spec)),
        },
        "costPerMillionTokens": str(per_million.quantize(Decimal("0.0001"))) if per_million is not None else None,
        "lateTokenFraction": round(result.late_fraction, 6),
        "scaleEvents": result.scale_events,
        "tokens": {
            "demand": round(result.tokens("demand")),
            "selfHosted": round(result.tokens("self")),
            "api": round(result.tokens("api")),
            "late": round(result.tokens("late")),
        },
        "seconds": sum(s.window_seconds for s in result.steps),
    }
    if optimum is not None and optimum.effective(spec) > 0:
        ratio = result.effective(spec) / optimum.effective(spec)
        out["relativeToOfflineOptimum"] = str(ratio.quantize(Decimal("0.001")))
    return out


def write_csv(result: Result, path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*COLUMNS, *EXTRA])
        for s in result.steps:
            writer.writerow(
                [
                    f"{s.window_start_s:g}", f"{s.window_seconds:g}",
                    *(f"{getattr(s, c):.3f}" for c in COLUMNS[2:4]), s.replicas_billed, s.replicas_ready,
                    *(f"{getattr(s, c):.3f}" for c in COLUMNS[6:]),
                    s.cost_replicas.quantize(Decimal("0.000001")), s.cost_overhead.quantize(Decimal("0.000001")),
                    s.cost_api.quantize(Decimal("0.000001")), s.reason,
                ]
            )  # fmt: skip


def plot(spec: CostSpec, results: list[Result], path: Path, title: str) -> None:
    """Demand vs ready capacity vs spill (first result), and cumulative cost of every result."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    main = results[0]
    hours = [s.window_start_s / 3600 for s in main.steps]
    prices = FloatCapacity.of(spec)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 8), sharex=True)
    top.plot(hours, [prices.busy_replicas(s.demand_input_tps, s.demand_output_tps) / prices.utilization
                     for s in main.steps], lw=0.8,
             label="demand (replicas needed at target utilisation)")  # fmt: skip
    top.step(hours, [s.replicas_ready for s in main.steps], where="post", lw=1.0, label="ready replicas")
    top.step(hours, [s.replicas_billed for s in main.steps], where="post", lw=0.8, ls="--", label="billed replicas")
    share = top.twinx()
    share.fill_between(
        hours,
        [
            100 * (s.api_input_tps + s.api_output_tps) / max(1e-9, s.demand_input_tps + s.demand_output_tps)
            for s in main.steps
        ],
        alpha=0.2,
        color="tab:red",
        step="post",
        label="spilled to API (%)",
    )
    share.set_ylabel("spill (%)")
    top.set_ylabel("replicas")
    top.set_title(f"{title}: {main.policy}")
    top.legend(loc="upper left", fontsize=8)
    for result in results:
        running = Decimal(0)
        series = []
        for s in result.steps:
            running += s.cost_replicas + s.cost_overhead + s.cost_api
            series.append(float(running))
        bottom.plot([s.window_start_s / 3600 for s in result.steps], series, label=result.policy)
    bottom.set_ylabel("cumulative $")
    bottom.set_xlabel("hours")
    bottom.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_all(spec: CostSpec, result: Result, out: Path, title: str, optimum: Result | None = None) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    write_csv(result, out / "decisions.csv")
    data = summary(spec, result, optimum)
    (out / "summary.json").write_text(json.dumps(data, indent=2) + "\n")
    if missing("plots") is None:
        plot(spec, [result] if optimum is None else [result, optimum], out / "report.png", title)
    return data
