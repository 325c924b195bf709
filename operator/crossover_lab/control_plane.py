"""etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok on 127.0.0.1, plus fake GPU nodes.

The recipe is upstream's (docs/lab.md says what differs from the research notes). The API server makes its own
self-signed serving certificate (127.0.0.1 and localhost are in it) and trusts a static admin token; every other
identity is a real ServiceAccount token, so RBAC in the lab is the RBAC users get.
"""

from __future__ import annotations

import json
import logging
import secrets
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from crossover_lab import processes
from crossover_lab.config import LOOPBACK, POD_CIDR, SERVICE_CIDR, LabConfig
from crossover_lab.emulators.gpu import GPU_PRODUCT_LABEL

log = logging.getLogger(__name__)

FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
GPU_RESOURCE = "nvidia.com/gpu"
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


class LabError(RuntimeError):
    """The lab could not start; the message says which part and which log to read."""


def _pki(cfg: LabConfig) -> Path:
    return cfg.state / "pki"


def _admin_token(cfg: LabConfig) -> str:
    path = _pki(cfg) / "admin.token"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(24))
        path.chmod(0o600)
    return path.read_text().strip()


def _prepare_pki(cfg: LabConfig) -> None:
    pki = _pki(cfg)
    pki.mkdir(parents=True, exist_ok=True)
    if not (pki / "sa.key").exists():
        subprocess.run(
            ["openssl", "genrsa", "-out", str(pki / "sa.key"), "2048"], check=True, capture_output=True, text=True
        )
    tokens = pki / "tokens.csv"
    tokens.write_text(f'{_admin_token(cfg)},admin,admin,"system:masters"\n')
    tokens.chmod(0o600)


def write_kubeconfig(cfg: LabConfig, path: Path, token: str, user: str = "admin") -> None:
    """A kubeconfig for the lab's API server: the admin's, or a ServiceAccount's for a pod the harness runs."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "crossover-lab",
                "cluster": {
                    "server": cfg.apiserver_url,
                    "certificate-authority": str(_pki(cfg) / "apiserver.crt"),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "crossover-lab", "context": {"cluster": "crossover-lab", "user": user}}],
        "current-context": "crossover-lab",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)


def _argv(cfg: LabConfig, bins: dict[str, Path]) -> dict[str, list[str]]:
    s, pki, kubeconfig = cfg.state, _pki(cfg), str(cfg.kubeconfig)
    etcd_url = f"http://{LOOPBACK}:{cfg.etcd_port}"
    kwok_config = s / "kwok.yaml"
    return {
        "etcd": [
            str(bins["etcd"]),
            "--name=lab",
            f"--data-dir={s / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://{LOOPBACK}:{cfg.etcd_port + 1}",
            f"--initial-advertise-peer-urls=http://{LOOPBACK}:{cfg.etcd_port + 1}",
            f"--initial-cluster=lab=http://{LOOPBACK}:{cfg.etcd_port + 1}",
            f"--listen-metrics-urls=http://{LOOPBACK}:{cfg.etcd_port + 2}",
            "--unsafe-no-fsync",
            "--quota-backend-bytes=2147483648",
        ],
        "kube-apiserver": [
            str(bins["kube-apiserver"]),
            f"--etcd-servers={etcd_url}",
            f"--bind-address={LOOPBACK}",
            f"--advertise-address={LOOPBACK}",
            f"--secure-port={cfg.apiserver_port}",
            f"--cert-dir={pki}",
            f"--token-auth-file={pki / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.key'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--endpoint-reconciler-type=none",
            "--profiling=false",
        ],
        "kube-controller-manager": [
            str(bins["kube-controller-manager"]),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--bind-address={LOOPBACK}",
            f"--secure-port={cfg.apiserver_port + 1}",
            "--leader-elect=false",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'apiserver.crt'}",
            "--use-service-account-credentials=false",
            "--concurrent-deployment-syncs=10",
            "--concurrent-replicaset-syncs=10",
            "--profiling=false",
        ],
        "kube-scheduler": [
            str(bins["kube-scheduler"]),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--bind-address={LOOPBACK}",
            f"--secure-port={cfg.apiserver_port + 2}",
            "--leader-elect=false",
            "--profiling=false",
        ],
        "kwok": [
            str(bins["kwok"]),
            f"--kubeconfig={kubeconfig}",
            f"--config={kwok_config}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake",
            f"--cidr={POD_CIDR}",
            f"--node-ip={LOOPBACK}",
            "--node-lease-duration-seconds=40",
        ],
    }


def _wait(what: str, check: Any, timeout: float, log_name: str, cfg: LabConfig) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, urllib.error.URLError, ssl.SSLError, ValueError) as error:
            last = error
        if processes.pid_of(cfg.state, log_name) is None:
            raise LabError(f"{log_name} exited while waiting for {what}; see {processes.log_file(cfg.state, log_name)}")
        time.sleep(0.25)
    raise LabError(f"timed out waiting for {what} ({last}); see {processes.log_file(cfg.state, log_name)}")


def _etcd_healthy(cfg: LabConfig) -> bool:
    with urllib.request.urlopen(f"http://{LOOPBACK}:{cfg.etcd_port}/health", timeout=2) as response:
        return bool(json.load(response).get("health") == "true")


def api_get(cfg: LabConfig, path: str) -> Any:
    """GET on the lab API server as admin (for readiness checks, before a client library is worth setting up)."""
    context = ssl.create_default_context(cafile=str(_pki(cfg) / "apiserver.crt"))
    request = urllib.request.Request(cfg.apiserver_url + path, headers={"Authorization": f"Bearer {_admin_token(cfg)}"})
    with urllib.request.urlopen(request, timeout=3, context=context) as response:
        body = response.read()
    return json.loads(body) if body.startswith(b"{") else body.decode()


def _readyz(cfg: LabConfig) -> bool:
    return bool(api_get(cfg, "/readyz") == "ok")


def _default_service_account(cfg: LabConfig) -> bool:
    try:
        return bool(api_get(cfg, "/api/v1/namespaces/default/serviceaccounts/default").get("metadata"))
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return False
        raise


def apiserver_reachable(cfg: LabConfig) -> bool:
    try:
        return (_pki(cfg) / "apiserver.crt").exists() and _readyz(cfg)
    except (OSError, urllib.error.URLError, ssl.SSLError, ValueError):
        return False


def start(cfg: LabConfig, bins: dict[str, Path]) -> list[str]:
    """Start whatever part of the control plane is not running; returns the names started (empty: all reused)."""
    cfg.state.mkdir(parents=True, exist_ok=True)
    _prepare_pki(cfg)
    (cfg.state / "kwok.yaml").write_text(resources.files("crossover_lab").joinpath("kwok-stages.yaml").read_text())
    argv = _argv(cfg, bins)
    started: list[str] = []

    def ensure(name: str) -> bool:
        if processes.pid_of(cfg.state, name) is not None:
            return False
        processes.start(cfg.state, name, argv[name])
        started.append(name)
        return True

    if ensure("etcd"):
        _wait("etcd", lambda: _etcd_healthy(cfg), 60, "etcd", cfg)
    if ensure("kube-apiserver"):
        _wait(
            "the API server's /readyz",
            lambda: (_pki(cfg) / "apiserver.crt").exists() and _readyz(cfg),
            120,
            "kube-apiserver",
            cfg,
        )
    write_kubeconfig(cfg, cfg.kubeconfig, _admin_token(cfg))
    for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
        ensure(name)
    _wait("the default ServiceAccount", lambda: _default_service_account(cfg), 120, "kube-controller-manager", cfg)
    return started


def stop(cfg: LabConfig) -> list[str]:
    return [name for name in reversed(CONTROL_PLANE) if processes.stop(cfg.state, name)]


def fake_gpu_node(name: str, gpus: int, product: str = "NVIDIA-H100-80GB-HBM3") -> dict[str, Any]:
    """A Node kwok manages: it keeps the capacity given here, so GPU pods are bound only where GPUs are free.

    It carries the labels NVIDIA's GPU feature discovery would write on a real node of that GPU model, so node
    selectors on `nvidia.com/gpu.product` (spec.engine.gpu.type) schedule as they would in a GPU cluster.
    """
    resources_ = {"cpu": "64", "memory": "512Gi", "pods": "110", GPU_RESOURCE: str(gpus)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {FAKE_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                "nvidia.com/gpu.present": "true",
                GPU_PRODUCT_LABEL: product,  # as GPU feature discovery labels nodes
                "nvidia.com/gpu.count": str(gpus),
            },
        },
        "status": {"allocatable": resources_, "capacity": resources_},
    }


def node_names(cfg: LabConfig) -> list[str]:
    return [f"lab-gpu-{i}" for i in range(cfg.nodes)]
