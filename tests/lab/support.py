"""Helpers shared by the lab tests: polling, a loopback HTTP server, and the InferenceDeployment's coordinates."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from crossover.contracts import GROUP, PLURAL, VERSION
from tests.fixtures.lab import Lab

T = TypeVar("T")


def eventually(check: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.25) -> T:
    """Poll until `check` returns something truthy; fail with the last value after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s (last: {last!r})")


@contextlib.contextmanager
def http_server(answer: Callable[[str], tuple[str, bytes]]) -> Iterator[ThreadingHTTPServer]:
    """A threaded HTTP server on a free loopback port answering every GET with `answer(path)`: (content type,
    body), status 200. Shut down on exit."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            content_type, body = answer(self.path)
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()


def create(lab: Lab, body: dict[str, Any]) -> Any:
    return lab.custom.create_namespaced_custom_object(GROUP, VERSION, body["metadata"]["namespace"], PLURAL, body)


def get(lab: Lab, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = lab.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    return found


def condition(resource: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for item in (resource.get("status") or {}).get("conditions") or []:
        if item["type"] == kind:
            return dict(item)
    return None
