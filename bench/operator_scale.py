"""Operator at scale: N InferenceDeployments in the lab; what one operator costs to keep them all reconciled.

Run: `.venv/bin/python bench/operator_scale.py --count 1000 --seconds 180 --interval 30` (brings the lab up if
needed, installs the chart with Helm, creates the resources in namespace `scale`, measures, removes them). Routers
are off by default (`--router-replicas 0`) and the example's `replicas.min` is 0, so the lab runs no pods per
resource: what is measured is the operator, its API calls and its Prometheus queries.

Measured over the window that starts once every resource was reconciled once:
- reconciles/s and p50/p95/p99 reconcile latency, from the operator's own histogram (scraped by the lab's Prometheus);
- operator CPU in cores, averaged over the window, from /proc (utime + stime of every operator process);
- operator RSS at the end of the window and its peak since the operator started (VmRSS, VmHWM), from /proc;
- PromQL queries per round: Prometheus' own `prometheus_http_requests_total{handler=~"/api/v1/query.*"}` read from
  its /metrics (not through the query API, so reading it counts nothing) before and after, divided by the number of
  intervals in the window;
- reconcile errors in the window.
`--profile` samples the operator with py-spy (dev extra) for the whole window and prints the hottest functions.

Not a test: numbers depend on the machine; closing notes quote them with this command. The last line printed is one
JSON object (count, interval_seconds, reconciles_per_second, p99_seconds, rss_mib, cpu_cores,
prometheus_queries_per_round, errors, ...).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import requests
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from crossover.contracts import GROUP, PLURAL, VERSION
from crossover_lab import lifecycle
from crossover_lab.config import LabConfig
from crossover_lab.kube import lab_api_client

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "scale"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
FRAME = re.compile(r"^(.*? \()(?:.*/)?([^/:]+):\d+\)$")  # "fn (/path/to/file.py:12)" -> "fn (file.py)"


def operator_pids() -> list[int]:
    """Every `crossover operator` process on this machine (the lab's harness runs the chart's pods as processes)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            if b"crossover.cli" in cmdline and b"operator" in cmdline:
                found.append(int(proc.name))
    return sorted(found)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (fields 14 and 15 of /proc/PID/stat; the command name may contain spaces)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """Resident memory now (VmRSS) or its high-water mark since the process started (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def fresh_namespace(core: client.CoreV1Api, timeout: float = 300) -> None:
    """Create the bench's namespace, first waiting out the last run's deletion: resources created in a namespace
    that is still terminating are refused, and once it is gone every create is a 404 (a run once waited forever)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            core.create_namespace(cast(Any, {"metadata": {"name": NAMESPACE}}))
            return
        except ApiException as error:
            if error.status != 409:
                raise
        status = core.read_namespace(NAMESPACE).status
        phase = status.phase if status is not None else None
        if phase != "Terminating":
            return  # an earlier run's namespace, kept with --keep: reused
        if time.monotonic() > deadline:
            raise SystemExit(f"namespace {NAMESPACE} still terminating after {timeout:.0f} s")
        time.sleep(2)


def crd_outside_helm(api: client.ApiClient) -> bool:
    """The InferenceDeployment CRD exists but no Helm release owns it (a lab test applied it from crds/)."""
    try:
        crd = client.ApiextensionsV1Api(api).read_custom_resource_definition(f"{PLURAL}.{GROUP}")
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return (crd.metadata.labels or {}).get("app.kubernetes.io/managed-by") != "Helm"


def query(prometheus: str, promql: str) -> float | None:
    result = requests.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=10).json()
    values = result["data"]["result"]
    return float(values[0]["value"][1]) if values else None


def prometheus_queries_served(prometheus: str) -> float:
    """Instant and range queries Prometheus has answered since it started, from its own /metrics."""
    total = 0.0
    for line in requests.get(f"{prometheus}/metrics", timeout=10).text.splitlines():
        if line.startswith("prometheus_http_requests_total{") and 'handler="/api/v1/query' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def profile_top(raw: Path, limit: int = 25) -> list[str]:
    """Hottest functions from py-spy's collapsed stacks: inclusive share of samples (each function once per stack)."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = [FRAME.sub(r"\1\2)", frame) for frame in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    lines = [f"{total} samples; inclusive% self% function"]
    for frame, count in inclusive.most_common(limit):
        lines.append(f"{100 * count / total:6.1f} {100 * own[frame] / total:6.1f}  {frame}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=180, help="measurement window after all resources settled")
    parser.add_argument("--interval", type=float, default=10.0, help="reconcile interval per resource (seconds)")
    parser.add_argument("--router-replicas", type=int, default=0, help="router pods per resource (0: operator only)")
    parser.add_argument("--set", action="append", default=[], help="extra Helm value (KEY=VALUE, repeatable)")
    parser.add_argument("--profile", action="store_true", help="sample the operator with py-spy during the window")
    parser.add_argument("--keep", action="store_true", help="leave the resources in place afterwards")
    args = parser.parse_args()

    cfg = LabConfig.from_env()
    info = lifecycle.up(cfg)
    helm = [str(info.bins["helm"]), "--kubeconfig", str(cfg.kubeconfig)]
    extra = [item for value in args.set for item in ("--set", value)]
    # a fresh operator every run: one left from an earlier run would be measured with its old code and its old heap
    earlier = set(operator_pids())
    key = f"lab.{GROUP}/bench-run".replace(".", "\\.")  # Helm --set: dots in a key are escaped
    run = f"podAnnotations.{key}={time.time_ns()}"
    api = lab_api_client(cfg.kubeconfig)
    if crd_outside_helm(api):  # a lab test installed it: the chart would refuse to adopt it
        extra += ["--set", "crds.install=false"]
    subprocess.run(
        [
            *helm, "upgrade", "--install", "crossover", str(ROOT / "charts" / "crossover"),
            "--namespace", "crossover-system", "--create-namespace",
            "--set", f"prometheus.url={cfg.prometheus_url}", "--set-json", f"reconcileIntervalSeconds={args.interval}",
            "--set", f"router.replicas={args.router_replicas}", "--set-string", run, *extra, "--wait",
        ],
        check=True,
    )  # fmt: skip
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    fresh_namespace(core)
    base = yaml.safe_load((ROOT / "examples" / "llama-8b-h100-vs-haiku.yaml").read_text())
    deadline = time.monotonic() + 120
    pids = operator_pids()
    while (not pids or earlier & set(pids)) and time.monotonic() < deadline:
        time.sleep(0.5)
        pids = operator_pids()
    if earlier & set(pids):
        raise SystemExit(f"the operator of an earlier run is still running ({sorted(earlier & set(pids))})")
    print(f"operator processes: {pids}; RSS before {sum(rss_mib(p) for p in pids):.0f} MiB")
    started = time.monotonic()
    for i in range(args.count):
        body = {**base, "metadata": {"name": f"llm-{i:04d}", "namespace": NAMESPACE}}
        try:
            custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body)
        except ApiException as error:
            if error.status != 409:  # 409: left over from an interrupted run, reused
                raise
    created = time.monotonic() - started
    while True:
        items = custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)["items"]
        settled = sum(1 for item in items if (item.get("status") or {}).get("lastDecision"))
        if settled >= args.count:
            break
        time.sleep(2)
    first_pass = time.monotonic() - started
    print(f"{args.count} created in {created:.1f} s; each reconciled once within {first_pass:.1f} s")

    pids = operator_pids()
    profiler = None
    raw = Path(tempfile.mkdtemp()) / "operator.raw"
    if args.profile:
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        profiler = subprocess.Popen(
            [spy, "record", "--format", "raw", "--output", str(raw), "--duration", str(args.seconds), "--pid",
             str(pids[0]), "--rate", "50", "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    cpu_before = {p: cpu_seconds(p) for p in pids}
    queries_before = prometheus_queries_served(cfg.prometheus_url)
    window_start = time.monotonic()
    time.sleep(args.seconds)
    elapsed = time.monotonic() - window_start
    queries_after = prometheus_queries_served(cfg.prometheus_url)
    alive = [p for p in pids if Path(f"/proc/{p}").exists()]
    cpu_cores = sum(cpu_seconds(p) - cpu_before[p] for p in alive) / elapsed
    rss = sum(rss_mib(p) for p in alive)
    rss_peak = sum(rss_mib(p, "VmHWM") for p in alive)

    window = f"{args.seconds}s"
    selector = 'namespace="crossover-system"'
    quantiles = {
        q: query(
            cfg.prometheus_url,
            f"histogram_quantile({q}, sum(rate(crossover_operator_reconcile_seconds_bucket{{{selector}}}[{window}]))"
            " by (le))",
        )
        for q in (0.5, 0.95, 0.99)
    }
    rate = query(cfg.prometheus_url, f"sum(rate(crossover_operator_reconcile_seconds_count{{{selector}}}[{window}]))")
    errors = query(
        cfg.prometheus_url, f"sum(increase(crossover_operator_reconcile_errors_total{{{selector}}}[{window}]))"
    )
    rounds = elapsed / args.interval
    per_round = (queries_after - queries_before) / rounds
    print(f"reconciles/s: {rate}; latency p50 {quantiles[0.5]} s, p95 {quantiles[0.95]} s, p99 {quantiles[0.99]} s")
    if rate:
        print(f"each resource reconciled every {args.count / rate:.1f} s on average (interval {args.interval} s)")
    print(f"operator CPU {cpu_cores:.3f} cores over {elapsed:.0f} s ({len(alive)} process(es))")
    print(f"operator RSS {rss:.0f} MiB, peak {rss_peak:.0f} MiB")
    print(f"PromQL queries: {queries_after - queries_before:.0f} in the window, {per_round:.1f} per round")
    print(f"reconcile errors in window: {errors or 0}")
    if profiler is not None:
        profiler.wait(timeout=60)
        if raw.exists():
            print("\n".join(profile_top(raw)))
            print(f"collapsed stacks: {raw}")
    if not args.keep:
        custom_items = custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)["items"]
        for item in custom_items:
            custom.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, item["metadata"]["name"])
        core.delete_namespace(NAMESPACE)
    print(
        json.dumps(
            {
                "count": args.count,
                "interval_seconds": args.interval,
                "first_pass_seconds": round(first_pass, 1),
                "reconciles_per_second": None if rate is None else round(rate, 2),
                "p50_seconds": quantiles[0.5],
                "p99_seconds": quantiles[0.99],
                "rss_mib": round(rss, 1),
                "rss_peak_mib": round(rss_peak, 1),
                "cpu_cores": round(cpu_cores, 3),
                "prometheus_queries_per_round": round(per_round, 1),
                "errors": errors or 0,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
