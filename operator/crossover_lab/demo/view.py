"""What a replay shows while it runs: a live screen (rich) or a progress line every few seconds (for logs)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

from costpolicy.money import fmt_money
from crossover_lab.demo.replay import ReplayOptions, Run

View = Callable[[Run, float, float], None]


def _screen(run: Run, options: ReplayOptions, elapsed: float, expected: float) -> Any:
    from rich.console import Group
    from rich.panel import Panel
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    last = run.samples[-1] if run.samples else None
    status = last.status if last else {}
    routing = status.get("routing") or {}
    cost = status.get("cost") or {}
    demand = status.get("demand") or {}
    replicas = status.get("replicas") or {}
    k = options.compress
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("trace time", f"{elapsed * float(k) / 3600:5.2f} h of {options.workload.seconds / 3600:g} h (×{k})")
    table.add_row(
        "demand",
        f"{demand.get('inputTokensPerSecond', '?')} in + {demand.get('outputTokensPerSecond', '?')} out tok/s (wall)",
    )
    table.add_row(
        "replicas",
        f"desired {replicas.get('desired', 0)}  ready {replicas.get('ready', 0)}  warming "
        f"{replicas.get('warming', 0)}  pending {replicas.get('unschedulable', 0)}  (pods billed now: "
        f"{last.billed if last else 0})",
    )
    table.add_row("served by the API", str(routing.get("spillPercent", "?")))
    table.add_row(
        "$/Mtok",
        f"self-hosted {cost.get('selfHostedPerMillionTokens', '-')}  API {cost.get('apiPerMillionTokens', '-')}",
    )
    table.add_row("API spend so far", fmt_money(last.spend if last else Decimal(0)))
    failed = run.failed
    table.add_row("requests", f"{len(run.results)}/{len(options.workload.requests)} done, {failed} failed")
    decisions = "\n".join(run.decisions[-8:]) or "(waiting for the first decision)"
    progress = ProgressBar(total=max(expected, 1.0), completed=min(elapsed, expected), width=60)
    title = f"crossover - {options.workload.name}: {elapsed:.0f}/{expected:.0f} s"
    return Group(Panel(Group(progress, table), title=title), Panel(decisions, title="decisions (reason: message)"))


@contextlib.contextmanager
def rich_view(options: ReplayOptions) -> Iterator[View]:
    from rich.console import Console
    from rich.live import Live

    live = Live(console=Console(), refresh_per_second=2, transient=False)
    with live:

        def update(run: Run, elapsed: float, expected: float) -> None:
            live.update(_screen(run, options, elapsed, expected))

        yield update


@contextlib.contextmanager
def progress_printer(options: ReplayOptions, every: float = 10.0) -> Iterator[View]:
    last = [0.0]

    def update(run: Run, elapsed: float, expected: float) -> None:
        if time.monotonic() - last[0] < every:
            return
        last[0] = time.monotonic()
        sample = run.samples[-1] if run.samples else None
        print(
            f"{elapsed:5.0f}/{expected:.0f} s (trace {elapsed * float(options.compress) / 3600:.2f} h)  "
            f"pods {sample.billed if sample else 0} (ready {sample.ready if sample else 0})  "
            f"API {fmt_money(sample.spend if sample else Decimal(0))}  "
            f"requests {len(run.results)}/{len(options.workload.requests)} ({run.failed} failed)",
            flush=True,
        )

    yield update
