"""Live signals in the lab: the engines' real speed (their hardware) corrects a wrong declaration, GPU utilisation
reaches status and `kubectl get infd`, and a TTFT SLO pulls a replica in that the token arithmetic would not."""

from __future__ import annotations

import subprocess
import time
from decimal import Decimal
from typing import Any

import pytest

from tests.fixtures.lab import Lab, Release
from tests.lab.support import eventually
from tests.lab.test_operator_scaling import HostedAPI, Load, deploy, engine_replicas, hosted_api, status

pytestmark = pytest.mark.lab
__all__ = ["hosted_api"]  # the session fixture, imported so pytest finds it here

# the engines' hardware: 8,000 prefill and 800 decode tok/s, at most 8 sequences at once (the rest queue)
HARDWARE = {"lab.crossover.dev/max-batch": "8"}


def observed(lab: Lab, namespace: str, name: str) -> dict[str, Any] | None:
    capacity = status(lab, namespace, name).get("capacity") or {}
    return capacity if capacity.get("inUse", {}).get("source") == "Observed" else None


def test_declared_twice_the_real_decode_is_corrected_and_scales_to_the_right_count(
    lab: Lab, crossover_release: Release, hosted_api: HostedAPI, namespace: str
) -> None:
    # 8 req/s x (200 in + 100 out): 1.2 replicas of real GPU time (2 at 80 %); declared at 1,600 decode, 0.7 (1)
    url = deploy(lab, namespace, hosted_api, "twice", declared_decode="1600", hardware=HARDWARE, max_replicas=3)
    load = Load(url, rate_per_second=8).start()
    started = time.monotonic()
    try:
        eventually(lambda: engine_replicas(lab, namespace, "twice") >= 1, timeout=90)
        first = status(lab, namespace, "twice")
        capacity = eventually(lambda: observed(lab, namespace, "twice"), timeout=120, interval=0.5)
        converged = time.monotonic() - started
        decode = Decimal(capacity["observed"]["decodeTokensPerSecond"])
        assert Decimal(680) <= decode <= Decimal(920), capacity  # the hardware's 800, not the declared 1,600

        signals = eventually(
            lambda: (s := status(lab, namespace, "twice").get("signals") or {}).get("gpuUtilization") and s,
            timeout=60,
        )
        assert Decimal(0) < Decimal(signals["gpuUtilization"]) <= 100
        table = subprocess.run(
            [str(lab.bins["kubectl"]), "--kubeconfig", str(lab.kubeconfig), "get", "infd", "-n", namespace],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        header, row = table.splitlines()[:2]
        column = header.split().index("GPU-UTIL")
        assert Decimal(row.split()[column]) > 0, table

        # the right count for real capacity, held after the down-window (8 s) once nothing is saturated any more
        eventually(lambda: engine_replicas(lab, namespace, "twice") == 2, timeout=60)
        time.sleep(12)
        final = status(lab, namespace, "twice")
        assert engine_replicas(lab, namespace, "twice") == 2, final["lastDecision"]
        print(
            f"\ndeclared decode 1600, observed {decode} tok/s after {converged:.0f} s "
            f"({capacity['observed']['samples']} samples); replicas before {first['replicas']['desired']}, "
            f"after {final['replicas']['desired']}; signals {final.get('signals')}"
        )
    finally:
        load.stop()


def test_ttft_slo_pulls_a_replica_in(
    lab: Lab, crossover_release: Release, hosted_api: HostedAPI, namespace: str
) -> None:
    # 3 req/s x (200 in + 100 out) is 0.45 of one replica's GPU time: one replica by the arithmetic, but its
    # batch of 8 makes TTFT about half a second and more; a 0.2 s SLO asks for a second replica
    slo = {"ttftP95Seconds": "0.2"}
    url = deploy(lab, namespace, hosted_api, "slo", hardware=HARDWARE, slo=slo, max_replicas=3)
    load = Load(url, rate_per_second=3).start()
    try:
        fired = eventually(
            lambda: (
                "ttftP95Seconds" in ((status(lab, namespace, "slo").get("signals") or {}).get("saturatedBy") or [])
                and status(lab, namespace, "slo")
            ),
            timeout=120,
            interval=0.5,
        )
        eventually(lambda: engine_replicas(lab, namespace, "slo") >= 2, timeout=60)
        assert Decimal(fired["signals"]["ttftP95Seconds"]) > Decimal("0.02")
    finally:
        load.stop()
    assert load.failed == 0, load.outcomes
