"""Charts for humans (matplotlib, headless). Imported only when a command is asked to draw."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from costpolicy.breakeven import BreakEven, monthly_cost_curves, plotted_replicas
from costpolicy.money import SECONDS_PER_DAY
from costpolicy.spec import CostSpec


def plot_breakeven(spec: CostSpec, result: BreakEven, path: str | Path) -> None:
    """Monthly cost against daily volume: API, 1..N replicas (until each is full) and the cheapest mix."""
    top_tps = result.replica_capacity_tokens_per_second * spec.replicas.max * Decimal("1.15")
    if result.entry is not None:
        top_tps = max(top_tps, result.entry.tokens_per_second * 2)
    volumes = [top_tps * SECONDS_PER_DAY * i / 200 for i in range(201)]
    curves = monthly_cost_curves(spec, result.input_tokens_per_call, result.output_tokens_per_call, volumes)
    x = [float(v) / 1e6 for v in volumes]
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    ax.plot(x, [float(v or 0) for v in curves["api"]], color="tab:red", lw=2, label="API only")
    cmap = plt.get_cmap("Blues")
    shown = plotted_replicas(spec)
    for k in shown:
        ys = curves[f"replicas={k}"]
        pts = [(xi, float(y)) for xi, y in zip(x, ys, strict=True) if y is not None]
        if pts:
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                color=cmap(0.35 + 0.6 * k / spec.replicas.max),
                lw=1,
                label=f"{k} replica{'s' if k > 1 else ''}" if k in (shown[0], shown[-1]) else None,
            )
    ax.plot(
        x,
        [float(v or 0) for v in curves["best"]],
        color="black",
        lw=1.5,
        ls="--",
        label="cheapest: replicas + spill",
    )
    if result.entry is not None:
        be = float(result.entry.tokens_per_day) / 1e6
        ax.axvline(be, color="tab:green", ls=":", lw=1.5)
        ax.annotate(
            f"break-even\n{be:,.1f}M tok/day",
            xy=(be, 0),
            xytext=(6, 30),
            textcoords="offset points",
            color="tab:green",
        )
    ax.set_xlabel("daily volume (million tokens/day)")
    ax.set_ylabel("monthly cost ($)")
    ax.set_title(
        f"self-hosted vs API at {int(result.input_tokens_per_call)}:{int(result.output_tokens_per_call)} "
        "input:output tokens per call"
    )
    fleet_top = max(float(v or 0) for v in curves[f"replicas={spec.replicas.max}"])
    ax.set_ylim(bottom=0, top=fleet_top * 1.6 if fleet_top > 0 else None)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
