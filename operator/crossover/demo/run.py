"""`crossover demo`: the main job on an embedded default, end to end, in a few minutes.

The lab comes up; crossover is installed with its Helm chart, as a user would; a hosted-API emulator stands in for
the provider; the 8B-on-H100 example is applied with time compressed by `k` (rates × k, durations ÷ k, so every
dollar figure is the real one); a real request-level trace is replayed through the router; a live view shows what
crossover decides and what it costs against API-only and a static fleet; a report is written at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import requests
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample as MetricSample

from crossover.api.v1alpha1 import InferenceDeployment
from crossover.contracts import (
    DIRECTION_LABEL,
    GROUP,
    PLURAL,
    ROUTER_API_SPEND,
    ROUTER_PORT,
    ROUTER_TOKENS,
    VERSION,
    Component,
    Direction,
    selector_string,
    total,
)
from crossover.demo import loadgen
from crossover.demo.compression import compress_manifest
from crossover.demo.ledger import Ledger, static_fleet_size
from crossover.lab import control_plane, lifecycle, processes
from crossover.lab.config import LOOPBACK, LabConfig, local_address
from crossover.lab.kube import lab_api_client, plain

log = logging.getLogger(__name__)

NAMESPACE = "crossover-demo"
OPERATOR_NAMESPACE = "crossover-system"
API_EMULATOR = "api-emulator"
API_EMULATOR_PORT = 39100


@dataclass(frozen=True)
class DemoOptions:
    trace: Path
    manifest: Path
    speedup: Decimal
    max_trace_seconds: float | None
    out: Path
    chart: Path
    live: bool = True


@dataclass
class Sample:
    """One second of the demo, for the report."""

    t: float
    demand_tps: float
    ready: int
    warming: int
    billed: int
    spill_percent: float
    crossover: Decimal
    api_only: Decimal
    static: Decimal


@dataclass
class DemoState:
    ledger: Ledger
    total_requests: int
    samples: list[Sample] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)
    results: list[loadgen.RequestResult] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    router_ip: str = ""
    router_tokens: dict[str, int] = field(default_factory=dict)


def _helm(cfg: LabConfig, bins: dict[str, Path], *args: str) -> None:
    command = [str(bins["helm"]), "--kubeconfig", str(cfg.kubeconfig), *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"helm {args[0]} failed: {result.stderr.strip()}")


def install(cfg: LabConfig, bins: dict[str, Path], options: DemoOptions, api: client.ApiClient) -> dict[str, Any]:
    """Operator by Helm, API emulator, provider Secret, compressed InferenceDeployment; returns the manifest."""
    k = options.speedup
    interval = max(Decimal(1), Decimal(30) / k)
    rate_window = max(6, int(Decimal(120) / k))
    _helm(
        cfg, bins,
        "upgrade", "--install", "crossover", str(options.chart),
        "--namespace", OPERATOR_NAMESPACE, "--create-namespace",
        "--set", f"prometheus.url={cfg.prometheus_url}",
        "--set", f"prometheus.rateWindowSeconds={rate_window}",
        "--set", f"reconcileIntervalSeconds={interval}",
        "--set", "router.replicas=1",
        "--wait", "--timeout", "120s",
    )  # fmt: skip
    key = secrets.token_urlsafe(24)
    if processes.pid_of(cfg.state, API_EMULATOR) is not None:
        processes.stop(cfg.state, API_EMULATOR)
    raw: dict[str, Any] = yaml.safe_load(options.manifest.read_text())
    processes.start(
        cfg.state,
        API_EMULATOR,
        [
            sys.executable, "-m", "crossover.cli", "emulate", "api",
            "--host", LOOPBACK, "--port", str(API_EMULATOR_PORT), "--model", raw["spec"]["api"]["model"],
        ],
        env={**os.environ, "CROSSOVER_EMULATOR_API_KEY": key},
    )  # fmt: skip
    core = client.CoreV1Api(api)
    _fresh_namespace(core)
    ref = raw["spec"]["api"]["credentialsSecretRef"]
    secret = {"metadata": {"name": ref["name"]}, "stringData": {ref["key"]: key}}
    with contextlib.suppress(ApiException):
        core.delete_namespaced_secret(ref["name"], NAMESPACE)
    core.create_namespaced_secret(NAMESPACE, cast(Any, secret))
    manifest = compress_manifest(raw, k)
    manifest["metadata"]["namespace"] = NAMESPACE
    manifest["spec"]["api"]["baseURL"] = f"http://{LOOPBACK}:{API_EMULATOR_PORT}/v1"
    custom = client.CustomObjectsApi(api)
    name = manifest["metadata"]["name"]
    with contextlib.suppress(ApiException):
        custom.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
        _wait(lambda: not client.AppsV1Api(api).list_namespaced_deployment(NAMESPACE).items, 60, "old demo to go")
    custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, manifest)
    return manifest


def _fresh_namespace(core: client.CoreV1Api) -> None:
    """The demo's namespace, waiting out the deletion a previous run started."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            found = plain(core.api_client, core.read_namespace(NAMESPACE))
        except ApiException as error:
            if error.status != 404:
                raise
            core.create_namespace(cast(Any, {"metadata": {"name": NAMESPACE}}))
            return
        if (found.get("status") or {}).get("phase") != "Terminating":
            return
        time.sleep(1)
    raise RuntimeError(f"namespace {NAMESPACE} is still terminating")


def _wait(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.25)
    raise RuntimeError(f"timed out waiting for {what}")


def _pods(api: client.ApiClient, selector: str) -> list[Any]:
    listing = client.CoreV1Api(api).list_namespaced_pod(NAMESPACE, label_selector=selector)
    return list(plain(api, listing)["items"])


def _ready(pod: Any) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or [])


def router_ip(api: client.ApiClient, name: str) -> str:
    selector = selector_string(name, Component.ROUTER)

    def ready_ip() -> str | None:
        return next(
            (
                local_address(p["status"]["podIP"])
                for p in _pods(api, selector)
                if _ready(p) and p["status"].get("podIP")
            ),
            None,
        )

    return str(_wait(ready_ip, 120, "the router pod to be Ready"))


def _router_samples(ip: str, counter: str, timeout: float) -> list[MetricSample] | None:
    """Samples of one of the router's counters, parsed from its /metrics; None when the router does not answer."""
    try:
        text = requests.get(f"http://{ip}:{ROUTER_PORT}/metrics", timeout=timeout).text
    except requests.RequestException:
        return None
    name = total(counter)
    return [s for family in text_string_to_metric_families(text) for s in family.samples if s.name == name]


def _router_tokens(ip: str) -> dict[str, int]:
    """Tokens the router counted (from upstream usage), by direction, over every backend and outcome."""
    totals = {Direction.INPUT.value: 0, Direction.OUTPUT.value: 0}
    for sample in _router_samples(ip, ROUTER_TOKENS, timeout=5) or []:
        direction = sample.labels[DIRECTION_LABEL]
        totals[direction] = totals.get(direction, 0) + round(sample.value)
    return totals


def _router_api_spend(ip: str) -> Decimal | None:
    """The router's own API spend counter, read straight from its /metrics."""
    samples = _router_samples(ip, ROUTER_API_SPEND, timeout=2)
    if samples is None:
        return None
    return sum((Decimal(repr(s.value)) for s in samples), Decimal(0))


def _engine_pods(api: client.ApiClient, name: str) -> tuple[int, int, int]:
    """(ready, warming, pending) engine pods: ready and warming ones are billed, pending ones are not."""
    ready = warming = pending = 0
    for pod in _pods(api, selector_string(name, Component.ENGINE)):
        if pod["metadata"].get("deletionTimestamp"):
            continue
        if pod["status"].get("phase") == "Pending":
            pending += 1
        elif _ready(pod):
            ready += 1
        else:
            warming += 1
    return ready, warming, pending


async def _monitor(
    api: client.ApiClient, name: str, state: DemoState, stop: asyncio.Event, started: float, period: float = 1.0
) -> None:
    custom = client.CustomObjectsApi(api)
    last = time.monotonic()
    last_decision = ""
    while not stop.is_set():
        await asyncio.sleep(period)
        now = time.monotonic()
        ready, warming, _pending = await asyncio.to_thread(_engine_pods, api, name)
        state.ledger.advance(Decimal(str(round(now - last, 3))), ready + warming)
        last = now
        spend = await asyncio.to_thread(_router_api_spend, state.router_ip)
        if spend is not None:
            state.ledger.set_api_spend(spend)
        with contextlib.suppress(ApiException):
            resource: Any = await asyncio.to_thread(
                custom.get_namespaced_custom_object, GROUP, VERSION, NAMESPACE, PLURAL, name
            )
            state.status = dict(resource.get("status") or {})
        decision = state.status.get("lastDecision") or {}
        stamp = f"{decision.get('time')}{decision.get('reason')}"
        if decision and stamp != last_decision and decision.get("action") != "Hold":
            last_decision = stamp
            state.decisions.append(f"t={now - started:5.0f}s {decision.get('reason')}: {decision.get('message')}")
        demand = state.status.get("demand") or {}
        demand_tps = float(
            Decimal(str(demand.get("inputTokensPerSecond", 0))) + Decimal(str(demand.get("outputTokensPerSecond", 0)))
        )
        routing = state.status.get("routing") or {}
        state.samples.append(
            Sample(
                t=now - started,
                demand_tps=demand_tps,
                ready=ready,
                warming=warming,
                billed=ready + warming,
                spill_percent=float(Decimal(str(routing.get("spillFraction", "0")))) * 100,
                crossover=state.ledger.crossover_total,
                api_only=state.ledger.api_only,
                static=state.ledger.static_total,
            )
        )


def _money(value: Decimal) -> str:
    return f"${value.quantize(Decimal('0.01')):,}"


def _versus(ours: Decimal, theirs: Decimal) -> str:
    """'62.1 % less than' or '8.0 % more than'."""
    if theirs <= 0:
        return "compared with"
    change = (theirs - ours) / theirs * 100
    return f"{abs(change).quantize(Decimal('0.1'))} % {'less' if change >= 0 else 'more'} than"


def _view(state: DemoState, options: DemoOptions, elapsed: float, expected: float) -> Any:
    """The live screen: a progress line, the fleet and routing, the three cost totals, recent decisions."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    status = state.status
    routing = status.get("routing") or {}
    cost = status.get("cost") or {}
    demand = status.get("demand") or {}
    replicas = status.get("replicas") or {}
    ledger = state.ledger
    done = len(state.results)
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row(
        "demand",
        f"{demand.get('inputTokensPerSecond', '?')} in + {demand.get('outputTokensPerSecond', '?')} out tok/s "
        f"(wall time, ×{options.speedup})",
    )
    table.add_row(
        "replicas",
        f"desired {replicas.get('desired', 0)}  ready {replicas.get('ready', 0)}  warming {replicas.get('warming', 0)}"
        f"  pending {replicas.get('unschedulable', 0)}",
    )
    table.add_row("spill to API", str(routing.get("spillPercent", "?")))
    table.add_row(
        "$/Mtok",
        f"self-hosted {cost.get('selfHostedPerMillionTokens', '-')}  API {cost.get('apiPerMillionTokens', '-')}",
    )
    table.add_row(
        "spend: crossover",
        f"{_money(ledger.crossover_total)}  (replicas {_money(ledger.replicas)}, "
        f"overhead {_money(ledger.overhead)}, API {_money(ledger.api)})",
    )
    table.add_row("spend: API only", _money(ledger.api_only))
    table.add_row(f"spend: static ×{ledger.static_replicas}", _money(ledger.static_total))
    table.add_row("requests", f"{done}/{state.total_requests} done, {sum(not r.ok for r in state.results)} failed")
    decisions = "\n".join(state.decisions[-8:]) or "(waiting for the first decision)"
    progress = ProgressBar(total=max(expected, 1.0), completed=min(elapsed, expected), width=60)
    title = f"crossover demo - {options.trace.name}, time ×{options.speedup}: {elapsed:.0f}/{expected:.0f} s"
    return Group(Panel(Group(progress, table), title=title), Panel(decisions, title="decisions (reason: message)"))


def _write_report(state: DemoState, options: DemoOptions, manifest: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    options.out.mkdir(parents=True, exist_ok=True)
    ledger = state.ledger
    samples = state.samples
    t = [s.t for s in samples]
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(10, 10), sharex=True)
    top.plot(t, [s.demand_tps for s in samples], label="demand seen by crossover (tok/s)")
    top.set_ylabel("tokens/s (wall)")
    top.legend(loc="upper left")
    middle.step(t, [s.ready for s in samples], where="post", label="ready replicas")
    middle.step(t, [s.billed for s in samples], where="post", label="billed (ready + warming)", linestyle="--")
    middle.set_ylabel("replicas")
    spill = middle.twinx()
    spill.plot(t, [s.spill_percent for s in samples], color="tab:red", alpha=0.6, label="spill %")
    spill.set_ylabel("spill to API (%)")
    middle.legend(loc="upper left")
    spill.legend(loc="upper right")
    bottom.plot(t, [float(s.crossover) for s in samples], label="crossover")
    bottom.plot(t, [float(s.api_only) for s in samples], label="API only")
    bottom.plot(t, [float(s.static) for s in samples], label=f"static fleet ×{ledger.static_replicas}")
    bottom.set_ylabel("cumulative $ (real)")
    bottom.set_xlabel(f"wall seconds (time ×{options.speedup})")
    bottom.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(options.out / "report.png", dpi=110)
    plt.close(fig)

    failed = sum(not r.ok for r in state.results)
    tokens_in = sum(r.usage_input or 0 for r in state.results)
    tokens_out = sum(r.usage_output or 0 for r in state.results)
    line = (
        f"crossover spent {_money(ledger.crossover_total)}: {_versus(ledger.crossover_total, ledger.api_only)} "
        f"API-only ({_money(ledger.api_only)}), {_versus(ledger.crossover_total, ledger.static_total)} a static "
        f"fleet of {ledger.static_replicas} ({_money(ledger.static_total)}); "
        f"{failed} of {len(state.results)} requests failed"
    )
    spec = manifest["spec"]
    lines = [
        "# crossover demo report",
        "",
        f"Trace `{options.trace.name}` replayed at ×{options.speedup} through the router; manifest "
        f"`{options.manifest.name}` compressed by the same factor (capacities and replica price ×{options.speedup}, "
        f"cold start {spec['engine']['coldStartSeconds']} s, windows "
        f"{spec['policy']['scaleUpStabilizationSeconds']}/{spec['policy']['scaleDownStabilizationSeconds']} s). "
        "Dollar figures are real-time dollars for the replayed period.",
        "",
        f"**{line}.**",
        "",
        "| | total | replicas | fixed overhead | API |",
        "|---|---:|---:|---:|---:|",
        f"| crossover | {_money(ledger.crossover_total)} | {_money(ledger.replicas)} | {_money(ledger.overhead)} | "
        f"{_money(ledger.api)} |",
        f"| API only | {_money(ledger.api_only)} | - | - | {_money(ledger.api_only)} |",
        f"| static fleet ×{ledger.static_replicas} | {_money(ledger.static_total)} | {_money(ledger.static)} | "
        f"{_money(ledger.static_overhead)} | - |",
        "",
        f"Requests: {len(state.results)} sent, {failed} failed; tokens served (usage reported to the client): "
        f"{tokens_in:,} in, {tokens_out:,} out; counted by the router: "
        f"{state.router_tokens.get('input', 0):,} in, {state.router_tokens.get('output', 0):,} out.",
        "",
        "## Decisions",
        "",
        *[f"- {d}" for d in state.decisions],
        "",
        "![demand, capacity, spill and cost](report.png)",
        "",
    ]
    (options.out / "report.md").write_text("\n".join(lines))
    return line


def _windows(trace: list[loadgen.TraceRequest], speedup: Decimal, seconds: int = 60) -> list[tuple[Decimal, Decimal]]:
    """Per-minute (trace time) input and output tokens per wall second: the load the static fleet is sized for."""
    buckets: dict[int, list[int]] = {}
    for request in trace:
        bucket = buckets.setdefault(int(request.at // seconds), [0, 0])
        bucket[0] += request.input_tokens
        bucket[1] += request.output_tokens
    return [(Decimal(i) * speedup / seconds, Decimal(o) * speedup / seconds) for i, o in buckets.values()]


def _record(state: DemoState, result: loadgen.RequestResult) -> None:
    state.results.append(result)
    if result.ok and result.usage_input is not None and result.usage_output is not None:
        state.ledger.served(result.usage_input, result.usage_output)


async def _replay_with_view(
    api: client.ApiClient,
    name: str,
    model: str,
    state: DemoState,
    options: DemoOptions,
    trace: list[loadgen.TraceRequest],
) -> None:
    from rich.console import Console
    from rich.live import Live

    stop = asyncio.Event()
    started = time.monotonic()
    expected = (trace[-1].at if trace else 0.0) / float(options.speedup)
    monitor = asyncio.create_task(_monitor(api, name, state, stop, started))
    replay = asyncio.create_task(
        loadgen.replay(
            trace,
            f"http://{state.router_ip}:{ROUTER_PORT}/v1",
            model,
            float(options.speedup),
            lambda r: _record(state, r),
        )
    )
    console = Console()
    try:
        if options.live:
            with Live(_view(state, options, 0, expected), console=console, refresh_per_second=2) as live:
                while not replay.done():
                    await asyncio.sleep(0.5)
                    live.update(_view(state, options, time.monotonic() - started, expected))
        else:
            while not replay.done():
                await asyncio.sleep(5)
                console.print(
                    f"{time.monotonic() - started:5.0f}s  done {len(state.results)}/{state.total_requests}  "
                    f"crossover {_money(state.ledger.crossover_total)}  API-only {_money(state.ledger.api_only)}"
                )
        await replay
        state.router_tokens = await asyncio.to_thread(_router_tokens, state.router_ip)
    finally:
        stop.set()
        replay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await monitor


def run(options: DemoOptions) -> int:
    cfg = LabConfig.from_env()
    was_running = all(lifecycle.status(cfg).values()) and control_plane.apiserver_reachable(cfg)
    print("bringing up the lab (the first run builds the control plane: about 10 minutes, once)...", flush=True)
    info = lifecycle.up(cfg)
    print(f"lab ready in {info.seconds:.0f} s; KUBECONFIG={info.kubeconfig}", flush=True)
    api = lab_api_client(cfg.kubeconfig)
    try:
        manifest = install(cfg, info.bins, options, api)
        spec = InferenceDeployment.model_validate(manifest).spec
        name = manifest["metadata"]["name"]
        trace = loadgen.read_azure_trace(options.trace, options.max_trace_seconds)
        windows = _windows(trace, options.speedup)
        ledger = Ledger(
            spec=spec.cost_spec(),
            static_replicas=static_fleet_size(
                windows, spec.engine.capacity, spec.policy.target_utilization, spec.replicas.max
            ),
        )
        state = DemoState(ledger=ledger, total_requests=len(trace))
        print(
            f"replaying {len(trace)} requests of {options.trace.name} at ×{options.speedup}: cold start "
            f"{spec.engine.cold_start_seconds} s, stabilisation up/down {spec.policy.scale_up_stabilization_seconds}/"
            f"{spec.policy.scale_down_stabilization_seconds} s, "
            f"reconcile every {max(1.0, 30 / float(options.speedup)):.1f} s",
            flush=True,
        )
        state.router_ip = router_ip(api, name)
        model = spec.model.served_name or spec.model.name
        asyncio.run(_replay_with_view(api, name, model, state, options, trace))
        line = _write_report(state, options, manifest)
        print(line)
        print(f"report: {options.out / 'report.md'} and {options.out / 'report.png'}")
        return 0 if all(r.ok for r in state.results) else 1
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        if was_running:
            processes.stop(cfg.state, API_EMULATOR)
            with contextlib.suppress(Exception):
                _helm(cfg, info.bins, "uninstall", "crossover", "--namespace", OPERATOR_NAMESPACE, "--wait")
            with contextlib.suppress(ApiException):
                client.CoreV1Api(api).delete_namespace(NAMESPACE)
        else:
            lifecycle.down(cfg)
