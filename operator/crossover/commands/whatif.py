"""`crossover whatif`: a deployment's real demand history from Prometheus, simulated under its live spec and under
changed values; prints both costs and the difference."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from costpolicy.money import fmt_money


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "whatif",
        help="replay a deployment's demand history from Prometheus under its spec and under changed values",
        description=(
            "Read one InferenceDeployment's demand history (its router's token rates, one point per --step over "
            "--since) from Prometheus and simulate it twice: under the live spec (read from the cluster, or "
            "--current FILE) and under changed values (--set path=value under spec, repeatable, or -f OTHER.yaml). "
            "Prints both costs and the difference; --plot draws both. See docs/simulator.md."
        ),
    )
    parser.add_argument("deployment", help="NAME or NAMESPACE/NAME of the InferenceDeployment")
    parser.add_argument("-n", "--namespace", default="default", help="namespace (default: default)")
    parser.add_argument("--prometheus", required=True, help="Prometheus base URL, e.g. http://127.0.0.1:9090")
    parser.add_argument("--since", default="7d", help="how far back (Prometheus duration: 90m, 12h, 7d; default 7d)")
    parser.add_argument("--step", default="60s", help="resolution of the demand series (default 60s)")
    parser.add_argument("--current", type=Path, help="the live spec from this manifest instead of the cluster")
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="a changed value under spec, e.g. replicas.max=4 or api.pricing.outputPerMillion=4",
    )
    parser.add_argument("-f", "--manifest", type=Path, help="the changed spec from this manifest")
    parser.add_argument("--control-interval", type=float, default=30.0, help="simulated control loop, seconds (30)")
    parser.add_argument("--plot", type=Path, help="write a plot of both runs to this PNG")
    parser.set_defaults(func=run)


def _live_manifest(namespace: str, name: str) -> dict[str, Any]:
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    from crossover.contracts import GROUP, PLURAL, VERSION

    try:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    try:
        found: Any = client.CustomObjectsApi().get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as error:
        raise ValueError(f"cannot read InferenceDeployment {namespace}/{name}: {error.reason}") from None
    return {"apiVersion": found["apiVersion"], "kind": found["kind"], "metadata": {"name": name}, "spec": found["spec"]}


def run(args: argparse.Namespace) -> int:
    from crossover.manifest import ManifestError
    from crossover.sim.model import Demands, SimConfig
    from crossover.sim.policies import run_policy
    from crossover.whatif import load_manifest, manifest_of, read_history, seconds_of, with_settings

    namespace, _, name = args.deployment.rpartition("/")
    namespace = namespace or args.namespace
    try:
        if not args.settings and args.manifest is None:
            raise ValueError("nothing to compare: give --set PATH=VALUE or -f OTHER.yaml")
        since, step = seconds_of(args.since), seconds_of(args.step)
        live = load_manifest(str(args.current)) if args.current else _live_manifest(namespace, name)
        changed = load_manifest(str(args.manifest)) if args.manifest else live
        changed = manifest_of(with_settings(changed, args.settings), "the changed spec")
        specs = {
            "live spec": manifest_of(live, "the live spec"),
            "changed spec": changed,
        }
        history = read_history(args.prometheus, namespace, name, since, step, datetime.now(UTC))
    except (ValueError, ManifestError) as error:
        print(f"crossover whatif: {error}", file=sys.stderr)
        return 2
    from crossover.api.v1alpha1 import InferenceDeployment

    demands = Demands(history.trace, SimConfig(control_interval_s=args.control_interval, warmup_s=0.0))
    results = {}
    for label, manifest in specs.items():
        spec = InferenceDeployment.model_validate(manifest).spec.cost_spec()
        results[label] = (spec, run_policy("cost-aware", spec, demands))
    print(
        f"crossover whatif {namespace}/{name}: {args.since} of router demand at {args.step} steps "
        f"({history.steps} steps, mean {history.trace.mean_tps():,.1f} tok/s"
        + (f"; {history.missing} steps had no router series and count as no demand" if history.missing else "")
        + ")"
    )
    for label, (_, result) in results.items():
        print(
            f"  {label:13} {fmt_money(result.total):>12}  (replicas {fmt_money(result.replicas)}, overhead "
            f"{fmt_money(result.overhead)}, API {fmt_money(result.api)}; late {result.late_fraction:.3%})"
        )
    before, after = results["live spec"][1].total, results["changed spec"][1].total
    relative = f" ({(after - before) / before * 100:+.1f} %)" if before > 0 else ""
    print(f"  {'difference':13} {fmt_money(after - before):>12}{relative}")
    if args.plot is not None:
        from crossover.sim.outputs import plot

        first, second = results["live spec"][1], results["changed spec"][1]
        first.policy, second.policy = "live spec", "changed spec"
        plot(results["changed spec"][0], [second, first], args.plot, f"whatif {namespace}/{name}")
        print(f"  plot: {args.plot}")
    return 0
