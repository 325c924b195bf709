"""Where the lab lives and how big it is: every address on 127.0.0.1, every knob an environment variable."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"
# kwok hands out pod IPs from POD_CIDR. They cannot be loopback addresses themselves: the API server refuses
# loopback addresses in EndpointSlices. So the lab's "pod network" is an address map: pod IP 10.244.a.b is served
# on 127.244.a.b, where the harness listens and where lab clients (and routers, via CROSSOVER_ADDRESS_MAP) connect.
POD_CIDR = "10.244.0.0/16"
LOCAL_POD_CIDR = "127.244.0.0/16"
ADDRESS_MAP = f"{POD_CIDR}={LOCAL_POD_CIDR}"
SERVICE_CIDR = "10.96.0.0/16"  # data only: nothing ever dials a Service IP in the lab


def local_address(pod_ip: str) -> str:
    """Where the lab serves a pod IP on this machine (pod IPs outside the pod CIDR are returned unchanged)."""
    from crossover.addressing import AddressMap

    return AddressMap.parse(ADDRESS_MAP).translate(pod_ip)


def _default_state() -> Path:
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file():
            return parent / ".lab"
    return Path.cwd() / ".lab"


@dataclass(frozen=True)
class LabConfig:
    state: Path
    nodes: int = 2
    gpus_per_node: int = 4
    etcd_port: int = 22379
    apiserver_port: int = 26443
    prometheus_port: int = 29090
    scrape_interval_seconds: int = 1
    # GPU feature discovery's product label per fake node, in turn (node i gets gpu_products[i % len])
    gpu_products: tuple[str, ...] = ("NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB")

    @classmethod
    def from_env(cls) -> LabConfig:
        env = os.environ
        return cls(
            state=Path(env.get("CROSSOVER_LAB_DIR", _default_state())).resolve(),
            nodes=int(env.get("CROSSOVER_LAB_NODES", "2")),
            gpus_per_node=int(env.get("CROSSOVER_LAB_GPUS_PER_NODE", "4")),
            etcd_port=int(env.get("CROSSOVER_LAB_ETCD_PORT", "22379")),
            apiserver_port=int(env.get("CROSSOVER_LAB_APISERVER_PORT", "26443")),
            prometheus_port=int(env.get("CROSSOVER_LAB_PROMETHEUS_PORT", "29090")),
            scrape_interval_seconds=int(env.get("CROSSOVER_LAB_SCRAPE_INTERVAL", "1")),
            gpu_products=tuple(
                p.strip()
                for p in env.get("CROSSOVER_LAB_GPU_PRODUCTS", ",".join(cls.gpu_products)).split(",")
                if p.strip()
            )
            or cls.gpu_products,
        )

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    def gpu_product(self, node_index: int) -> str:
        return self.gpu_products[node_index % len(self.gpu_products)]

    @property
    def apiserver_url(self) -> str:
        return f"https://{LOOPBACK}:{self.apiserver_port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://{LOOPBACK}:{self.prometheus_port}"
