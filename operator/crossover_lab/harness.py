"""The pod harness: the lab's stand-in for the kubelet's container runtime and readiness probes.

kwok schedules nothing itself; it only moves pods the scheduler bound to a fake node to Running with a pod IP from
10.244.0.0/16, and leaves them not Ready (see kwok-stages.yaml). The harness watches pods and, for each running
one, starts the process that pod stands for, listening on the pod IP's loopback twin (10.244.a.b -> 127.244.a.b,
see config.py: the API server refuses loopback addresses in EndpointSlices, so pod IPs cannot be loopback):

- a vLLM container (image name contains "vllm") -> the vLLM emulator, as fast as its hardware: the GPU profile
  (crossover_lab.emulators.gpu) of its GPU type times the GPUs it requests, never the InferenceDeployment's declared
  capacity or cold start. The GPU type is the pod's node's `nvidia.com/gpu.product` label, else the owner's
  `gpu.type`, else h100-80gb; `lab.crossover.dev/*` annotations on the InferenceDeployment, then on the pod, override
  it (`gpu-type`, `prefill-tps`, `decode-tps`, `cold-start-seconds`, `max-batch`, `kv-cache-tokens`) or run its clock
  faster (`time-compression`: rates × k, cold start ÷ k, as the demo compresses manifests);
- a dcgm-exporter container (the lab's DaemonSet, one pod per GPU node) -> the dcgm-exporter emulator for that
  node, reading which engine pods hold which GPUs from a file the harness keeps;
- a crossover container (image repository ends in "/crossover" or is "crossover") -> `crossover <args>` with the
  container's environment (Secret references resolved, as the kubelet would) and a kubeconfig holding a token of
  the pod's own ServiceAccount, so the process has exactly the RBAC the chart grants, and CROSSOVER_ADDRESS_MAP so
  it connects to pod IPs through the same map;
- anything else -> nothing runs, the pod is simply marked Ready.

It plays the readiness probe (the container's httpGet readinessProbe, else "started"), patches the pod's Ready
condition and stops the process, gracefully, when the pod goes. kwok may give a deleted pod's IP to a new pod while
the old process still drains there (a kubelet frees an IP only with the old sandbox): the new pod's process starts
once the old one has stopped. It tells Prometheus nothing: Prometheus discovers the pods itself, through the API
server (crossover_lab.scrape). Pending pods (no free GPU) get nothing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import aiohttp
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from crossover.contracts import ENV_ADDRESS_MAP, GROUP, INSTANCE_LABEL, PLURAL, VERSION
from crossover_lab.config import ADDRESS_MAP, LabConfig, local_address
from crossover_lab.control_plane import write_kubeconfig
from crossover_lab.emulators.gpu import DEFAULT_GPU_TYPE, GPU_PRODUCT_LABEL, EngineHardware
from crossover_lab.kube import lab_api_client, plain, stream

log = logging.getLogger(__name__)

ANNOTATION_PREFIX = f"lab.{GROUP}/"
# The kubelet's crash back-off: 10 s, doubled per restart, at most 5 minutes (CROSSOVER_LAB_BACKOFF_SECONDS scales it)
BACKOFF_BASE_SECONDS = float(os.environ.get("CROSSOVER_LAB_BACKOFF_SECONDS", "10"))
BACKOFF_MAX_SECONDS = 300.0
DEFAULT_VLLM_PORT = 8000
DCGM_PORT = 9400


@dataclass
class PodProcess:
    namespace: str
    name: str
    uid: str
    ip: str  # the pod IP the cluster reports
    local: str  # where this machine serves it
    kind: str  # "vllm" | "crossover" | "none"
    process: asyncio.subprocess.Process | None = None
    ready: bool = False
    grace_seconds: float = 30.0
    pre_stop_seconds: float = 0.0  # the container's preStop sleep, played before SIGTERM as the kubelet does
    object_gone: asyncio.Event = field(default_factory=asyncio.Event)
    probe: asyncio.Task[None] | None = None
    extra: dict[str, str] = field(default_factory=dict)
    node: str = ""
    gpus: tuple[int, ...] = ()  # indices of the node's GPUs this pod holds (engine pods)
    metrics_url: str | None = None
    argv: list[str] = field(default_factory=list)  # how it was started, to restart it as the kubelet would
    env: dict[str, str] = field(default_factory=dict)
    container: dict[str, Any] = field(default_factory=dict)
    restarts: int = 0
    restart_at: float | None = None  # monotonic time of the next restart, while in back-off


def _image_kind(image: str) -> str:
    repository = image.rsplit("@", 1)[0]
    last = repository.rsplit("/", 1)[-1].split(":", 1)[0]
    if "vllm" in repository:
        return "vllm"
    if "dcgm-exporter" in repository:
        return "dcgm"
    if last == "crossover":
        return "crossover"
    return "none"


def _arg(args: list[str], flag: str) -> str | None:
    for i, value in enumerate(args):
        if value == flag and i + 1 < len(args):
            return args[i + 1]
        if value.startswith(flag + "="):
            return value.split("=", 1)[1]
    return None


def _lab_annotations(meta: dict[str, Any]) -> dict[str, str]:
    found = (meta.get("annotations") or {}).items()
    return {k.removeprefix(ANNOTATION_PREFIX): str(v) for k, v in found if k.startswith(ANNOTATION_PREFIX)}


def _gpu_request(container: dict[str, Any]) -> int:
    """GPUs the container asks for (any extended resource whose name ends in /gpu); at least one."""
    limits = (container.get("resources") or {}).get("limits") or {}
    counts = [int(v) for k, v in limits.items() if k.endswith("/gpu") and str(v).isdigit()]
    return max(1, sum(counts))


def _port(container: dict[str, Any], name_or_number: Any, default: int) -> int:
    if isinstance(name_or_number, int):
        return name_or_number
    if isinstance(name_or_number, str) and name_or_number.isdigit():
        return int(name_or_number)
    for port in container.get("ports") or []:
        if name_or_number is None or port.get("name") == name_or_number:
            return int(port["containerPort"])
    return default


class Harness:
    def __init__(self, cfg: LabConfig) -> None:
        self._cfg = cfg
        self._api = lab_api_client(cfg.kubeconfig)
        self._core = client.CoreV1Api(self._api)
        self._custom = client.CustomObjectsApi(self._api)
        self._pods: dict[str, PodProcess] = {}
        self._events: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._stopping = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._stopping_tasks: set[asyncio.Task[None]] = set()
        self._deleted: dict[str, asyncio.Event] = {}  # pods stopping: set when their object is gone from the API
        # local address -> the stop of the process still draining there: kwok may give a deleted pod's IP to a new
        # pod at once, where a kubelet frees an IP only once the old sandbox is gone, so the new pod waits for it
        self._draining: dict[str, asyncio.Task[None]] = {}
        self._starting: set[asyncio.Task[None]] = set()

    # ---- watching ------------------------------------------------------------------------------------------

    def _watch_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        """kubernetes' watch is blocking: run it in a thread and hand events to the loop; reconnect forever."""
        while not self._stopping.is_set():
            try:
                listing = self._core.list_pod_for_all_namespaces()
                for pod in listing.items:
                    loop.call_soon_threadsafe(self._events.put_nowait, ("SYNC", plain(self._api, pod)))
                version = listing.metadata.resource_version if listing.metadata else None
                for event in stream(
                    self._core.list_pod_for_all_namespaces, resource_version=version, timeout_seconds=60
                ):
                    body = plain(self._api, event["object"])
                    loop.call_soon_threadsafe(self._events.put_nowait, (str(event["type"]), body))
                    if self._stopping.is_set():
                        return
            except Exception as error:  # any watch failure: log, back off, relist
                log.warning("pod watch failed (%s); relisting", error)
                time.sleep(1)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
        threading.Thread(target=self._watch_thread, args=(loop,), daemon=True, name="pod-watch").start()
        log.info("pod harness running against %s", self._cfg.apiserver_url)
        try:
            while not self._stopping.is_set():
                getter = asyncio.ensure_future(self._events.get())
                stopper = asyncio.ensure_future(self._stopping.wait())
                done, _ = await asyncio.wait({getter, stopper}, timeout=1, return_when=asyncio.FIRST_COMPLETED)
                for task in (getter, stopper):
                    if task not in done:
                        task.cancel()
                if getter in done:
                    kind, pod = getter.result()
                    try:
                        await self._handle(kind, pod)
                    except Exception:
                        log.exception("handling %s of a pod failed", kind)
                await self._reap()
        finally:
            stops = [self._stop(p) for p in list(self._pods.values())]
            await asyncio.gather(*stops, *self._stopping_tasks, *self._starting)
            self._write_assignments()
            await self._session.close()

    # ---- one pod -------------------------------------------------------------------------------------------

    async def _handle(self, kind: str, pod: dict[str, Any]) -> None:
        meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
        key = meta["uid"]
        gone = kind == "DELETED" or meta.get("deletionTimestamp") is not None
        if kind == "DELETED" and key in self._deleted:
            # kwok removes the object without waiting for the grace period and may hand its IP to a new pod at once:
            # the address must be free now, so the preStop wait ends here (the process still drains on SIGTERM)
            self._deleted.pop(key).set()
        if gone:
            if key in self._pods:
                proc = self._pods.pop(key)
                if kind != "DELETED":
                    self._deleted[key] = proc.object_gone
                else:
                    proc.object_gone.set()
                stopping = asyncio.create_task(self._stop(proc))
                self._stopping_tasks.add(stopping)
                stopping.add_done_callback(self._stopping_tasks.discard)
                if proc.process is not None and proc.process.returncode is None:  # it holds the address
                    self._draining[proc.local] = stopping
                    stopping.add_done_callback(functools.partial(self._drained, proc.local))
                self._write_assignments()
            return
        if key in self._pods or status.get("phase") != "Running" or not status.get("podIP"):
            return
        if spec.get("nodeName") is None:
            return
        container = (spec.get("containers") or [{}])[0]
        proc = PodProcess(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=key,
            ip=status["podIP"],
            local=local_address(status["podIP"]),
            kind=_image_kind(container.get("image", "")),
            grace_seconds=float(spec.get("terminationGracePeriodSeconds") or 30),
            node=str(spec.get("nodeName")),
            pre_stop_seconds=float(
                (((container.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds") or 0
            ),
        )
        self._pods[key] = proc
        previous = self._draining.get(proc.local)
        if previous is None:
            await self._start(proc, pod, container)
            return
        log.info("pod %s/%s waits for the process still draining on %s", proc.namespace, proc.name, proc.local)
        starting = asyncio.create_task(self._start_after(previous, proc, pod, container))
        self._starting.add(starting)
        starting.add_done_callback(self._starting.discard)

    def _drained(self, local: str, stopping: asyncio.Task[None]) -> None:
        if self._draining.get(local) is stopping:
            del self._draining[local]

    async def _start_after(
        self, previous: asyncio.Task[None], proc: PodProcess, pod: dict[str, Any], container: dict[str, Any]
    ) -> None:
        """Start a pod once the process that held its address has stopped, unless the pod went meanwhile."""
        await asyncio.wait({previous})
        if self._pods.get(proc.uid) is not proc or self._stopping.is_set():
            return
        try:
            await self._start(proc, pod, container)
        except Exception:
            log.exception("starting pod %s/%s failed", proc.namespace, proc.name)

    async def _start(self, proc: PodProcess, pod: dict[str, Any], container: dict[str, Any]) -> None:
        if proc.kind == "vllm":
            await self._start_vllm(proc, pod, container)
        elif proc.kind == "dcgm":
            await self._start_dcgm(proc, pod, container)
        elif proc.kind == "crossover":
            await self._start_crossover(proc, pod, container)
        self._write_assignments()
        proc.container = container
        proc.probe = asyncio.create_task(self._probe(proc, container))

    async def _start_vllm(self, proc: PodProcess, pod: dict[str, Any], container: dict[str, Any]) -> None:
        args = list(container.get("args") or [])
        port = int(_arg(args, "--port") or _port(container, None, DEFAULT_VLLM_PORT))
        model = _arg(args, "--served-model-name") or _arg(args, "--model") or "emulated-model"
        gpus = _gpu_request(container)
        try:
            sizing = await asyncio.to_thread(self._vllm_sizing, pod, gpus)
        except ValueError as error:  # an unknown GPU type: the pod runs nothing and never becomes Ready
            log.warning("pod %s/%s: %s", proc.namespace, proc.name, error)
            return
        argv = [
            sys.executable, "-m", "crossover.cli", "emulate", "vllm",
            "--host", proc.local, "--port", str(port), "--model", model,
        ]  # fmt: skip
        for flag, value in sizing.items():
            argv += [f"--{flag}", value]
        proc.process = await self._spawn(proc, argv, dict(os.environ))
        proc.gpus = self._allocate_gpus(proc.node, gpus)
        proc.metrics_url = f"http://{proc.local}:{port}/metrics"

    def _vllm_sizing(self, pod: dict[str, Any], gpus: int) -> dict[str, str]:
        """Emulator flags from the hardware the pod landed on, never from the capacity its manifest declares."""
        meta = pod["metadata"]
        overrides: dict[str, str] = {}
        gpu_type: str | None = None
        owner = (meta.get("labels") or {}).get(INSTANCE_LABEL)
        if owner:
            try:
                resource: Any = self._custom.get_namespaced_custom_object(
                    GROUP, VERSION, meta["namespace"], PLURAL, owner
                )
                gpu_type = ((resource.get("spec") or {}).get("engine") or {}).get("gpu", {}).get("type")
                overrides.update(_lab_annotations(resource.get("metadata") or {}))
            except (ApiException, AttributeError, TypeError) as error:
                log.warning("cannot read InferenceDeployment %s/%s: %s", meta["namespace"], owner, error)
        node_type = self._node_gpu_type(str((pod.get("spec") or {}).get("nodeName") or ""))
        gpu_type = node_type or gpu_type
        overrides.update(_lab_annotations(meta))
        gpu_type = overrides.pop("gpu-type", gpu_type or DEFAULT_GPU_TYPE)
        compression = float(overrides.pop("time-compression", "1"))
        hardware = EngineHardware.of(gpu_type, gpus)
        figures = {
            "prefill-tps": float(overrides.get("prefill-tps", hardware.prefill_tokens_per_second)),
            "decode-tps": float(overrides.get("decode-tps", hardware.decode_tokens_per_second)),
            "cold-start-seconds": float(overrides.get("cold-start-seconds", hardware.cold_start_seconds)),
        }
        sizing = {
            "prefill-tps": str(figures["prefill-tps"] * compression),
            "decode-tps": str(figures["decode-tps"] * compression),
            "cold-start-seconds": str(figures["cold-start-seconds"] / compression),
            "max-batch": overrides.get("max-batch", str(hardware.max_batch)),
        }
        if "kv-cache-tokens" in overrides:
            sizing["kv-cache-tokens"] = overrides["kv-cache-tokens"]
        return sizing

    def _node_gpu_type(self, node: str) -> str | None:
        if not node:
            return None
        try:
            found = self._core.read_node(node)
        except ApiException:
            return None
        return (found.metadata.labels or {}).get(GPU_PRODUCT_LABEL) if found.metadata else None

    def _allocate_gpus(self, node: str, count: int) -> tuple[int, ...]:
        """The lowest free GPU indices on the node (the scheduler already checked there are enough)."""
        used = {gpu for p in self._pods.values() if p.node == node for gpu in p.gpus}
        free = [i for i in range(self._cfg.gpus_per_node) if i not in used]
        return tuple(free[:count])

    async def _start_dcgm(self, proc: PodProcess, pod: dict[str, Any], container: dict[str, Any]) -> None:
        port = _port(container, "metrics", DCGM_PORT)
        gpu_type = await asyncio.to_thread(self._node_gpu_type, proc.node) or DEFAULT_GPU_TYPE
        argv = [
            sys.executable, "-m", "crossover.cli", "emulate", "dcgm",
            "--host", proc.local, "--port", str(port), "--node", proc.node,
            "--assignments", str(self._assignments_file), "--gpus", str(self._cfg.gpus_per_node),
            "--gpu-type", gpu_type,
        ]  # fmt: skip
        proc.process = await self._spawn(proc, argv, dict(os.environ))

    @property
    def _assignments_file(self) -> Path:
        return self._cfg.state / "dcgm" / "assignments.json"

    def _write_assignments(self) -> None:
        """Which engine pod holds which GPUs, for the dcgm-exporter emulators (replaced atomically)."""
        items = [
            {
                "node": p.node,
                "gpus": list(p.gpus),
                "namespace": p.namespace,
                "pod": p.name,
                "container": "engine",
                "metrics_url": p.metrics_url,
            }
            for p in self._pods.values()
            if p.gpus and p.metrics_url
        ]
        path = self._assignments_file
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(items))
        temporary.replace(path)

    async def _start_crossover(self, proc: PodProcess, pod: dict[str, Any], container: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        args = [a.replace("0.0.0.0", proc.local) for a in container.get("args") or []]
        command = list(container.get("command") or [])
        if command and Path(command[0]).name == "crossover":
            args = [a.replace("0.0.0.0", proc.local) for a in command[1:]] + args
        env = {k: v for k, v in os.environ.items() if not k.startswith("CROSSOVER_") and k != "KUBECONFIG"}
        env.update(await asyncio.to_thread(self._container_env, pod, container, proc.ip, proc.local))
        env[ENV_ADDRESS_MAP] = ADDRESS_MAP
        kubeconfig = self._cfg.state / "pods" / proc.namespace / proc.name / "kubeconfig"
        token = await asyncio.to_thread(self._service_account_token, meta["namespace"], spec)
        write_kubeconfig(self._cfg, kubeconfig, token, user=spec.get("serviceAccountName") or "default")
        env["KUBECONFIG"] = str(kubeconfig)
        env["PYTHONUNBUFFERED"] = "1"
        proc.process = await self._spawn(proc, [sys.executable, "-m", "crossover.cli", *args], env)

    def _service_account_token(self, namespace: str, spec: dict[str, Any]) -> str:
        account = spec.get("serviceAccountName") or "default"
        deadline = time.monotonic() + 30
        while True:
            try:
                request = self._core.create_namespaced_service_account_token(
                    account, namespace, cast(Any, {"spec": {"expirationSeconds": 86400}})
                )
                return str(plain(self._api, request)["status"]["token"])
            except ApiException as error:
                if error.status != 404 or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)  # the ServiceAccount may land just after the pod

    def _container_env(self, pod: dict[str, Any], container: dict[str, Any], ip: str, local: str) -> dict[str, str]:
        """Resolve env as the kubelet does: values, Secret and ConfigMap keys, and the downward API fields we use."""
        meta = pod["metadata"]
        env: dict[str, str] = {}
        for item in container.get("env") or []:
            name, source = item["name"], item.get("valueFrom")
            if source is None:
                env[name] = str(item.get("value", "")).replace("0.0.0.0", local)
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                try:
                    secret = self._core.read_namespaced_secret(ref["name"], meta["namespace"])
                    env[name] = base64.b64decode((secret.data or {})[ref["key"]]).decode()
                except (ApiException, KeyError):
                    if not ref.get("optional"):
                        log.warning("pod %s/%s: secret key for %s missing", meta["namespace"], meta["name"], name)
            elif "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                with contextlib.suppress(ApiException, KeyError):
                    config_map = self._core.read_namespaced_config_map(ref["name"], meta["namespace"])
                    env[name] = (config_map.data or {})[ref["key"]]
            elif "fieldRef" in source:
                path = source["fieldRef"]["fieldPath"]
                env[name] = {
                    "metadata.namespace": meta["namespace"],
                    "metadata.name": meta["name"],
                    "status.podIP": ip,
                }.get(path, "")
        return env

    async def _spawn(self, proc: PodProcess, argv: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
        proc.argv, proc.env = list(argv), dict(env)
        logs = self._cfg.state / "logs" / "pods"
        logs.mkdir(parents=True, exist_ok=True)
        with (logs / f"{proc.namespace}_{proc.name}.log").open("ab") as out:
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT, env=env
            )
        log.info(
            "pod %s/%s (%s) %s on %s: pid %d", proc.namespace, proc.name, proc.kind, proc.ip, proc.local, process.pid
        )
        return process

    async def _probe(self, proc: PodProcess, container: dict[str, Any]) -> None:
        """The readiness probe: httpGet on the pod IP until it answers 2xx, then mark the pod Ready."""
        http = (container.get("readinessProbe") or {}).get("httpGet")
        if http is not None and proc.process is not None:
            port = _port(container, http.get("port"), DEFAULT_VLLM_PORT)
            url = f"http://{proc.local}:{port}{http.get('path', '/')}"
            assert self._session is not None
            while proc.process.returncode is None:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                    async with self._session.get(url) as response:
                        if 200 <= response.status < 400:
                            break
                await asyncio.sleep(0.25)
            else:
                return
        await asyncio.to_thread(self._set_ready, proc, True)

    def _set_ready(self, proc: PodProcess, ready: bool) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        state = "True" if ready else "False"
        body: dict[str, Any] = {
            "status": {
                "conditions": [
                    {"type": "Ready", "status": state, "lastTransitionTime": now, "reason": None},
                    {"type": "ContainersReady", "status": state, "lastTransitionTime": now, "reason": None},
                ]
            }
        }
        try:
            pod = self._core.read_namespaced_pod_status(proc.name, proc.namespace)
            statuses = plain(self._api, pod)["status"].get("containerStatuses") or []
            for item in statuses:
                item["ready"] = ready
            body["status"]["containerStatuses"] = statuses
            self._core.patch_namespaced_pod_status(proc.name, proc.namespace, body)
            proc.ready = ready
        except ApiException as error:
            if error.status != 404:
                log.warning("cannot mark %s/%s ready=%s: %s", proc.namespace, proc.name, ready, error.reason)

    async def _reap(self) -> None:
        """As the kubelet does with restartPolicy Always: a container that exits is reported (not ready, restart
        count, last termination with its exit code and reason, CrashLoopBackOff while it waits) and restarted after a
        back-off of 10 s doubling to 5 minutes. The pod log says why it died."""
        now = time.monotonic()
        for proc in list(self._pods.values()):
            process = proc.process
            if process is None:
                continue
            if process.returncode is not None and proc.restart_at is None:
                code = process.returncode
                log.warning("pod %s/%s: process exited %s", proc.namespace, proc.name, code)
                backoff = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2**proc.restarts)
                proc.restart_at = now + backoff
                proc.ready = False
                if proc.probe is not None:
                    proc.probe.cancel()
                await asyncio.to_thread(self._report_exit, proc, code, backoff)
            elif proc.restart_at is not None and now >= proc.restart_at and not self._stopping.is_set():
                proc.restart_at = None
                proc.restarts += 1
                proc.process = await self._spawn(proc, proc.argv, proc.env)
                await asyncio.to_thread(self._report_running, proc)
                proc.probe = asyncio.create_task(self._probe(proc, proc.container))

    def _container_statuses(self, proc: PodProcess) -> list[dict[str, Any]]:
        pod = self._core.read_namespaced_pod_status(proc.name, proc.namespace)
        statuses: list[dict[str, Any]] = plain(self._api, pod)["status"].get("containerStatuses") or []
        return statuses

    def _patch_status(self, proc: PodProcess, statuses: list[dict[str, Any]], ready: bool) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        state = "True" if ready else "False"
        conditions = [
            {"type": "Ready", "status": state, "lastTransitionTime": now, "reason": None},
            {"type": "ContainersReady", "status": state, "lastTransitionTime": now, "reason": None},
        ]
        body = {"status": {"conditions": conditions, "containerStatuses": statuses}}
        self._core.patch_namespaced_pod_status(proc.name, proc.namespace, body)

    def _report_exit(self, proc: PodProcess, code: int, backoff: float) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            statuses = self._container_statuses(proc)
            for item in statuses[:1]:  # the harness runs a pod's first container
                started = ((item.get("state") or {}).get("running") or {}).get("startedAt")
                item["ready"] = False
                item["started"] = False
                item["restartCount"] = proc.restarts
                item["lastState"] = {
                    "terminated": {
                        "exitCode": code,
                        "reason": "Completed" if code == 0 else "Error",
                        "startedAt": started,
                        "finishedAt": now,
                    }
                }
                item["state"] = {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off {backoff:.0f}s restarting failed container={item.get('name')} "
                        f"pod={proc.name}_{proc.namespace}({proc.uid})",
                    }
                }
            self._patch_status(proc, statuses, ready=False)
        except ApiException as error:
            if error.status != 404:
                log.warning("cannot report the exit of %s/%s: %s", proc.namespace, proc.name, error.reason)

    def _report_running(self, proc: PodProcess) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            statuses = self._container_statuses(proc)
            for item in statuses[:1]:
                item["restartCount"] = proc.restarts
                item["state"] = {"running": {"startedAt": now}}
                item["started"] = True
            self._patch_status(proc, statuses, ready=False)
        except ApiException as error:
            if error.status != 404:
                log.warning("cannot report the restart of %s/%s: %s", proc.namespace, proc.name, error.reason)

    async def _stop(self, proc: PodProcess) -> None:
        if proc.probe is not None:
            proc.probe.cancel()
        process = proc.process
        if process is None or process.returncode is not None:
            return
        # the kubelet runs the preStop hook first (its time counts against the grace period), then SIGTERM
        pre_stop = min(proc.pre_stop_seconds, proc.grace_seconds)
        if pre_stop > 0:
            waits = {asyncio.ensure_future(process.wait()), asyncio.ensure_future(proc.object_gone.wait())}
            _, pending = await asyncio.wait(waits, timeout=pre_stop, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout=max(0.0, proc.grace_seconds - pre_stop))
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        log.info("pod %s/%s stopped", proc.namespace, proc.name)


def main(cfg: LabConfig) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(Harness(cfg).run())
    return 0
