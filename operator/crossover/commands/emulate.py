"""`crossover emulate vllm|api`: the test emulators as servers (the lab's pod harness and the demo start them)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from typing import Any

ENV_EMULATOR_API_KEY = "CROSSOVER_EMULATOR_API_KEY"  # the hosted-API emulator's key (test rig only)


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "emulate",
        help="run a test emulator: a vLLM server, a hosted OpenAI-compatible API or a dcgm-exporter",
        description="Emulators are test parts, not the real thing: see crossover_lab.emulators. Loopback only.",
    )
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    vllm = kinds.add_parser("vllm", help="vLLM emulator: OpenAI API, vLLM metrics, two-dimensional capacity")
    vllm.add_argument("--model", default="emulated-model", help="served model name")
    vllm.add_argument("--prefill-tps", type=float, default=20_000.0, help="aggregate prefill tokens/s")
    vllm.add_argument("--decode-tps", type=float, default=2_000.0, help="aggregate decode tokens/s")
    vllm.add_argument("--max-batch", type=int, default=256, help="sequences running at once; the rest queue")
    vllm.add_argument("--cold-start-seconds", type=float, default=0.0, help="503 until this long after start")
    vllm.add_argument(
        "--tick-seconds", type=float, default=0.02, help="scheduler step (smaller: finer timing, more CPU)"
    )
    vllm.add_argument("--kv-cache-tokens", type=int, default=1_000_000, help="KV cache size in tokens")
    api = kinds.add_parser("api", help="hosted-API emulator: bearer key, usage, 429/5xx/slow-first-byte faults")
    api.add_argument("--model", action="append", default=[], help="accepted model (repeatable; default: any)")
    api.add_argument(
        "--api-key-env", default=ENV_EMULATOR_API_KEY, help=f"variable holding the API key ({ENV_EMULATOR_API_KEY})"
    )
    api.add_argument("--tokens-per-minute", type=int, help="429 above this many tokens per minute")
    api.add_argument("--requests-per-minute", type=int, help="429 above this many requests per minute")
    api.add_argument("--error-rate", type=float, default=0.0, help="share of requests answered 500")
    api.add_argument("--first-byte-delay", type=float, default=0.0, help="seconds before the first byte")
    api.add_argument("--output-tps", type=float, default=2_000.0, help="output tokens/s per request")
    dcgm = kinds.add_parser("dcgm", help="dcgm-exporter emulator: GPU utilisation per GPU of one node, per pod")
    dcgm.add_argument("--node", required=True, help="the node whose GPUs this exporter reports")
    dcgm.add_argument("--assignments", required=True, help="JSON file: which engine pods hold which GPUs")
    dcgm.add_argument("--gpus", type=int, default=4, help="GPUs on the node")
    dcgm.add_argument("--gpu-type", default="h100-80gb", help="GPU type (modelName label)")
    for sub, port in ((vllm, 8000), (api, 8001), (dcgm, 9400)):
        sub.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback only)")
        sub.add_argument("--port", type=int, default=port)
    parser.set_defaults(func=run)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def run(args: argparse.Namespace) -> int:
    from aiohttp import web

    from crossover.extras import missing

    if hint := missing("lab"):
        print(f"crossover emulate: {hint}", file=sys.stderr)
        return 2

    if not _loopback(args.host):
        print(
            f"crossover emulate: refusing to listen on {args.host}: emulators bind to 127.0.0.0/8 only", file=sys.stderr
        )
        return 2
    if args.kind == "vllm":
        from crossover_lab.emulators.vllm import VLLMEmulatorConfig, build_vllm_app

        app = build_vllm_app(
            VLLMEmulatorConfig(
                model=args.model,
                prefill_tokens_per_s=args.prefill_tps,
                decode_tokens_per_s=args.decode_tps,
                max_batch=args.max_batch,
                cold_start_seconds=args.cold_start_seconds,
                kv_cache_tokens=args.kv_cache_tokens,
                tick_seconds=args.tick_seconds,
            )
        )
    elif args.kind == "dcgm":
        from pathlib import Path

        from crossover_lab.emulators.dcgm import DCGMEmulatorConfig, build_dcgm_app

        app = build_dcgm_app(DCGMEmulatorConfig(args.node, Path(args.assignments), args.gpus, args.gpu_type))
    else:
        from crossover_lab.emulators.hosted_api import Faults, HostedAPIConfig, build_hosted_api_app

        key = os.environ.get(args.api_key_env)
        if not key:
            print(f"crossover emulate api: set the API key in ${args.api_key_env}", file=sys.stderr)
            return 2
        app = build_hosted_api_app(
            HostedAPIConfig(
                api_key=key,
                models=tuple(args.model),
                output_tokens_per_s=args.output_tps,
                faults=Faults(
                    tokens_per_minute=args.tokens_per_minute,
                    requests_per_minute=args.requests_per_minute,
                    error_rate=args.error_rate,
                    first_byte_delay_seconds=args.first_byte_delay,
                ),
            )
        )
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None, shutdown_timeout=30)
    return 0
