"""The lab's binaries, built from the Go module proxy (no registry here ships kube-apiserver) and cached by version.

Each tool has a wrapper Go module under `tools/<tool>/` whose go.mod pins the version and whose go.sum pins the
bytes; `ensure()` builds what is missing into `~/.cache/crossover/bin/<tool>-<version>/` (outside the clone, so a
second clone or a CI run on the same machine reuses it) and returns the paths. A new version is a new folder.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tool:
    """One wrapper module: the module whose version keys the cache, and the packages it builds, by binary name."""

    name: str
    module: str
    packages: dict[str, str]  # binary name -> Go package
    version_ldflags: tuple[str, ...] = ()  # "-X" targets that receive the version, so binaries report it
    tags: tuple[str, ...] = ()  # Go build tags beyond the common ones


KUBE_VERSION_VARS = ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")

TOOLS: tuple[Tool, ...] = (
    Tool("etcd", "go.etcd.io/etcd/server/v3", {"etcd": "go.etcd.io/etcd/server/v3"}),
    Tool(
        "kube",
        "k8s.io/kubernetes",
        {
            "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
            "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
            "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
            "kubectl": "k8s.io/kubernetes/cmd/kubectl",
        },
    ),
    Tool("kwok", "sigs.k8s.io/kwok", {"kwok": "sigs.k8s.io/kwok/cmd/kwok"}),
    Tool(
        "helm", "helm.sh/helm/v3", {"helm": "helm.sh/helm/v3/cmd/helm"}, ("helm.sh/helm/v3/internal/version.version",)
    ),
    # Prometheus with Kubernetes service discovery only (its documented build tags), and no web UI assets: the
    # lab needs its API and discovery, and leaving out the cloud SDKs keeps a cold build to a few minutes
    Tool(
        "prometheus",
        "github.com/prometheus/prometheus",
        {
            "prometheus": "github.com/prometheus/prometheus/cmd/prometheus",
            "promtool": "github.com/prometheus/prometheus/cmd/promtool",
        },
        tags=("remove_all_sd", "enable_kubernetes_sd"),
    ),
)


class BuildError(RuntimeError):
    """A tool could not be built; the message names the tool and the log to read."""


def cache_root() -> Path:
    return Path(os.environ.get("CROSSOVER_CACHE", Path.home() / ".cache" / "crossover")) / "bin"


def tools_dir() -> Path:
    """The repository's `tools/` folder: next to the package in a checkout, or where CROSSOVER_TOOLS_DIR says."""
    explicit = os.environ.get("CROSSOVER_TOOLS_DIR")
    if explicit:
        return Path(explicit)
    for parent in Path(__file__).resolve().parents:
        if (parent / "tools" / "kube" / "go.mod").is_file():
            return parent / "tools"
    raise BuildError("cannot find the tools/ folder with the Go wrapper modules; set CROSSOVER_TOOLS_DIR")


def version_of(tool: Tool, tools: Path | None = None) -> str:
    """The version go.mod pins for the tool's module (the single place versions are written)."""
    gomod = ((tools or tools_dir()) / tool.name / "go.mod").read_text()
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(tool.module)}\s+(v\S+)", gomod, re.MULTILINE)
    if match is None:
        raise BuildError(f"tools/{tool.name}/go.mod does not require {tool.module}")
    return match.group(1)


def binary_dir(tool: Tool, tools: Path | None = None) -> Path:
    return cache_root() / f"{tool.name}-{version_of(tool, tools)}"


def _ldflags(tool: Tool, version: str) -> str:
    flags = ["-s", "-w"]
    if tool.name == "kube":
        major, minor = version.lstrip("v").split(".")[:2]
        for package in KUBE_VERSION_VARS:
            flags += [
                f"-X {package}.gitVersion={version}",
                f"-X {package}.gitMajor={major}",
                f"-X {package}.gitMinor={minor}",
                f"-X {package}.gitTreeState=clean",
            ]
    flags += [f"-X {target}={version}" for target in tool.version_ldflags]
    return " ".join(flags)


def build(tool: Tool, tools: Path | None = None) -> Path:
    """Build every binary of one tool into its cache folder, atomically (a half-built folder is never used)."""
    tools = tools or tools_dir()
    version = version_of(tool, tools)
    target = binary_dir(tool, tools)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{tool.name}-", dir=target.parent))
    env = {
        **os.environ,
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
        "GOFLAGS": "-mod=readonly -buildvcs=false",
    }
    log_path = target.parent / f"{tool.name}-{version}.build.log"
    started = time.monotonic()
    with log_path.open("w") as build_log:
        for binary, package in tool.packages.items():
            command = [
                "go",
                "build",
                "-trimpath",
                "-tags",
                ",".join(("selinux", "notest", *tool.tags)),
                "-ldflags",
                _ldflags(tool, version),
                "-o",
                str(staging / binary),
                package,
            ]
            result = subprocess.run(
                command, check=False, cwd=tools / tool.name, env=env, stdout=build_log, stderr=subprocess.STDOUT
            )
            if result.returncode != 0:
                shutil.rmtree(staging, ignore_errors=True)
                raise BuildError(f"building {binary} {version} failed; see {log_path}")
    if target.exists():  # another build won the race
        shutil.rmtree(staging, ignore_errors=True)
    else:
        staging.rename(target)
    log.info("built %s %s in %.0f s", tool.name, version, time.monotonic() - started)
    return target


def tool(name: str) -> Tool:
    return next(t for t in TOOLS if t.name == name)


def ensure(tools: Path | None = None) -> dict[str, Path]:
    """Paths of every lab binary, building the missing ones first."""
    if shutil.which("go") is None:
        raise BuildError("the lab builds its control plane with Go, and `go` is not on PATH")
    paths: dict[str, Path] = {}
    for tool in TOOLS:
        folder = binary_dir(tool, tools)
        if not all((folder / binary).is_file() for binary in tool.packages):
            log.warning("building %s %s (one time, cached in %s)", tool.name, version_of(tool, tools), folder)
            folder = build(tool, tools)
        paths.update({binary: folder / binary for binary in tool.packages})
    return paths
