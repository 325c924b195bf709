"""The cost benchmark: every policy over the shared traces, for each example manifest, at volumes below, around and
well above its break-even; RESULTS.md plus one plot per case."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from costpolicy.breakeven import break_even
from costpolicy.spec import CostSpec
from crossover.extras import missing
from crossover.manifest import load_inference_deployment
from crossover.sim.model import Demands, Result, SimConfig
from crossover.sim.optimum import continuing_optimum
from crossover.sim.outputs import plot
from crossover.sim.policies import POLICIES, run_policy
from crossover.sim.traces import Trace, load_trace

Progress = Callable[[str], None]
VOLUMES = (Decimal("0.5"), Decimal(2), Decimal(8))  # multiples of the first replica's break-even
NON_CLAIRVOYANT = ("cost-aware", "api-only", "static-peak", "hpa-util", "hpa-util-spill")
GOAL_RATIO = Decimal("1.05")  # issue 15's goal (it was 1.10)

# Why a goal case misses, as the last investigation found it (issue 15). RESULTS.md prints an entry only while its
# case misses; a case that misses without one is listed as not explained. Text, not arithmetic: nothing here moves a
# number.
WHY_MISSED: dict[tuple[str, str, Decimal], str] = {
    ("llama-70b-2xh100-vs-large", "azure_llm_2023_conv", Decimal(8)): (
        "cost-aware keeps 2 replicas all hour, as static-peak does and as the optimum does when the trace goes on. "
        "The optimum drops the second for the last 12 minutes (from minute 46.5), where demand hovers between 0.85 "
        "and 1.12 replicas' work, about the second replica's break-even (1.11 at this mix), because nothing follows "
        "the end. When the hour follows itself (its first 20 minutes average 1.21 replicas' work), a restart of the "
        "second replica over its 600 s cold start costs more than those 12 minutes save, and the optimum keeps both. "
        "Cost-aware's raw stage asks for 1 replica from minute 48.5, and the example's "
        "`scaleDownStabilizationSeconds: 1200` holds the second past the trace's end; shorter windows pay for "
        "restarts (600 s: 1.269×, 300 s: 1.240×, 0: 1.260×)."
    ),
}


@dataclass(frozen=True)
class Case:
    manifest: str
    trace: str
    multiple: Decimal
    mean_tps: float
    results: dict[str, Result]
    spec: CostSpec
    # the optimum that plans for the trace going on (optimum.continuing_optimum); run for missed goals only
    continuing: Result | None = None

    def ratio(self, policy: str) -> Decimal:
        return self.results[policy].effective(self.spec) / self.results["offline-optimum"].effective(self.spec)

    def continuing_ratio(self) -> Decimal | None:
        """Cost-aware against the continuing optimum; None when it was not run."""
        if self.continuing is None:
            return None
        return self.results["cost-aware"].effective(self.spec) / self.continuing.effective(self.spec)

    @property
    def trivial(self) -> str | None:
        """'all API' or 'all self-hosted' when the optimum itself is that simple; None otherwise."""
        optimum = self.results["offline-optimum"]
        demand = optimum.tokens("demand") or 1.0
        api_share = optimum.tokens("api") / demand
        if api_share >= 0.99:
            return "all API"
        ready = {s.replicas_ready for s in optimum.steps}
        if api_share <= 0.01 and len(ready) == 1:
            return "all self-hosted"
        return None

    @property
    def goal_met(self) -> bool:
        aware = self.results["cost-aware"].effective(self.spec)
        others = [self.results[p].effective(self.spec) for p in NON_CLAIRVOYANT if p != "cost-aware"]
        return (
            self.ratio("cost-aware") <= GOAL_RATIO
            and all(aware <= other for other in others)
            and self.results["cost-aware"].late_fraction < 0.001
        )

    @property
    def missed(self) -> bool:
        """A case the goal counts (its optimum is not trivial) where cost-aware misses it."""
        return self.trivial is None and not self.goal_met


def goal_tally(cases: list[Case]) -> tuple[int, int]:
    """How many of the cases the goal counts meet it, and how many it counts."""
    counted = [c for c in cases if c.trivial is None]
    return sum(c.goal_met for c in counted), len(counted)


def mix_break_even(spec: CostSpec, trace: Trace) -> float:
    total_in = sum(w.input_tps * w.seconds for w in trace.windows)
    total_out = sum(w.output_tps * w.seconds for w in trace.windows)
    result = break_even(spec, Decimal(f"{total_in:.0f}"), Decimal(f"{total_out:.0f}"))
    if result.entry is None:
        raise ValueError("self-hosting never breaks even at this mix")
    return float(result.entry.tokens_per_second)


def run_bench(manifests: list[Path], traces: list[Path], out: Path, progress: Progress) -> list[Case]:
    out.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []
    if hint := missing("plots"):
        progress(f"no plots: {hint}")
    for manifest in manifests:
        spec = load_inference_deployment(manifest).spec.cost_spec()
        for trace_path in traces:
            trace = load_trace(trace_path)
            entry = mix_break_even(spec, trace)
            for multiple in VOLUMES:
                started = time.monotonic()
                scaled = trace.scaled_to_mean(entry * float(multiple))
                demands = Demands(scaled, SimConfig())
                results = {p: run_policy(p, spec, demands) for p in POLICIES}
                case = Case(manifest.stem, trace_path.stem, multiple, entry * float(multiple), results, spec)
                if case.missed:
                    case = dataclasses.replace(case, continuing=continuing_optimum(spec, demands))
                cases.append(case)
                ordered = [results["cost-aware"], *(results[p] for p in POLICIES if p != "cost-aware")]
                if hint is None:
                    title = f"{manifest.stem} / {trace_path.stem} at {multiple}x break-even"
                    plot(spec, ordered, out / f"{manifest.stem}--{trace_path.stem}--x{multiple}.png", title)
                progress(
                    f"{manifest.stem} / {trace_path.stem} x{multiple}: cost-aware "
                    f"{case.ratio('cost-aware'):.3f}x optimum ({time.monotonic() - started:.0f} s)"
                )
    (out / "RESULTS.md").write_text(render(cases))
    return cases


def render(cases: list[Case]) -> str:
    lines = [
        "# Cost benchmark: cost-aware against reference policies",
        "",
        "Generated by `crossover bench` (see docs/simulator.md). Each case replays a trace, scaled so its mean demand "
        "is a multiple of the manifest's first-replica break-even at the trace's own input/output mix, through every "
        "policy on the same simulated cluster (30 s control loop, 15 s scrape + 120 s rate window of metrics lag, "
        "cold starts billed, 30 min wrapped-around warm-up). Cost is dollars over the trace; **vs opt** is effective "
        "cost (late tokens priced at API rates) over the offline optimum's; late is the share of tokens neither "
        "self-hosted in time nor spilled.",
        "",
    ]
    met, counted = goal_tally(cases)
    lines += [
        f"**Goal** (cost-aware ≤ {GOAL_RATIO}× optimum, cheaper than every other non-clairvoyant policy, < 0.1 % "
        f"late) on the {counted} cases where the optimum is neither trivially all-API nor a constant "
        f"self-hosted fleet: met in {met}.",
        "",
    ]
    missed = [c for c in cases if c.missed]
    if missed:
        lines += ["Where the goal is missed, and why:", ""]
        for c in missed:
            why = WHY_MISSED.get((c.manifest, c.trace, c.multiple), "not explained yet.")
            continuing = c.continuing_ratio()
            going_on = (
                ""
                if continuing is None
                else f"; {continuing:.3f}× the continuing optimum, which plans for the trace going on after its end"
            )
            lines.append(
                f"- {c.manifest} / {c.trace} at {c.multiple}× b/e: cost-aware {c.ratio('cost-aware'):.3f}× the "
                f"optimum (api-only {c.ratio('api-only'):.3f}×, static-peak {c.ratio('static-peak'):.3f}×"
                f"{going_on}): {why}"
            )
        lines.append("")
    lines += [
        "| manifest | trace | volume | mean tok/s | policy | cost | vs opt | late | scale events |",
        "|---|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for case in cases:
        label = f"{case.multiple}× b/e" + (f" ({case.trivial})" if case.trivial else "")
        for policy in POLICIES:
            result = case.results[policy]
            bold = "**" if policy == "cost-aware" else ""
            lines.append(
                f"| {case.manifest} | {case.trace} | {label} | {case.mean_tps:,.0f} | {bold}{policy}{bold} | "
                f"${result.total.quantize(Decimal('0.01')):,} | {case.ratio(policy):.3f} | "
                f"{result.late_fraction:.3%} | {result.scale_events} |"
            )
    lines += ["", "Plots: `<manifest>--<trace>--x<volume>.png` beside this file (top: cost-aware's fleet and spill; "
              "bottom: cumulative cost of every policy).", ""]  # fmt: skip
    return "\n".join(lines)
