"""Operator at scale: N InferenceDeployments in the lab; reconcile latency (its own histogram) and memory (RSS).

Run: `.venv/bin/python bench/operator_scale.py --count 100 --seconds 180` (brings the lab up if needed, installs
the chart with Helm, creates the resources in namespace `scale`, measures, removes them). Not a test: numbers
depend on the machine; the closing notes quote them with this command.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import time
from pathlib import Path
from typing import Any, cast

import requests
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from crossover.contracts import GROUP, PLURAL, VERSION
from crossover.lab import lifecycle
from crossover.lab.config import LabConfig
from crossover.lab.kube import lab_api_client

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "scale"


def operator_rss_mib() -> float | None:
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            if b"crossover.cli" in cmdline and b"operator" in cmdline:
                for line in (proc / "status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
    return None


def query(prometheus: str, promql: str) -> float | None:
    result = requests.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=10).json()
    values = result["data"]["result"]
    return float(values[0]["value"][1]) if values else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=180, help="measurement window after all resources settled")
    parser.add_argument("--interval", type=float, default=10.0, help="reconcile interval per resource (seconds)")
    parser.add_argument("--router-replicas", type=int, default=0, help="router pods per resource (0: operator only)")
    args = parser.parse_args()

    cfg = LabConfig.from_env()
    info = lifecycle.up(cfg)
    helm = [str(info.bins["helm"]), "--kubeconfig", str(cfg.kubeconfig)]
    subprocess.run(
        [
            *helm, "upgrade", "--install", "crossover", str(ROOT / "charts" / "crossover"),
            "--namespace", "crossover-system", "--create-namespace",
            "--set", f"prometheus.url={cfg.prometheus_url}", "--set", f"reconcileIntervalSeconds={args.interval}",
            "--set", f"router.replicas={args.router_replicas}", "--wait",
        ],
        check=True,
    )  # fmt: skip
    api = lab_api_client(cfg.kubeconfig)
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    with contextlib.suppress(ApiException):
        core.create_namespace(cast(Any, {"metadata": {"name": NAMESPACE}}))
    base = yaml.safe_load((ROOT / "examples" / "llama-8b-h100-vs-haiku.yaml").read_text())
    rss_before = operator_rss_mib()
    started = time.monotonic()
    for i in range(args.count):
        body = {**base, "metadata": {"name": f"llm-{i:03d}", "namespace": NAMESPACE}}
        custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body)
    while True:
        items = custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)["items"]
        settled = sum(1 for item in items if (item.get("status") or {}).get("lastDecision"))
        if settled >= args.count:
            break
        time.sleep(1)
    all_settled = time.monotonic() - started
    print(f"{args.count} InferenceDeployments created and each reconciled once within {all_settled:.1f} s")
    window = f"{args.seconds}s"
    time.sleep(args.seconds)
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
    rss_after = operator_rss_mib()
    print(f"reconciles/s: {rate}; latency p50 {quantiles[0.5]} s, p95 {quantiles[0.95]} s, p99 {quantiles[0.99]} s")
    print(f"reconcile errors in window: {errors or 0}")
    print(f"operator RSS: {rss_before} MiB before, {rss_after} MiB with {args.count} resources")
    custom_items = custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)["items"]
    for item in custom_items:
        custom.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, item["metadata"]["name"])
    core.delete_namespace(NAMESPACE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
