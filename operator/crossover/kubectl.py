"""`kubectl crossover`: a kubectl plugin (the `kubectl-crossover` console script) for live InferenceDeployments.

    kubectl crossover explain NAME [-n NAMESPACE]     why the last decision was taken: costs compared, stage by stage
    kubectl crossover breakeven NAME [-n NAMESPACE]   the break-even of the live object's spec, beside its live demand

Everything comes from the object the API server holds (status is what the operator wrote), read with the same
kubeconfig kubectl uses (KUBECONFIG, --kubeconfig, --context).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, cast

from crossover.contracts import GROUP, PLURAL, VERSION


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl crossover",
        description="Explain crossover's decisions and break-even for a live InferenceDeployment.",
    )
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: KUBECONFIG or ~/.kube/config)")
    parser.add_argument("--context", help="kubeconfig context")
    parser.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    explain = commands.add_parser("explain", help="why the last decision was taken, stage by stage")
    explain.add_argument("name", help="InferenceDeployment name")
    breakeven = commands.add_parser("breakeven", help="the break-even of the live object's spec")
    breakeven.add_argument("name", help="InferenceDeployment name")
    breakeven.add_argument("--input-tokens", type=int, default=800, metavar="N", help="input tokens per call")
    breakeven.add_argument("--output-tokens", type=int, default=400, metavar="N", help="output tokens per call")
    return parser


def _fetch(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    from kubernetes import client, config

    config.load_kube_config(config_file=args.kubeconfig, context=args.context)  # type: ignore[no-untyped-call]
    namespace = args.namespace
    if namespace is None:
        _, active = config.list_kube_config_contexts(config_file=args.kubeconfig)  # type: ignore[no-untyped-call]
        namespace = ((active or {}).get("context") or {}).get("namespace") or "default"
    found = client.CustomObjectsApi().get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, args.name)
    return cast(dict[str, Any], found), namespace


def _d(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def render_explain(resource: dict[str, Any]) -> str:
    """The last decision from status: what it did, the costs it compared, each stage of the pipeline."""
    meta, status = resource.get("metadata") or {}, resource.get("status") or {}
    name = f"{meta.get('namespace', '?')}/{meta.get('name', '?')}"
    last = status.get("lastDecision")
    if not last:
        return f"{name}: no decision yet (the operator has not reconciled it, or cannot: see its conditions)"
    replicas = status.get("replicas") or {}
    routing = status.get("routing") or {}
    lines = [
        f"{name}: {last['action']} to {last['replicas']} replica(s), spill {routing.get('spillPercent', '?')} "
        f"at {last['time']}",
        f"  reason   {last['reason']}: {last.get('message', '')}",
        f"  replicas desired {replicas.get('desired', 0)}, ready {replicas.get('ready', 0)}, "
        f"warming {replicas.get('warming', 0)}, pending {replicas.get('unschedulable', 0)}",
        "",
        "costs compared (status.cost, status.demand):",
    ]
    demand = status.get("demand")
    cost = status.get("cost") or {}
    if demand is None:
        lines.append("  demand       unknown (no metrics): the operator holds and does not compare costs")
    else:
        inp, out = _d(demand["inputTokensPerSecond"]) or Decimal(0), _d(demand["outputTokensPerSecond"]) or Decimal(0)
        lines.append(f"  demand       {inp} input + {out} output tok/s = {inp + out} tok/s")
    self_mtok, api_mtok = _d(cost.get("selfHostedPerMillionTokens")), _d(cost.get("apiPerMillionTokens"))
    hourly = cost.get("hourly") or {}
    lines.append(
        f"  self-hosted  ${self_mtok if self_mtok is not None else '?'}/Mtok   ${hourly.get('selfHosted', '?')}/h"
    )
    lines.append(f"  API          ${api_mtok if api_mtok is not None else '?'}/Mtok   ${hourly.get('api', '?')}/h")
    if self_mtok is not None and api_mtok is not None:
        cheaper = "self-hosted" if self_mtok < api_mtok else "API" if api_mtok < self_mtok else "neither"
        lines.append(f"  cheaper      {cheaper} at this demand")
    break_even = cost.get("breakEvenTokensPerSecond")
    if break_even is not None:
        lines.append(f"  break-even   {break_even} tok/s (above it, self-hosting pays)")
    stages = last.get("stages") or []
    lines += ["", "stage by stage (status.lastDecision.stages):"]
    if not stages:
        lines.append("  (not recorded: an operator older than this plugin wrote the status)")
    width = max((len(s["name"]) for s in stages), default=0)
    for i, stage in enumerate(stages, 1):
        lines.append(
            f"  {i}. {stage['name'].ljust(width)}  {stage['replicas']:>3} replica(s)  {stage['reason']}"
            + (f": {stage['message']}" if stage.get("message") else "")
        )
    conditions = status.get("conditions") or []
    if conditions:
        lines += ["", "conditions:"]
        lines += [f"  {c['type']}={c['status']} ({c['reason']}): {c.get('message', '')}" for c in conditions]
    return "\n".join(lines)


def render_breakeven(resource: dict[str, Any], input_tokens: int, output_tokens: int) -> str:
    from costpolicy.breakeven import break_even
    from crossover.api.v1alpha1 import InferenceDeploymentSpec
    from crossover.commands.breakeven import render_table

    spec = InferenceDeploymentSpec.model_validate(resource["spec"]).cost_spec()
    result = break_even(spec, Decimal(input_tokens), Decimal(output_tokens))
    lines = [render_table(spec, result)]
    demand = (resource.get("status") or {}).get("demand")
    meta = resource.get("metadata") or {}
    if demand is None:
        lines += ["", f"  live demand of {meta.get('namespace')}/{meta.get('name')}: unknown (no metrics)"]
    else:
        total = Decimal(str(demand["inputTokensPerSecond"])) + Decimal(str(demand["outputTokensPerSecond"]))
        entry = result.entry
        verdict = (
            "self-hosting never pays at this price"
            if entry is None
            else ("above the break-even: self-hosting pays" if total >= entry.tokens_per_second else "below it")
        )
        lines += ["", f"  live demand of {meta.get('namespace')}/{meta.get('name')}: {total} tok/s, {verdict}"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "breakeven" and args.input_tokens + args.output_tokens <= 0:
        print("kubectl crossover: a call needs input or output tokens", file=sys.stderr)
        return 2
    try:
        resource, _ = _fetch(args)
    except Exception as error:  # one clear line, whatever the client raised (not found, no cluster, no kubeconfig)
        reason = getattr(error, "reason", None) or type(error).__name__
        print(f"kubectl crossover: cannot read InferenceDeployment {args.name}: {reason}", file=sys.stderr)
        return 1
    if args.command == "explain":
        print(render_explain(resource))
    else:
        try:
            print(render_breakeven(resource, args.input_tokens, args.output_tokens))
        except ValueError as error:  # pydantic's ValidationError is one
            print(f"kubectl crossover: the spec cannot be used: {str(error).splitlines()[0]}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
