"""`crossover replay` (and the demo, which is a replay with defaults): a trace slice through the real system.

The lab comes up (if it is not running); crossover is installed with its Helm chart; a hosted-API emulator stands in
for the provider (the manifest's base URL and Secret are replaced by the emulator's); the manifest is applied with
time compressed by `k` (compression.py); the slice is sent, open loop, through the InferenceDeployment's router.
The bill is then measured from cluster facts (billing.py), and the simulator and the offline optimum run on the same
slice, with the same compressed spec and the lab's own control-loop timing (reconcile interval, scrape interval and
rate window), so live and simulated differ only where the model of the system is wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import logging
import os
import secrets
import socket
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

from costpolicy.money import fmt_money, money_string
from costpolicy.pricing import FloatCapacity, api_bill, overhead_per_hour, replica_cost_per_hour
from costpolicy.spec import CostSpec
from crossover.api.v1alpha1 import InferenceDeployment
from crossover.contracts import (
    API_CREDENTIALS_LABEL,
    BACKEND_LABEL,
    DIRECTION_LABEL,
    GROUP,
    OUTCOME_LABEL,
    PLURAL,
    ROUTER_API_SPEND,
    ROUTER_PORT,
    ROUTER_TOKENS,
    VERSION,
    Backend,
    Component,
    Direction,
    selector_string,
    total,
)
from crossover.contracts import (
    Outcome as RequestOutcome,
)
from crossover.sim.model import Demands, Result, SimConfig
from crossover.sim.outputs import COLUMNS
from crossover.sim.policies import run_policy
from crossover_lab import control_plane, lifecycle, processes
from crossover_lab.config import LOOPBACK, LabConfig, local_address
from crossover_lab.demo import loadgen
from crossover_lab.demo.billing import Bill, Lifetime, PodClock, bill, count_at, replica_seconds
from crossover_lab.demo.compression import compress_manifest
from crossover_lab.demo.workload import Workload
from crossover_lab.kube import lab_api_client, plain

log = logging.getLogger(__name__)

NAMESPACE = "crossover-demo"
OPERATOR_NAMESPACE = "crossover-system"
API_EMULATOR = "api-emulator"
DIFFERENCE_TO_EXPLAIN = Decimal("0.10")  # live vs simulated beyond this is a finding (docs/demo.md)


@dataclass(frozen=True)
class ReplayOptions:
    workload: Workload
    manifest: Path
    compress: Decimal
    out: Path
    chart: Path
    live: bool = True


@dataclass(frozen=True)
class Timing:
    """The control loop's time constants in wall seconds, as installed; the simulator is given the same."""

    reconcile_s: float
    rate_window_s: int
    scrape_s: int

    @classmethod
    def for_compression(cls, k: Decimal, scrape_s: int) -> Timing:
        return cls(float(max(Decimal(1), Decimal(30) / k)), max(6, int(Decimal(120) / k)), scrape_s)


@dataclass
class Sample:
    """One look at the system (about once a wall second)."""

    t: float  # wall seconds since the replay started
    tokens: dict[tuple[str, str], int]  # (direction, backend) -> tokens the router counted, outcome ok
    spend: Decimal  # the router's API spend counter
    status: dict[str, Any]
    billed: int
    ready: int


@dataclass
class Run:
    """Everything one replay observed."""

    samples: list[Sample] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)
    results: list[loadgen.RequestResult] = field(default_factory=list)
    lifetimes: list[Lifetime] = field(default_factory=list)
    started: float = 0.0  # monotonic
    router_ip: str = ""
    sent_tokens: tuple[int, int] = (0, 0)

    @property
    def failed(self) -> int:
        return sum(not r.ok for r in self.results)


@dataclass(frozen=True)
class Outcome:
    """The ledger: live and simulated dollars for the uncompressed slice."""

    live: Bill
    simulated: Result
    optimum: Result
    api_only: Decimal
    static_peak: Result
    requests: int
    failed: int
    trace_hours: float
    compress: Decimal
    engine_warmup_s: float | None = None  # measured, trace seconds

    def ledger(self) -> dict[str, Any]:
        return {
            "liveDollars": money_string(self.live.total),
            "live": {
                "replicas": money_string(self.live.replicas),
                "overhead": money_string(self.live.overhead),
                "api": money_string(self.live.api),
            },
            "simulatedDollars": money_string(self.simulated.total),
            "optimumDollars": money_string(self.optimum.total),
            "apiOnlyDollars": money_string(self.api_only),
            "staticPeakDollars": money_string(self.static_peak.total),
            "staticPeakReplicas": self.static_peak.steps[0].replicas_billed if self.static_peak.steps else 0,
            "liveVsSimulated": str(self.live_vs_simulated.quantize(Decimal("0.001"))),
            "requests": self.requests,
            "failedRequests": self.failed,
            "traceHours": round(self.trace_hours, 4),
            "engineWarmupSeconds": None if self.engine_warmup_s is None else round(self.engine_warmup_s, 1),
            "compression": str(self.compress),
        }

    @property
    def live_vs_simulated(self) -> Decimal:
        return self.live.total / self.simulated.total if self.simulated.total > 0 else Decimal(0)


# ---- the lab side ------------------------------------------------------------------------------------------------


def _helm(cfg: LabConfig, bins: dict[str, Path], *args: str) -> None:
    command = [str(bins["helm"]), "--kubeconfig", str(cfg.kubeconfig), *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"helm {args[0]} failed: {result.stderr.strip()}")


def install(
    cfg: LabConfig, bins: dict[str, Path], manifest_path: Path, k: Decimal, timing: Timing, chart: Path,
    api: client.ApiClient,
) -> dict[str, Any]:  # fmt: skip
    """Operator by Helm, API emulator, provider Secret, compressed InferenceDeployment; returns the manifest."""
    _helm(
        cfg, bins,
        "upgrade", "--install", "crossover", str(chart),
        "--namespace", OPERATOR_NAMESPACE, "--create-namespace",
        "--set", f"prometheus.url={cfg.prometheus_url}",
        # numbers as JSON: `--set` keeps 2.5 a string, which the chart's values schema refuses
        "--set-json", f"prometheus.rateWindowSeconds={timing.rate_window_s}",
        "--set-json", f"reconcileIntervalSeconds={Decimal(str(timing.reconcile_s)).normalize():f}",
        "--set", "router.replicas=1",
        "--wait", "--timeout", "120s",
    )  # fmt: skip
    key = secrets.token_urlsafe(24)
    if processes.pid_of(cfg.state, API_EMULATOR) is not None:
        processes.stop(cfg.state, API_EMULATOR)
    raw: dict[str, Any] = yaml.safe_load(manifest_path.read_text())
    port = _free_port()  # not a fixed one: a provider emulator someone else left running must not answer for ours
    processes.start(
        cfg.state,
        API_EMULATOR,
        [
            sys.executable, "-m", "crossover.cli", "emulate", "api",
            "--host", LOOPBACK, "--port", str(port), "--model", raw["spec"]["api"]["model"],
        ],
        env={**os.environ, "CROSSOVER_EMULATOR_API_KEY": key},
    )  # fmt: skip
    _wait(lambda: _answers(f"http://{LOOPBACK}:{port}/v1/models", key), 30, "the hosted-API emulator to answer")
    core = client.CoreV1Api(api)
    _fresh_namespace(core)
    ref = raw["spec"]["api"]["credentialsSecretRef"]
    secret = {
        "metadata": {"name": ref["name"], "labels": {API_CREDENTIALS_LABEL: "true"}},  # opted in for routers
        "stringData": {ref["key"]: key},
    }
    with contextlib.suppress(ApiException):
        core.delete_namespaced_secret(ref["name"], NAMESPACE)
    core.create_namespaced_secret(NAMESPACE, cast(Any, secret))
    manifest = compress_manifest(raw, k)
    manifest["metadata"]["namespace"] = NAMESPACE
    manifest["spec"]["api"]["baseURL"] = f"http://{LOOPBACK}:{port}/v1"
    custom = client.CustomObjectsApi(api)
    name = manifest["metadata"]["name"]
    with contextlib.suppress(ApiException):
        custom.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
        _wait(lambda: not client.AppsV1Api(api).list_namespaced_deployment(NAMESPACE).items, 60, "old replay to go")
    custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, manifest)
    return manifest


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def _answers(url: str, key: str) -> bool:
    try:
        return requests.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _fresh_namespace(core: client.CoreV1Api) -> None:
    """The replay's namespace, waiting out the deletion a previous run started."""
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


def _ready(pod: Any) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or [])


def router_ip(api: client.ApiClient, name: str) -> str:
    selector = selector_string(name, Component.ROUTER)

    def ready_ip() -> str | None:
        listing = plain(api, client.CoreV1Api(api).list_namespaced_pod(NAMESPACE, label_selector=selector))
        return next(
            (local_address(p["status"]["podIP"]) for p in listing["items"] if _ready(p) and p["status"].get("podIP")),
            None,
        )

    return str(_wait(ready_ip, 120, "the router pod to be Ready"))


def router_counters(ip: str) -> tuple[dict[tuple[str, str], int], Decimal] | None:
    """Tokens the router counted from upstream usage (outcome ok) by (direction, backend), and its API spend."""
    try:
        text = requests.get(f"http://{ip}:{ROUTER_PORT}/metrics", timeout=2).text
    except requests.RequestException:
        return None
    tokens: dict[tuple[str, str], int] = {}
    spend = Decimal(0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == total(ROUTER_TOKENS) and sample.labels.get(OUTCOME_LABEL) == RequestOutcome.OK:
                key = (sample.labels[DIRECTION_LABEL], sample.labels[BACKEND_LABEL])
                tokens[key] = tokens.get(key, 0) + round(sample.value)
            elif sample.name == total(ROUTER_API_SPEND):
                spend += Decimal(repr(sample.value))
    return tokens, spend


async def _monitor(api: client.ApiClient, name: str, run: Run, clock: PodClock, stop: asyncio.Event) -> None:
    custom = client.CustomObjectsApi(api)
    last_decision = ""
    status: dict[str, Any] = {}
    counters: tuple[dict[tuple[str, str], int], Decimal] = ({}, Decimal(0))
    while not stop.is_set():
        now = time.monotonic()
        found = await asyncio.to_thread(router_counters, run.router_ip)
        counters = found or counters
        with contextlib.suppress(ApiException):
            resource: Any = await asyncio.to_thread(
                custom.get_namespaced_custom_object, GROUP, VERSION, NAMESPACE, PLURAL, name
            )
            status = dict(resource.get("status") or {})
        decision = status.get("lastDecision") or {}
        stamp = f"{decision.get('time')}{decision.get('reason')}"
        if decision and stamp != last_decision and decision.get("action") != "Hold":
            last_decision = stamp
            run.decisions.append(f"t={now - run.started:5.0f}s {decision.get('reason')}: {decision.get('message')}")
        lifetimes = clock.lifetimes()
        run.samples.append(
            Sample(
                now - run.started, counters[0], counters[1], status, count_at(lifetimes, now),
                count_at(lifetimes, now, ready_only=True),
            )
        )  # fmt: skip
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=max(0.05, 1.0 - (time.monotonic() - now)))


async def _drive(
    api: client.ApiClient, name: str, model: str, run: Run, options: ReplayOptions, clock: PodClock, view: Any
) -> None:
    stop = asyncio.Event()
    k = float(options.compress)
    run.started = time.monotonic()
    monitor = asyncio.create_task(_monitor(api, name, run, clock, stop))
    replay = asyncio.create_task(
        loadgen.replay(
            list(options.workload.requests), f"http://{run.router_ip}:{ROUTER_PORT}/v1", model, k, run.results.append
        )
    )
    try:
        end = options.workload.seconds / k
        while not replay.done() or time.monotonic() - run.started < end:
            await asyncio.sleep(0.5)
            if view is not None:
                view(run, time.monotonic() - run.started, end)
        await replay
        found = await asyncio.to_thread(router_counters, run.router_ip)
        if found is not None:
            run.samples.append(
                Sample(time.monotonic() - run.started, found[0], found[1], {}, 0, 0)
            )  # the final counters: every request has completed
    finally:
        stop.set()
        replay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await monitor


# ---- the measurement ---------------------------------------------------------------------------------------------


def simulate(
    spec: CostSpec, workload: Workload, k: Decimal, timing: Timing, engine_warmup_s: float | None = None
) -> dict[str, Result]:
    """The simulator on the same slice, in wall time with the compressed spec and the installed timing (dollars are
    real: see compression.py); no warm-up, as the live run starts from an empty cluster too. `engine_warmup_s`: the
    engines' measured time from scheduled to Ready (the lab's hardware, not the manifest's coldStartSeconds)."""
    config = SimConfig(
        control_interval_s=timing.reconcile_s,
        scrape_interval_s=float(timing.scrape_s),
        rate_window_s=float(timing.rate_window_s),
        warmup_s=0.0,
        engine_cold_start_s=engine_warmup_s,
    )
    demands = Demands(workload.compressed(float(k)), config)
    return {p: run_policy(p, spec, demands) for p in ("cost-aware", "api-only", "static-peak", "offline-optimum")}


def api_only_dollars(spec: CostSpec, run: Run) -> Decimal:
    """Every token the router counted as served, at API prices."""
    final = run.samples[-1].tokens if run.samples else {}
    tokens_in = sum(v for (direction, _), v in final.items() if direction == Direction.INPUT)
    tokens_out = sum(v for (direction, _), v in final.items() if direction == Direction.OUTPUT)
    return api_bill(spec.api_pricing, Decimal(tokens_in), Decimal(tokens_out))


def engine_warmup(lifetimes: list[Lifetime]) -> float | None:
    """Mean wall seconds from scheduled to Ready over the engine pods that turned ready; None if none did."""
    warmups = [p.ready - p.scheduled for p in lifetimes if p.ready is not None]
    return sum(warmups) / len(warmups) if warmups else None


def measure(spec: CostSpec, run: Run, options: ReplayOptions, timing: Timing) -> Outcome:
    k = options.compress
    end = run.started + options.workload.seconds / float(k)
    spend = run.samples[-1].spend if run.samples else Decimal(0)
    live = bill(run.lifetimes, run.started, end, replica_cost_per_hour(spec), overhead_per_hour(spec), spend)
    warmup = engine_warmup(run.lifetimes)
    simulated = simulate(spec, options.workload, k, timing, warmup)
    return Outcome(
        live=live,
        simulated=simulated["cost-aware"],
        optimum=simulated["offline-optimum"],
        api_only=api_only_dollars(spec, run),
        static_peak=simulated["static-peak"],
        requests=len(run.results),
        failed=run.failed,
        trace_hours=options.workload.seconds / 3600,
        compress=k,
        engine_warmup_s=None if warmup is None else warmup * float(k),
    )


def _at(samples: list[Sample], t: float) -> Sample | None:
    """The last sample taken at or before t."""
    found = None
    for s in samples:
        if s.t > t:
            break
        found = s
    return found


def live_rows(spec: CostSpec, run: Run, options: ReplayOptions, timing: Timing) -> list[list[Any]]:
    """decisions.csv for the live run, in the simulator's columns and in trace time (seconds, tokens/s)."""
    k = float(options.compress)
    dt = timing.reconcile_s
    steps = max(1, int(-(-options.workload.seconds / k // dt)))
    sent: list[list[float]] = [[0.0, 0.0, 0.0, 0.0] for _ in range(steps)]  # demand in/out, late in/out
    for r in options.workload.requests:
        j = min(steps - 1, int(r.at / k // dt))
        sent[j][0] += r.input_tokens
        sent[j][1] += r.output_tokens
    for result in run.results:
        if not result.ok:
            j = min(steps - 1, int(result.at // dt))
            sent[j][2] += result.input_tokens
            sent[j][3] += result.output_tokens
    rows: list[list[Any]] = []
    empty: dict[tuple[str, str], int] = {}
    for j in range(steps):
        lo, hi = j * dt, (j + 1) * dt
        first, last = _at(run.samples, lo), _at(run.samples, hi)
        before = first.tokens if first else empty
        after = last.tokens if last else empty
        spent = (last.spend if last else Decimal(0)) - (first.spend if first else Decimal(0))

        def delta(
            direction: str,
            backend: str,
            after: dict[tuple[str, str], int] = after,
            before: dict[tuple[str, str], int] = before,
        ) -> float:
            return (after.get((direction, backend), 0) - before.get((direction, backend), 0)) / (dt * k)

        window = bill(
            run.lifetimes, run.started + lo, run.started + hi, replica_cost_per_hour(spec),
            overhead_per_hour(spec), spent,
        )  # fmt: skip
        ready_lifetimes = [Lifetime(p.ready, None, p.deleted) for p in run.lifetimes if p.ready is not None]
        billed = replica_seconds(run.lifetimes, run.started + lo, run.started + hi) / dt
        ready = replica_seconds(ready_lifetimes, run.started + lo, run.started + hi) / dt
        reason = ((last.status.get("lastDecision") or {}).get("reason", "") if last else "") or ""
        seconds = dt * k
        rows.append(
            [
                f"{lo * k:g}", f"{seconds:g}", f"{sent[j][0] / seconds:.3f}", f"{sent[j][1] / seconds:.3f}",
                f"{billed:.2f}", f"{ready:.2f}",
                f"{delta(Direction.INPUT, Backend.SELF):.3f}", f"{delta(Direction.OUTPUT, Backend.SELF):.3f}",
                f"{delta(Direction.INPUT, Backend.API):.3f}", f"{delta(Direction.OUTPUT, Backend.API):.3f}",
                f"{sent[j][2] / seconds:.3f}", f"{sent[j][3] / seconds:.3f}",
                *(value.quantize(Decimal("0.000001")) for value in (window.replicas, window.overhead, window.api)),
                reason,
            ]
        )  # fmt: skip
    return rows


def write_outputs(spec: CostSpec, run: Run, outcome: Outcome, options: ReplayOptions, timing: Timing) -> None:
    """DIR/ledger.json, DIR/decisions.csv (live, simulator's columns), DIR/simulated.csv, DIR/report.png (and, from
    replay(), DIR/manifest.yaml: the manifest as applied)."""
    from crossover.sim.outputs import write_csv

    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    rows = live_rows(spec, run, options, timing)
    with (out / "decisions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*COLUMNS, "cost_replicas", "cost_overhead", "cost_api", "reason"])
        writer.writerows(rows)
    write_csv(outcome.simulated, out / "simulated.csv")
    (out / "ledger.json").write_text(json.dumps(outcome.ledger(), indent=2) + "\n")
    plot(spec, rows, outcome, options, out / "report.png")


def plot(spec: CostSpec, rows: list[list[Any]], outcome: Outcome, options: ReplayOptions, path: Path) -> None:
    """Top: demand, live and simulated replicas, live spill. Bottom: cumulative dollars, live against the rest."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prices = FloatCapacity.of(spec)
    k = float(options.compress)
    hours = [float(r[0]) / 3600 for r in rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 8), sharex=True)
    sim = outcome.simulated.steps
    sim_hours = [s.window_start_s * k / 3600 for s in sim]
    needed = [prices.busy_replicas(s.demand_input_tps, s.demand_output_tps) / prices.utilization for s in sim]
    top.plot(sim_hours, needed, lw=0.8, color="0.5", label="demand (replicas needed at target utilisation)")
    top.step(hours, [float(r[4]) for r in rows], where="post", lw=1.2, label="live: billed replicas (pods)")
    top.step(hours, [float(r[5]) for r in rows], where="post", lw=1.0, label="live: ready replicas")
    top.step(sim_hours, [s.replicas_billed for s in sim], where="post", lw=0.8, ls="--", label="simulated: billed")
    spill = top.twinx()
    spill.fill_between(
        hours,
        [
            100 * (float(r[8]) + float(r[9])) / max(1e-9, float(r[6]) + float(r[7]) + float(r[8]) + float(r[9]))
            for r in rows
        ],
        alpha=0.2, color="tab:red", step="post", label="live: served by the API (%)",
    )  # fmt: skip
    spill.set_ylabel("served by the API (%)")
    spill.legend(loc="upper right", fontsize=8)
    top.set_ylabel("replicas")
    top.set_title(f"{options.workload.name}: {outcome.trace_hours:g} h replayed at ×{options.compress} in the lab")
    top.legend(loc="upper left", fontsize=8)

    def cumulative(values: list[Decimal]) -> list[float]:
        total, series = Decimal(0), []
        for v in values:
            total += v
            series.append(float(total))
        return series

    live = cumulative([Decimal(str(r[12])) + Decimal(str(r[13])) + Decimal(str(r[14])) for r in rows])
    bottom.plot(hours, live, lw=2, label=f"crossover, live (${outcome.live.total:.2f})")
    for result, label in (
        (outcome.simulated, "crossover, simulated"),
        (outcome.static_peak, "static peak fleet"),
        (outcome.optimum, "offline optimum"),
    ):
        series = cumulative([s.cost_replicas + s.cost_overhead + s.cost_api for s in result.steps])
        bottom.plot([s.window_start_s * k / 3600 for s in result.steps], series, label=f"{label} (${result.total:.2f})")
    api_share = [float(outcome.api_only) * (i + 1) / len(rows) for i in range(len(rows))] if rows else []
    demand = cumulative([Decimal(str(r[2])) + Decimal(str(r[3])) for r in rows])
    if demand and demand[-1] > 0:
        api_share = [float(outcome.api_only) * d / demand[-1] for d in demand]  # by tokens sent, not by time
    bottom.plot(hours, api_share, ls=":", label=f"API only (${outcome.api_only:.2f})")
    bottom.set_ylabel("cumulative $ (real)")
    bottom.set_xlabel("trace hours")
    bottom.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---- the whole run -------------------------------------------------------------------------------------------------


def replay(options: ReplayOptions, view: Any = None, on_ready: Any = None) -> tuple[Run, Outcome, CostSpec]:
    """Run the replay end to end; the lab is taken down again if this call started it."""
    cfg = LabConfig.from_env()
    was_running = all(lifecycle.status(cfg).values()) and control_plane.apiserver_reachable(cfg)
    print("bringing up the lab (the first run builds the control plane: about 10 minutes, once)...", flush=True)
    info = lifecycle.up(cfg)
    print(f"lab ready in {info.seconds:.0f} s; KUBECONFIG={info.kubeconfig}", flush=True)
    api = lab_api_client(cfg.kubeconfig)
    k = options.compress
    timing = Timing.for_compression(k, cfg.scrape_interval_seconds)
    clock: PodClock | None = None
    try:
        manifest = install(cfg, info.bins, options.manifest, k, timing, options.chart, api)
        spec = InferenceDeployment.model_validate(manifest).spec
        name = manifest["metadata"]["name"]
        run = Run()
        clock = PodClock(api, NAMESPACE, selector_string(name, Component.ENGINE))
        clock.start()
        run.router_ip = router_ip(api, name)
        if on_ready is not None:
            on_ready(spec, timing)
        model = spec.model.served_name or spec.model.name
        asyncio.run(_drive(api, name, model, run, options, clock, view))
        clock.stop()
        run.lifetimes = clock.lifetimes()
        cost_spec = spec.cost_spec()
        outcome = measure(cost_spec, run, options, timing)
        write_outputs(cost_spec, run, outcome, options, timing)
        # the manifest as applied (compressed, the emulator's base URL): `crossover whatif --current` reads it
        (options.out / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
        return run, outcome, cost_spec
    finally:
        if clock is not None:
            clock.stop()
        if was_running:
            processes.stop(cfg.state, API_EMULATOR)
            with contextlib.suppress(Exception):
                _helm(cfg, info.bins, "uninstall", "crossover", "--namespace", OPERATOR_NAMESPACE, "--wait")
            with contextlib.suppress(ApiException):
                client.CoreV1Api(api).delete_namespace(NAMESPACE)
        else:
            lifecycle.down(cfg)


def summary_line(outcome: Outcome) -> str:
    def versus(ours: Decimal, theirs: Decimal) -> str:
        if theirs <= 0:
            return "compared with"
        change = (theirs - ours) / theirs * 100
        return f"{abs(change).quantize(Decimal('0.1'))} % {'less' if change >= 0 else 'more'} than"

    live = outcome.live.total
    static = outcome.static_peak
    replicas = static.steps[0].replicas_billed if static.steps else 0
    return (
        f"crossover spent {fmt_money(live)}: {versus(live, outcome.api_only)} API-only "
        f"({fmt_money(outcome.api_only)}), "
        f"{versus(live, static.total)} a static peak fleet of {replicas} ({fmt_money(static.total)}); simulated "
        f"{fmt_money(outcome.simulated.total)}, offline optimum {fmt_money(outcome.optimum.total)}; "
        f"{outcome.failed} of {outcome.requests} requests failed"
    )
