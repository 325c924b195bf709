"""`crossover lab up|down|status|harness`: the local Kubernetes lab that tests and the demo run against."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "lab",
        help="start or stop the local lab (real control plane, fake GPU nodes, Prometheus, emulators)",
        description=(
            "The lab: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok, helm and Prometheus built "
            "from Go modules (cached in ~/.cache/crossover/bin), fake GPU nodes, the Prometheus Operator's CRDs, "
            "Prometheus discovering pods through the API server, and a pod harness that runs emulators on pod IPs. "
            "Everything listens on 127.0.0.1; state lives in .lab/ (CROSSOVER_LAB_DIR). "
            "Sizing: CROSSOVER_LAB_NODES (2), CROSSOVER_LAB_GPUS_PER_NODE (4)."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("build", help="build the lab's binaries that are not cached yet")
    actions.add_parser("up", help="build what is missing, start what is not running (idempotent)")
    actions.add_parser("down", help="stop everything the lab started and remove .lab/")
    actions.add_parser("status", help="say which lab processes run")
    actions.add_parser("harness", help="run the pod harness in the foreground (`up` starts it for you)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from crossover.extras import missing

    if hint := missing("lab"):
        print(f"crossover lab: {hint}", file=sys.stderr)
        return 2
    from crossover_lab import lifecycle
    from crossover_lab.binaries import BuildError
    from crossover_lab.config import LabConfig
    from crossover_lab.control_plane import LabError

    cfg = LabConfig.from_env()
    if args.action == "harness":
        from crossover_lab import harness

        return harness.main(cfg)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.action == "build":
        from crossover_lab import binaries, monitoring_crds

        try:
            for name, path in binaries.ensure().items():
                print(f"{name:<24} {path}")
            for path in monitoring_crds.ensure_files():
                print(f"{path.name:<24} {path}")
        except BuildError as error:
            print(f"crossover lab: {error}", file=sys.stderr)
            return 1
        return 0
    if args.action == "up":
        try:
            info = lifecycle.up(cfg)
        except (BuildError, LabError, FileNotFoundError, RuntimeError) as error:
            print(f"crossover lab: {error}", file=sys.stderr)
            return 1
        started = ", ".join(info.started) if info.started else "nothing (everything was running)"
        print(f"lab ready in {info.seconds:.1f} s; started: {started}")
        print(f"  export KUBECONFIG={info.kubeconfig}")
        print(f"  Prometheus: {info.prometheus_url}")
        print(f"  kubectl and helm: {cfg.state / 'bin'}")
        return 0
    if args.action == "down":
        stopped = lifecycle.down(cfg)
        print(f"lab down; stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
        return 0
    for name, alive in lifecycle.status(cfg).items():
        print(f"{name:<24} {'running' if alive else 'stopped'}")
    return 0
