"""The lab's fixed ports must stay out of the kernel's ephemeral range, where an outgoing connection can hold one
(the controller-manager twice failed to bind 36444 while a closed connection sat in TIME_WAIT on it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crossover_lab.config import LabConfig


def test_default_lab_ports_are_below_the_ephemeral_range(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ETCD", "APISERVER", "PROMETHEUS"):
        monkeypatch.delenv(f"CROSSOVER_LAB_{name}_PORT", raising=False)
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    cfg = LabConfig.from_env()
    # etcd listens on port, port+1 (peer), port+2 (metrics); the API server, controller-manager and scheduler on
    # port, port+1, port+2
    used = [cfg.etcd_port + i for i in range(3)] + [cfg.apiserver_port + i for i in range(3)] + [cfg.prometheus_port]
    assert max(used) < low, f"lab ports {used} reach into the ephemeral range starting at {low}"
