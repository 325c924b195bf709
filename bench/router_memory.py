"""Router memory with large request bodies: peak RSS of the router process while N bodies are in flight at once.

Run: `.venv/bin/python bench/router_memory.py [--size-mb 60] [--concurrency 3 10]`. Starts a sink engine (reads
the body, answers a small completion after a short pause, so all bodies are in the router at once) and the router
(`--max-body-bytes` above the body size), sends N concurrent non-streaming requests of `--size-mb` each, and
reports the router's peak RSS (VmHWM) above its RSS before, per body: about 1 means a body is held once. A fresh
router per concurrency level. Everything on 127.0.0.1. The LAST line is one JSON object {"<N>": MB per body, ...}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


async def sink(request: web.Request) -> web.Response:
    await request.read()
    await asyncio.sleep(1.0)  # hold the request open so every body is in flight at once
    return web.json_response(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 1,
            "model": "bench",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    )


async def measure(concurrency: int, size: int, cap_flag: bool = True) -> float:
    app = web.Application(client_max_size=size * 2)
    app.router.add_post("/v1/chat/completions", sink)
    runner = web.AppRunner(app)
    await runner.setup()
    engine_port, router_port = free_port(), free_port()
    await web.TCPSite(runner, "127.0.0.1", engine_port).start()
    manifest = yaml.safe_load((ROOT / "examples" / "llama-8b-h100-vs-haiku.yaml").read_text())
    manifest["spec"]["model"]["servedName"] = "bench"
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(manifest, handle)
    argv = [sys.executable, "-m", "crossover.cli", "router", "--spec-file", handle.name,
            "--engine-url", f"http://127.0.0.1:{engine_port}", "--listen", f"127.0.0.1:{router_port}",
            "--mode", "SelfHostedOnly"]  # fmt: skip
    if cap_flag:
        argv += ["--max-body-bytes", str(size * 2)]
    router = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    body = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "a" * size}]}).encode()
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(f"http://127.0.0.1:{router_port}/readyz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
            small = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "hi"}]}).encode()
            async with session.post(f"http://127.0.0.1:{router_port}/v1/chat/completions", data=small) as response:
                await response.read()  # warm: imports, connection pool
            before = status_kb(router.pid, "VmRSS")

            async def one() -> int:
                url = f"http://127.0.0.1:{router_port}/v1/chat/completions"
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
                    await response.read()
                    return response.status

            statuses = await asyncio.gather(*(one() for _ in range(concurrency)))
            peak = status_kb(router.pid, "VmHWM")
        if any(s != 200 for s in statuses):
            raise RuntimeError(f"requests failed: {statuses}")
        per_body = (peak - before) * 1024 / (concurrency * len(body))
        print(
            f"  {concurrency:>3} bodies of {len(body) / 1e6:.0f} MB: RSS {before / 1024:.0f} MB before, "
            f"peak {peak / 1024:.0f} MB; {per_body:.2f} x the body size each"
        )
        return per_body
    finally:
        router.terminate()
        router.wait(30)
        await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[3, 10])
    parser.add_argument(
        "--no-cap-flag", action="store_true", help="for routers before --max-body-bytes (their fixed 64 MiB cap)"
    )
    args = parser.parse_args()
    size = int(args.size_mb * 1e6)
    results = {}
    for concurrency in args.concurrency:
        results[str(concurrency)] = round(asyncio.run(measure(concurrency, size, not args.no_cap_flag)), 2)
        time.sleep(0.5)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
