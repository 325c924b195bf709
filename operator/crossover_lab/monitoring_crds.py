"""The Prometheus Operator's own CRDs (PodMonitor, ServiceMonitor), installed into the lab's API server so the chart's
monitors are validated by the real schemas.

They ship in the prometheus-operator Go module (`example/prometheus-operator-crd/`), which the lab fetches through
the Go module proxy like its other Go pieces: `tools/prometheus-operator/go.mod` pins the release and `go.sum` the
bytes (`go mod download` verifies them), and the two files are cached in `~/.cache/crossover/crds/<version>/`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, cast

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from crossover_lab.binaries import BuildError, cache_root, tools_dir

MODULE = "github.com/prometheus-operator/prometheus-operator"
FILES = ("monitoring.coreos.com_podmonitors.yaml", "monitoring.coreos.com_servicemonitors.yaml")
WRAPPER = "prometheus-operator"


def version(tools: Path | None = None) -> str:
    gomod = ((tools or tools_dir()) / WRAPPER / "go.mod").read_text()
    match = re.search(rf"^\s*require\s+{re.escape(MODULE)}\s+(v\S+)", gomod, re.MULTILINE)
    if match is None:
        raise BuildError(f"tools/{WRAPPER}/go.mod does not require {MODULE}")
    return match.group(1)


def cache_dir(tools: Path | None = None) -> Path:
    return cache_root().parent / "crds" / f"prometheus-operator-{version(tools)}"


def ensure_files(tools: Path | None = None) -> list[Path]:
    """The CRD files, fetched once per version (a `go mod download` checked against go.sum)."""
    tools = tools or tools_dir()
    target = cache_dir(tools)
    paths = [target / name for name in FILES]
    if all(p.is_file() for p in paths):
        return paths
    if shutil.which("go") is None:
        raise BuildError("fetching the prometheus-operator CRDs needs `go` on PATH")
    result = subprocess.run(
        ["go", "mod", "download", "-json", f"{MODULE}@{version(tools)}"],
        cwd=tools / WRAPPER,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly"},
    )
    if result.returncode != 0:
        raise BuildError(f"go mod download {MODULE}@{version(tools)} failed: {result.stderr.strip()[-500:]}")
    source = Path(json.loads(result.stdout)["Dir"]) / "example" / "prometheus-operator-crd"
    target.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        shutil.copyfile(source / name, target / name)
    return paths


def install(api: client.ApiClient, tools: Path | None = None, timeout: float = 60) -> list[str]:
    """Create (or update) the CRDs and wait until the API server serves them; returns their names."""
    ext = client.ApiextensionsV1Api(api)
    names: list[str] = []
    for path in ensure_files(tools):
        body: dict[str, Any] = yaml.safe_load(path.read_text())
        name = body["metadata"]["name"]
        names.append(name)
        try:
            ext.create_custom_resource_definition(cast(Any, body))
        except ApiException as error:
            if error.status != 409:
                raise
            current = ext.read_custom_resource_definition(name)
            body["metadata"]["resourceVersion"] = current.metadata.resource_version if current.metadata else None
            ext.replace_custom_resource_definition(name, cast(Any, body))
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            found = ext.read_custom_resource_definition(name)
            conditions = (found.status.conditions if found.status else None) or []
            if any(c.type == "Established" and c.status == "True" for c in conditions):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"CRD {name} not established within {timeout} s")
            time.sleep(0.2)
    return names
